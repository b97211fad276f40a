"""The L1s left pinned: only the two L4s are unpinned. Each L1 stays a pinned, typed
table, so giving it its writable mapping back is refused (``l1.writable-pagetable``)."""

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
        for _level, pfn in tables:
            recipe.make_writable(km, pfn, abi.UVMF_NONE)
        recipe.make_writable(km, kernel_l4, abi.UVMF_TLB_FLUSH)
    for pfn in (kernel_l4, user_l4, *(pfn for _level, pfn in tables)):
        recipe.free_frame(km, pfn)
