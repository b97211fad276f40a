"""Made writable before it was unpinned: each table gets its writable direct-map entry
back while it is still a pinned, typed table. Xen refuses a writable mapping of a page
table (``l1.writable-pagetable``)."""

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
        for pfn in (kernel_l4, user_l4):
            recipe.make_writable(km, pfn, abi.UVMF_TLB_FLUSH)
            recipe.unpin_table(km, pfn)
        for level, pfn in tables:
            recipe.make_writable(km, pfn, abi.UVMF_NONE)
            if level == 1:
                recipe.unpin_table(km, pfn)
    for pfn in (kernel_l4, user_l4, *(pfn for _level, pfn in tables)):
        recipe.free_frame(km, pfn)
