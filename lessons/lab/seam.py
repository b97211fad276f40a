"""The lesson functions of the packages, as the grader sees them.

A lesson function is named ``module:function`` (``minikern.steps:pin_table``) and is a
module-level function whose body in the package is the reference. This module is the
one place the grader touches the swappable seams: ``minikern.steps`` for the kernel's
functions, ``hypervisor.steps`` for names starting ``hypervisor.`` (the hypervisor track):

- :func:`reference` -- the reference function object (for its source and signature);
- :func:`install` -- make the kernel call another implementation under that name;
- :func:`reset` -- every lesson function back to the package's own.

It runs in the grader and in the child process, so it imports only what it needs.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["bare_name", "install", "record", "reference", "reset", "signature", "split"]

Fn = Callable[..., Any]
_installed: list[tuple[str, Callable[[], None]]] = []


def split(name: str) -> tuple[str, str]:
    """``"minikern.steps:pin_table"`` -> ``("minikern.steps", "pin_table")``."""
    module, sep, function = name.partition(":")
    if not sep or not module or not function.isidentifier():
        raise ValueError(f"a lesson function is named module:function, not {name!r}")
    return module, function


def bare_name(name: str) -> str:
    """The name a submission defines the function under (``pin_table``)."""
    return split(name)[1]


def _steps(name: str = "minikern.") -> Any:
    """The seam module ``name`` belongs to (None: the hypervisor has no seam module)."""
    if name.startswith("hypervisor."):
        try:
            return importlib.import_module("hypervisor.steps")
        except ImportError:
            return None
    return importlib.import_module("minikern.steps")


def record(name: str) -> Any:
    """The seam's registry record for ``name``, if the seam keeps one (None)."""
    registry = getattr(_steps(name), "REGISTRY", None)
    return registry.get(name) if isinstance(registry, dict) else None


_record = record


def reference(name: str) -> Fn:
    """The package's own implementation of lesson function ``name`` (the plain function,
    without the seam's wrapper)."""
    record = _record(name)
    if record is not None:
        ref: Fn | None = getattr(record, "reference", None)
        if callable(ref):
            return ref
    module, function = split(name)
    obj = getattr(importlib.import_module(module), function, None)
    if not callable(obj):
        raise LookupError(f"{name}: no function {function!r} in {module}")
    found: Fn = inspect.unwrap(obj)
    return found


def signature(name: str) -> inspect.Signature:
    """The reference's signature (what a student's function must accept)."""
    return inspect.signature(reference(name))


def _legacy_key(name: str) -> str | None:
    """The registry key of ``name`` in a seam that keys steps by short names."""
    table = getattr(_steps(name), "REFERENCE", None)
    if not isinstance(table, dict):
        return None
    module, function = split(name)
    for key, fn in table.items():
        if getattr(fn, "__module__", "") == module and getattr(fn, "__name__", "") == function:
            return str(key)
    return None


def install(name: str, fn: Fn) -> None:
    """From now on the kernel runs ``fn`` wherever it calls lesson function ``name``."""
    steps = _steps(name)
    if _record(name) is not None and hasattr(steps, "install"):
        steps.install(name, fn)
        _installed.append((name, lambda: None))
        return
    if name.startswith("hypervisor."):
        _rebind_everywhere(name, fn)
        return
    key = _legacy_key(name)
    if key is not None:
        table = steps.STEPS
        old = table[key]
        table[key] = fn
        _installed.append((name, lambda: table.__setitem__(key, old)))
        return
    module_name, function = split(name)
    module = importlib.import_module(module_name)
    old_attr = getattr(module, function)
    setattr(module, function, fn)
    _installed.append((name, lambda: setattr(module, function, old_attr)))


def _rebind_everywhere(name: str, fn: Fn) -> None:
    """Without a hypervisor seam: rebind ``name`` in its module and in every loaded
    ``hypervisor`` module that imported the same function object."""
    module_name, function = split(name)
    old = getattr(importlib.import_module(module_name), function)
    bound = [
        m
        for key, m in list(sys.modules.items())
        if (key == "hypervisor" or key.startswith("hypervisor."))
        and getattr(m, function, None) is old
    ]
    for m in bound:
        setattr(m, function, fn)

    def undo() -> None:
        for m in bound:
            setattr(m, function, old)

    _installed.append((name, undo))


def reset() -> None:
    """Every lesson function installed through :func:`install` back to the reference."""
    for prefix in ("minikern.", "hypervisor."):
        steps = _steps(prefix)
        if hasattr(steps, "reset"):
            steps.reset()
    while _installed:
        _installed.pop()[1]()
