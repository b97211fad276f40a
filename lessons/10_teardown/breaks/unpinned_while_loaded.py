"""Unpinned while still loaded: release_tree never switches the CPU away from the tree it
tears down. Xen unpins it (the loaded base keeps its own type reference), but the tree
stays typed, so giving the L4 its writable mapping back is refused
(``l1.writable-pagetable``): the kernel cannot free the frames of its own current tree."""

from __future__ import annotations

from hypervisor import abi
from hypervisor.abi import Pfn
from minikern import recipe
from minikern.build import Tables
from minikern.kmem import KernelMemory


def release_tree(
    km: KernelMemory, kernel_l4: Pfn, user_l4: Pfn, tables: Tables, loaded: bool
) -> None:
    with km.hc.lazy():
        recipe.unpin_table(km, kernel_l4)
        recipe.unpin_table(km, user_l4)
        recipe.make_writable(km, user_l4, abi.UVMF_NONE)
        for level, pfn in tables:
            if level == 1:
                recipe.unpin_table(km, pfn)
            recipe.make_writable(km, pfn, abi.UVMF_NONE)
        recipe.make_writable(km, kernel_l4, abi.UVMF_TLB_FLUSH)
    for pfn in (kernel_l4, user_l4, *(pfn for _level, pfn in tables)):
        recipe.free_frame(km, pfn)
