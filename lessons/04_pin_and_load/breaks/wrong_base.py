"""The user L4 loaded as the kernel's base: NEW_BASEPTR gets the user L4, which has no
kernel half, so the kernel loses its own direct map at the next switch."""

from __future__ import annotations

from hypervisor import abi
from hypervisor.abi import Pfn
from minikern.kmem import KernelMemory, pfn_to_mfn
from minikern.recipe import make_readonly, pin_table


def pin_tree(km: KernelMemory, kernel_l4: Pfn, user_l4: Pfn) -> None:
    for pfn in (kernel_l4, user_l4):
        make_readonly(km, pfn, abi.UVMF_TLB_FLUSH)
        pin_table(km, pfn, 4)


def load_base(km: KernelMemory, kernel_l4: Pfn, user_l4: Pfn | None) -> None:
    top = user_l4 if user_l4 is not None else kernel_l4
    km.hc.now((abi.MMUEXT_NEW_BASEPTR, pfn_to_mfn(km, top)), (abi.MMUEXT_NEW_USER_BASEPTR, 0))
