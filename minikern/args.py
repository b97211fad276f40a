"""Checking the arguments of minikern's public entry points.

Every public entry point checks its arguments before it changes anything: a
wrong type is a :class:`TypeError`, a wrong value a :class:`ValueError`, and
the message names the argument, as Python's own functions do.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["bytes_arg", "choice_arg", "flag_arg", "int_arg"]


def int_arg(name: str, value: object, lo: int, hi: int) -> int:
    """``value`` as an int in ``lo .. hi`` (bool is not an int here)."""
    if type(value) is not int:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in {lo:#x}..{hi:#x}, not {value:#x}")
    return value


def choice_arg(name: str, value: object, choices: Sequence[str]) -> str:
    """``value``, one of the strings ``choices``."""
    if not isinstance(value, str):
        raise TypeError(
            f"{name} must be a str, one of {tuple(choices)}, not {type(value).__name__}"
        )
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, not {value!r}")
    return value


def flag_arg(name: str, value: object) -> bool:
    """``value``, a bool."""
    if type(value) is not bool:
        raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
    return value


def bytes_arg(name: str, value: object) -> bytes:
    """``value`` (bytes, bytearray or memoryview) as bytes."""
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{name} must be bytes-like, not {type(value).__name__}")
    return bytes(value)
