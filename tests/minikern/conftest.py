"""Fixtures for minikern's tests: every public operation is followed by
``k.hypervisor.audit()``, which must come back empty -- even when the
operation raised (a refused operation must leave Xen consistent too)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
from mkhelpers import assert_audit_clean, boot

from minikern import Kernel, Process

KERNEL_OPS = ("spawn", "fork", "exit", "switch_to")
PROCESS_OPS = ("mmap", "munmap", "mprotect", "read", "write")


_depth = [0]


def _audited(fn: Callable[..., Any], kernel_of: Callable[[Any], Kernel]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
        _depth[0] += 1
        try:
            return fn(self, *args, **kwargs)
        finally:
            _depth[0] -= 1
            if not _depth[0]:  # audit once per outermost operation
                assert_audit_clean(kernel_of(self))

    return checked


@pytest.fixture(autouse=True)
def audit_after_every_operation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wrap Kernel and Process operations so each one ends with an audit."""
    for name in KERNEL_OPS:
        monkeypatch.setattr(Kernel, name, _audited(getattr(Kernel, name), lambda k: k))
    for name in PROCESS_OPS:
        monkeypatch.setattr(Process, name, _audited(getattr(Process, name), lambda p: p.kernel))


@pytest.fixture(params=["linux", "minios"])
def strategy(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def k(strategy: str) -> Kernel:
    """A freshly booted kernel, once per strategy."""
    return boot(strategy=strategy)
