"""The tree's frames never freed: release_tree_pae switches away, unpins the L3 and makes
every table writable, and stops there. Xen is satisfied, but the kernel has lost the
frames: every exit leaks a whole tree (``lesson.leaked``)."""

from __future__ import annotations

from hypervisor import abi
from hypervisor.abi import Pfn
from minikern import recipe
from minikern.build import Tables
from minikern.kmem import KernelMemory


def release_tree_pae(
    km: KernelMemory, l3: Pfn, kernel_l2: Pfn, tables: Tables, loaded: bool
) -> None:
    if loaded:
        recipe.load_base(km, km.boot_l4, None)
    with km.hc.lazy():
        recipe.unpin_table(km, l3)
        recipe.make_writable(km, kernel_l2, abi.UVMF_NONE)
        for level, pfn in tables:
            if level == 1:
                recipe.unpin_table(km, pfn)
            recipe.make_writable(km, pfn, abi.UVMF_NONE)
        recipe.make_writable(km, l3, abi.UVMF_TLB_FLUSH)
