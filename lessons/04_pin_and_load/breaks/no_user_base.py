"""No user base: only NEW_BASEPTR is issued, so user mode has no page tables at all and
every access of user code faults."""

from __future__ import annotations

from hypervisor import abi
from minikern.kmem import KernelMemory
from minikern.steps import _PIN


def pin_table(km: KernelMemory, pfn: int, level: int) -> None:
    km.hc.ext(_PIN[level], km.mfn(pfn))


def load_base_ptrs(km: KernelMemory, kernel_l4: int, user_l4: int | None) -> None:
    km.hc.now((abi.MMUEXT_NEW_BASEPTR, km.mfn(kernel_l4)))
