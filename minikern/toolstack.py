"""The toolstack: the one minikern module allowed to touch the hypervisor.

It plays ``xl create``: makes a machine when none is given, runs the domain
builder, and hands the kernel what a real PV kernel receives at boot -- a vCPU
(the hypercall page) and ``start_info``. It also plays ``xl dmesg``
(:func:`dmesg`): the kernel of this course reads Xen's console to quote Xen's
explanation when it panics. Nothing else in minikern imports ``hypervisor``
beyond ``hypervisor.abi``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hypervisor import Hypervisor, abi

__all__ = ["dmesg", "launch"]

HEADROOM = 2048
"""Machine frames beyond the domain's own: the first MiB, Xen's frames, spare."""


def launch(
    nr_pages: int, hypervisor: Any = None, guest_width: int = 64
) -> tuple[Any, Any, abi.GuestVCpu, abi.StartInfo]:
    """Build a ``guest_width``-bit domain (64, or 32 for PAE) of ``nr_pages`` on
    ``hypervisor`` (a new machine if None). Returns the machine, the domain,
    vCPU 0 and the domain's start_info.
    Raises: TypeError if ``hypervisor`` is not a Hypervisor; ValueError naming
    ``nr_pages`` if the domain cannot be built."""
    if hypervisor is None:
        hypervisor = Hypervisor(total_frames=max(16384, nr_pages + HEADROOM))
    elif not isinstance(hypervisor, Hypervisor):
        raise TypeError(f"hypervisor must be a Hypervisor or None, not {type(hypervisor).__name__}")
    try:
        domain = hypervisor.create_domain(nr_pages=nr_pages, guest_width=guest_width)
    except ValueError as exc:
        raise ValueError(f"nr_pages={nr_pages}: {exc}") from None
    return hypervisor, domain, domain.vcpus[0], domain.start_info


def dmesg(hypervisor: Any, domid: int) -> Callable[[], Sequence[Any]]:
    """A reader of domain ``domid``'s refusals on Xen's console, oldest first
    (``xl dmesg``; see ``hypervisor.console.Refusal``)."""

    def read() -> Sequence[Any]:
        refusals: Sequence[Any] = hypervisor.console(domid)
        return refusals

    return read
