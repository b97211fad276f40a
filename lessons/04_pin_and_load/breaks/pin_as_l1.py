"""Every table pinned as an L1, whatever its level: Xen validates the L4 as an L1 and
refuses (its entries point at tables, not at data)."""

from __future__ import annotations

from hypervisor import abi
from minikern.kmem import KernelMemory


def pin_table(km: KernelMemory, pfn: int, level: int) -> None:
    km.hc.ext(abi.MMUEXT_PIN_L1_TABLE, km.mfn(pfn))


def load_base_ptrs(km: KernelMemory, kernel_l4: int, user_l4: int | None) -> None:
    user = km.mfn(user_l4) if user_l4 is not None else 0
    km.hc.now((abi.MMUEXT_NEW_BASEPTR, km.mfn(kernel_l4)), (abi.MMUEXT_NEW_USER_BASEPTR, user))
