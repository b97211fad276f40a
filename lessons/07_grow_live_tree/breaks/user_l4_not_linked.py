"""Only the first parent linked: a new L3 has two parents, the kernel L4 and the user L4,
and only the kernel L4 gets the entry. The kernel sees the new pages; user code, which
runs on the user L4, finds nothing mapped there and faults for ever."""

from __future__ import annotations

from collections.abc import Sequence

from hypervisor import abi
from hypervisor.abi import Pfn
from minikern import recipe
from minikern.kmem import KernelMemory


def add_table(km: KernelMemory, pfn: Pfn, level: int, parents: Sequence[tuple[Pfn, int]]) -> None:
    recipe.zero_frame(km, pfn)
    recipe.make_readonly(km, pfn, abi.UVMF_NONE)
    if level == 1:
        recipe.pin_table(km, pfn, 1)
    for parent, slot in parents[:1]:
        recipe.link_table(km, parent, slot, pfn)
