"""The toolstack: the one minikern module allowed to touch the hypervisor.

It plays ``xl create``: makes a machine when none is given, runs the domain
builder, and hands the kernel what a real PV kernel receives at boot -- a vCPU
(the hypercall page) and ``start_info``. Nothing else in minikern imports
``hypervisor`` beyond ``hypervisor.abi``.
"""

from __future__ import annotations

from typing import Any

from hypervisor import Hypervisor, abi

__all__ = ["launch"]

HEADROOM = 2048
"""Machine frames beyond the domain's own: the first MiB, Xen's frames, spare."""


def launch(nr_pages: int, hypervisor: Any = None) -> tuple[Any, Any, abi.GuestVCpu, abi.StartInfo]:
    """Build a domain of ``nr_pages`` on ``hypervisor`` (a new machine if None).
    Returns the machine, the domain, vCPU 0 and the domain's start_info."""
    if hypervisor is None:
        hypervisor = Hypervisor(total_frames=max(16384, nr_pages + HEADROOM))
    domain = hypervisor.create_domain(nr_pages=nr_pages)
    return hypervisor, domain, domain.vcpus[0], domain.start_info
