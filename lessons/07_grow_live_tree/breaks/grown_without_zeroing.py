"""Not zeroed: the new table is made read-only, pinned and linked as it came from the
allocator. A fresh frame happens to be all zeros, but a recycled one is full of the junk
it was filled with when it was freed: as a table every entry is present and points at an
absurd frame, and Xen refuses it when it validates it."""

from __future__ import annotations

from collections.abc import Sequence

from hypervisor import abi
from hypervisor.abi import Pfn
from minikern import recipe
from minikern.kmem import KernelMemory


def add_table(km: KernelMemory, pfn: Pfn, level: int, parents: Sequence[tuple[Pfn, int]]) -> None:
    recipe.make_readonly(km, pfn, abi.UVMF_NONE)
    if level == 1:
        recipe.pin_table(km, pfn, 1)
    for parent, slot in parents:
        recipe.link_table(km, parent, slot, pfn)
