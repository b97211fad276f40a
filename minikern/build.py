"""Whole trees: create one, build a filled one (for fork), tear one down.

Two strategies, after the real guests (spec: real-guests.md section 2.8):

- ``"linux"``: build the tree while it is plain data -- zero each frame, fill
  its entries with plain stores through the direct map -- then, in one batch,
  make every frame read-only (top-down, each L1 followed by its PIN_L1), the
  kernel L4 read-only with a TLB flush and PIN_L4, then the user L4 likewise.
  Xen validates the whole tree at the pin.
- ``"minios"``: the L4s are made read-only and pinned first (an empty tree);
  then each new frame is zeroed, made read-only, (L1: pinned) and linked into
  the live tree as it is created, and every leaf is a checked ``mmu_update``.

Teardown (Linux ``xen_exit_mmap``): the caller switches the CPU away first;
then UNPIN both L4s, UNPIN each L1 and make every frame writable again (the
kernel L4 last, with a TLB flush); only then are frames freed.
"""

from __future__ import annotations

from collections.abc import Mapping

from hypervisor import abi
from minikern import steps
from minikern.hypercall import LINUX_PTE_BATCH
from minikern.kmem import TABLE_PROT, KernelMemory
from minikern.pgtable import SHIFT, AddressSpace, TableKey, leaf_value

__all__ = ["STRATEGIES", "build_tree", "destroy_tree", "new_tree", "tables_for"]

STRATEGIES = ("linux", "minios")
Leaves = Mapping[int, tuple[int, bool]]
"""vpn -> (data pfn, writable)."""


def tables_for(vpns: list[int]) -> set[TableKey]:
    """The (level, index) of every table a tree mapping ``vpns`` needs."""
    keys: set[TableKey] = set()
    for vpn in vpns:
        va = vpn << 12
        keys.update((lv, va >> SHIFT[lv]) for lv in (3, 2, 1))
    return keys


def _alloc_l4s(km: KernelMemory) -> AddressSpace:
    """A record for a new tree with its two L4 frames allocated (not yet zeroed)."""
    l4 = km.alloc.alloc()
    return AddressSpace(km, l4, km.alloc.alloc())


def _new_l4s(km: KernelMemory, kernel_half: Mapping[int, int]) -> AddressSpace:
    """Allocate, zero and fill a kernel L4 (kernel half copied) and a user L4."""
    mm = _alloc_l4s(km)
    for pfn in (mm.l4, mm.user_l4):
        steps.zero(km, pfn)
    steps.fill(km, mm.l4, kernel_half)
    return mm


def _pin_l4s(km: KernelMemory, mm: AddressSpace) -> None:
    """Queue: each L4 read-only (with a TLB flush) then pinned; the tree is live."""
    for pfn in (mm.l4, mm.user_l4):
        steps.make_readonly(km, pfn, abi.UVMF_TLB_FLUSH)
        steps.pin(km, pfn, 4)
    mm.live = True


def new_tree(km: KernelMemory, kernel_half: Mapping[int, int]) -> AddressSpace:
    """A pinned, empty user address space (2 frames; caller checked memory)."""
    mm = _new_l4s(km, kernel_half)
    with km.hc.lazy():
        _pin_l4s(km, mm)
    return mm


def build_tree(
    km: KernelMemory,
    kernel_half: Mapping[int, int],
    leaves: Leaves,
    strategy: str,
    *,
    leaves_by_mmu_update: bool = False,
) -> AddressSpace:
    """A pinned tree mapping ``leaves``, built by ``strategy`` (queued: call
    inside ``km.hc.lazy()``). The caller checked that enough frames are free.
    ``leaves_by_mmu_update`` writes the leaves of an unpinned tree with
    (unchecked, raw) ``mmu_update`` requests as Linux's ``set_pte_at`` does,
    instead of plain stores."""
    if strategy == "minios":
        mm = _new_l4s(km, kernel_half)
        _pin_l4s(km, mm)
        for vpn in sorted(leaves):
            mm.ensure_l1(vpn)
            pfn, rw = leaves[vpn]
            mm.set_leaf(vpn, pfn, rw)
        return mm
    mm = _alloc_l4s(km)
    _build_unpinned(km, mm, kernel_half, leaves, leaves_by_mmu_update)
    _pin_tree(km, mm)
    return mm


def _build_unpinned(
    km: KernelMemory,
    mm: AddressSpace,
    kernel_half: Mapping[int, int],
    leaves: Leaves,
    by_mmu: bool,
) -> None:
    """Allocate every table, then zero and fill each with plain stores while it
    is plain data (leaves optionally as raw ``mmu_update`` requests)."""
    keys = sorted(tables_for(list(leaves)), key=lambda k: (-k[0], k[1]))
    for key in keys:
        mm.tables[key] = km.alloc.alloc()
        mm.used[key] = 0
    images: dict[int, dict[int, int]] = {pfn: {} for pfn in mm.all_table_pfns()}
    images[mm.l4].update(kernel_half)
    for level, index in keys:
        pfn = mm.tables[(level, index)]
        for parent, slot in mm.parents(level, index):
            images[parent][slot] = km.pte(pfn, TABLE_PROT)
        if level < 3:
            mm.used[(level + 1, index >> 9)] += 1
    late: list[tuple[int, int, int]] = []
    for vpn in sorted(leaves):
        pfn, rw = leaves[vpn]
        l1, slot = mm.tables[(1, vpn >> 9)], vpn & 511
        if by_mmu:
            late.append((l1, slot, leaf_value(km, pfn, rw)))
        else:
            images[l1][slot] = leaf_value(km, pfn, rw)
        mm.used[(1, vpn >> 9)] += 1
        mm.ptes[vpn] = pfn
        if rw:
            mm.writable.add(vpn)
    for pfn, image in images.items():
        steps.zero(km, pfn)
        steps.fill(km, pfn, image)
    if late:
        with km.hc.limits(LINUX_PTE_BATCH, 1):
            for l1, slot, value in late:
                km.hc.mmu(km.entry_ma(l1, slot) | abi.MMU_NORMAL_PT_UPDATE, value)


def _pin_tree(km: KernelMemory, mm: AddressSpace) -> None:
    """Queue Linux's pin walk: every table read-only top-down, PIN_L1 after each
    L1, then the two L4s."""
    for level, pfn in mm.table_pfns():
        steps.make_readonly(km, pfn)
        if level == 1:
            steps.pin(km, pfn, 1)
            mm.pinned_l1.add(pfn)
    _pin_l4s(km, mm)


def destroy_tree(km: KernelMemory, mm: AddressSpace) -> list[int]:
    """Unpin the tree and make every frame writable again (one batch); the CPU
    must not be using it. Returns the table pfns, ready to be freed."""
    with km.hc.lazy():
        steps.unpin(km, mm.l4)
        steps.unpin(km, mm.user_l4)
        steps.make_writable(km, mm.user_l4)
        for _level, pfn in mm.table_pfns():
            if pfn in mm.pinned_l1:
                steps.unpin(km, pfn)
            steps.make_writable(km, pfn)
        steps.make_writable(km, mm.l4, abi.UVMF_TLB_FLUSH)
    mm.pinned_l1.clear()
    mm.live = False
    return mm.all_table_pfns()
