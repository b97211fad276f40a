"""Linked before it was made read-only: the new table is zeroed and linked into its parent
while its own direct-map entry is still writable, and made read-only only afterwards. Xen
validates the frame at the link and refuses: a page table may not be mapped writable
anywhere (``type.writable-mapped``)."""

from __future__ import annotations

from collections.abc import Sequence

from hypervisor import abi
from hypervisor.abi import Pfn
from minikern import recipe
from minikern.kmem import KernelMemory


def add_table(km: KernelMemory, pfn: Pfn, level: int, parents: Sequence[tuple[Pfn, int]]) -> None:
    recipe.zero_frame(km, pfn)
    for parent, slot in parents:
        recipe.link_table(km, parent, slot, pfn)
    recipe.make_readonly(km, pfn, abi.UVMF_NONE)
    if level == 1:
        recipe.pin_table(km, pfn, 1)
