"""The kernel's errors, in the tiers xv6 uses.

- :class:`SegmentationFault` and :class:`OutOfMemory` are the process's (or the
  caller's) problem: returned failure, the kernel stays consistent.
- :class:`KernelPanic` is the kernel's own bug: a hypercall Xen refused, or an
  invariant the kernel relies on found broken. Never caught inside minikern.
"""

from __future__ import annotations

__all__ = [
    "KernelPanic",
    "OutOfMemory",
    "SegmentationFault",
    "page_fault_of",
    "panic",
]


class SegmentationFault(Exception):  # noqa: N818 -- the signal's name
    """A process touched ``va`` outside its mappings, wrote read-only memory, or
    asked to unmap or protect what was never mapped.

    Raised when: the kernel cannot (or must not) fix the fault. The process is
    not killed by the exception; the caller decides (``k.exit(p)``).
    """

    def __init__(self, va: int, why: str) -> None:
        super().__init__(f"segmentation fault at {va:#x}: {why}")
        self.va = va
        self.why = why


class OutOfMemory(MemoryError):  # noqa: N818 -- the API's name
    """The guest's frame allocator cannot supply ``needed`` frames.

    Raised when: an operation needs more frames than are free. It is raised
    before anything is changed, so the kernel and every process stay as they
    were; free memory (exit a process) and try again.
    """

    def __init__(self, needed: int, free: int) -> None:
        super().__init__(f"out of memory: need {needed} frames, {free} free")
        self.needed = needed
        self.free = free


class KernelPanic(RuntimeError):  # noqa: N818 -- xv6's panic()
    """A bug in minikern: Xen refused a hypercall the kernel issued, or the
    kernel's own bookkeeping contradicts itself.

    ``rule`` is the hypervisor's stable rule id when Xen refused (empty
    otherwise), ``errno`` its errno (positive; 0 when Xen was not involved);
    ``step`` the lesson function (``module:function``, see
    ``minikern.steps``) that queued the refused request or was running when
    the kernel found itself broken (empty: none). The message quotes the
    hypervisor's explanation. Do not catch it: fix that function.
    """

    def __init__(self, message: str, *, rule: str = "", errno: int = 0, step: str = "") -> None:
        super().__init__(message)
        self.rule = rule
        self.errno = errno
        self.step = step


def panic(message: str) -> KernelPanic:
    """``panic("walk: remap")``: build the exception for the caller to raise."""
    return KernelPanic(f"panic: {message}")


def page_fault_of(exc: BaseException) -> tuple[int, int] | None:
    """``(va, error_code)`` if ``exc`` is the hardware's page fault, else None.
    (The guest sees only the ABI, so the fault is recognised by its shape.)"""
    if type(exc).__name__ != "PageFault":
        return None
    va, code = getattr(exc, "va", None), getattr(exc, "error_code", None)
    if not isinstance(va, int) or not isinstance(code, int):
        return None
    return va, code
