"""Torn down while still loaded: release_tree_pae never switches the CPU to the boot L3.
Xen unpins the L3, but the loaded base keeps it a typed L3, so giving its writable mapping
back is refused (``l1.writable-pagetable``)."""

from __future__ import annotations

from hypervisor import abi
from hypervisor.abi import Pfn
from minikern import recipe
from minikern.build import Tables
from minikern.kmem import KernelMemory


def release_tree_pae(
    km: KernelMemory, l3: Pfn, kernel_l2: Pfn, tables: Tables, loaded: bool
) -> None:
    with km.hc.lazy():
        recipe.unpin_table(km, l3)
        recipe.make_writable(km, kernel_l2, abi.UVMF_NONE)
        for level, pfn in tables:
            if level == 1:
                recipe.unpin_table(km, pfn)
            recipe.make_writable(km, pfn, abi.UVMF_NONE)
        recipe.make_writable(km, l3, abi.UVMF_TLB_FLUSH)
    for pfn in (l3, kernel_l2, *(pfn for _level, pfn in tables)):
        recipe.free_frame(km, pfn)
