"""No user base: only NEW_BASEPTR is issued, so user mode has no page tables at all and
every access of user code faults."""

from __future__ import annotations

from hypervisor import abi
from hypervisor.abi import Pfn
from minikern.kmem import KernelMemory, pfn_to_mfn


def load_base(km: KernelMemory, kernel_l4: Pfn, user_l4: Pfn | None) -> None:
    km.hc.now((abi.MMUEXT_NEW_BASEPTR, pfn_to_mfn(km, kernel_l4)))
