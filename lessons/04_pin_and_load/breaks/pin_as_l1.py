"""Each L4 pinned as an L1: Xen validates the L4 as an L1 table, finds entries that
point at page-table frames, reads them as writable data mappings, and refuses."""

from __future__ import annotations

from hypervisor import abi
from hypervisor.abi import Pfn
from minikern.kmem import KernelMemory
from minikern.recipe import make_readonly, pin_table


def pin_tree(km: KernelMemory, kernel_l4: Pfn, user_l4: Pfn) -> None:
    for pfn in (kernel_l4, user_l4):
        make_readonly(km, pfn, abi.UVMF_TLB_FLUSH)
        pin_table(km, pfn, 1)
