"""One level forgotten: protect_tables makes the L3s and L1s read-only (and pins the L1s)
but skips the L2s. Nothing complains until the L4 is pinned: then Xen walks the tree from
the top, reaches an L2 that is still mapped writable in the direct map, and refuses the
whole pin deep inside validation (``type.writable-mapped``)."""

from __future__ import annotations

from hypervisor import abi
from minikern import recipe
from minikern.build import Tables
from minikern.kmem import KernelMemory


def protect_tables(km: KernelMemory, tables: Tables) -> None:
    for level, pfn in tables:
        if level == 2:
            continue
        recipe.make_readonly(km, pfn, abi.UVMF_NONE)
        if level == 1:
            recipe.pin_table(km, pfn, 1)
