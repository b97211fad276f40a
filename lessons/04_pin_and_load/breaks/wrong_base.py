"""The user L4 loaded as the kernel's base: NEW_BASEPTR gets the user L4, which has no
kernel half, so the kernel loses its own direct map at the next switch."""

from __future__ import annotations

from hypervisor import abi
from minikern.kmem import KernelMemory
from minikern.steps import _PIN


def pin_table(km: KernelMemory, pfn: int, level: int) -> None:
    km.hc.ext(_PIN[level], km.mfn(pfn))


def load_base_ptrs(km: KernelMemory, kernel_l4: int, user_l4: int | None) -> None:
    top = user_l4 if user_l4 is not None else kernel_l4
    km.hc.now((abi.MMUEXT_NEW_BASEPTR, km.mfn(top)), (abi.MMUEXT_NEW_USER_BASEPTR, 0))
