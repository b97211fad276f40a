"""Checks of the host-side API's arguments: wrong types and values are the
caller's mistake and raise ``TypeError`` / ``ValueError`` naming the argument.

(What a guest passes to a hypercall is never checked here: Xen answers that
with an errno, see ``hypervisor.hypercalls``.)
"""

from __future__ import annotations

from typing import Any, TypeVar

__all__ = ["need_bool", "need_instance", "need_int"]

T = TypeVar("T")


def need_int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` if it is an int (not a bool) within ``lo .. hi`` (inclusive)."""
    if type(value) is not int:
        raise TypeError(f"{name} must be an int, not {type(value).__name__} {value!r:.40}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if hi is None:
            raise ValueError(f"{name} must be at least {lo}, not {value}")
        if lo is None:
            raise ValueError(f"{name} must be at most {hi}, not {value}")
        raise ValueError(f"{name} must be {lo}..{hi}, not {value}")
    return value


def need_bool(name: str, value: Any) -> bool:
    """``value`` if it is a bool."""
    if type(value) is not bool:
        raise TypeError(f"{name} must be True or False, not {value!r:.40}")
    return value


def need_instance(name: str, value: Any, cls: type[T] | tuple[type, ...], what: str) -> T:
    """``value`` if it is an instance of ``cls`` (``what`` names it for people)."""
    if not isinstance(value, cls):
        raise TypeError(f"{name} must be {what}, not {type(value).__name__} {value!r:.40}")
    return value  # type: ignore[return-value]
