"""The new L1 never pinned: it is zeroed, made read-only and linked, and Xen validates it
through its parent, so every access works. But the kernel's rule is that every L1 of a
live tree is pinned (so it stays validated when it is unlinked), and when the kernel
removes the table again Xen refuses to unpin what was never pinned
(``unpin.not-pinned``)."""

from __future__ import annotations

from collections.abc import Sequence

from hypervisor import abi
from hypervisor.abi import Pfn
from minikern import recipe
from minikern.kmem import KernelMemory


def add_table(km: KernelMemory, pfn: Pfn, level: int, parents: Sequence[tuple[Pfn, int]]) -> None:
    recipe.zero_frame(km, pfn)
    recipe.make_readonly(km, pfn, abi.UVMF_NONE)
    for parent, slot in parents:
        recipe.link_table(km, parent, slot, pfn)
