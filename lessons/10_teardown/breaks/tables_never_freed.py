"""The tree's frames never freed: release_tree switches away, unpins and makes every
table writable, and stops there. Xen is satisfied, but the kernel has lost the frames:
every exit leaks a whole tree, and the old tables' contents are still in them."""

from __future__ import annotations

from hypervisor import abi
from hypervisor.abi import Pfn
from minikern import recipe
from minikern.build import Tables
from minikern.kmem import KernelMemory


def release_tree(
    km: KernelMemory, kernel_l4: Pfn, user_l4: Pfn, tables: Tables, loaded: bool
) -> None:
    if loaded:
        recipe.load_base(km, km.boot_l4, None)
    with km.hc.lazy():
        recipe.unpin_table(km, kernel_l4)
        recipe.unpin_table(km, user_l4)
        recipe.make_writable(km, user_l4, abi.UVMF_NONE)
        for level, pfn in tables:
            if level == 1:
                recipe.unpin_table(km, pfn)
            recipe.make_writable(km, pfn, abi.UVMF_NONE)
        recipe.make_writable(km, kernel_l4, abi.UVMF_TLB_FLUSH)
