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

Teardown (Linux ``xen_exit_mmap``, :func:`release_tree`): switch the CPU away
first; then UNPIN both L4s, UNPIN each L1 and make every frame writable again
(the kernel L4 last, with a TLB flush); only then are frames freed.

Lesson functions here: :func:`write_tables` and :func:`protect_tables` (03),
:func:`pin_tree` (04), :func:`release_tree` (10).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hypervisor import abi
from hypervisor.abi import Pfn
from minikern import steps
from minikern.hypercall import LINUX_PTE_BATCH
from minikern.kmem import TABLE_PROT, KernelMemory, pfn_pte
from minikern.pgtable import SHIFT, AddressSpace, TableKey, leaf_value, set_pte
from minikern.recipe import (
    fill_table,
    free_frame,
    load_base,
    make_readonly,
    make_writable,
    pin_table,
    unpin_table,
    zero_frame,
)

__all__ = [
    "STRATEGIES",
    "Leaves",
    "Tables",
    "build_tree",
    "new_tree",
    "pin_tree",
    "protect_tables",
    "release_tree",
    "tables_for",
    "write_tables",
]

STRATEGIES = ("linux", "minios")
Leaves = Mapping[int, tuple[Pfn, bool]]
"""vpn -> (data pfn, writable)."""
Tables = Sequence[tuple[int, Pfn]]
"""``(level, pfn)`` of the tables below a tree's L4s, top-down."""
Images = dict[Pfn, dict[int, int]]
"""Table pfn -> its entries (slot -> value)."""


def tables_for(vpns: list[int]) -> set[TableKey]:
    """The (level, index) of every table a tree mapping ``vpns`` needs."""
    keys: set[TableKey] = set()
    for vpn in vpns:
        va = vpn << abi.PAGE_SHIFT
        keys.update((lv, va >> SHIFT[lv]) for lv in (3, 2, 1))
    return keys


# -- the lesson functions -------------------------------------------------------------


@steps.swappable
def write_tables(km: KernelMemory, images: Mapping[Pfn, Mapping[int, int]]) -> None:
    """Now: give each table frame of a new tree its contents -- zero it, then
    fill its entries (slot -> value) -- with plain stores through the direct
    map, while every frame is still plain data (writable, not yet a table)."""
    for pfn, entries in images.items():
        zero_frame(km, pfn)
        fill_table(km, pfn, entries)


@steps.swappable
def protect_tables(km: KernelMemory, tables: Tables) -> None:
    """Queue Linux's pin walk below the L4s: each table (``(level, pfn)``,
    top-down) made read-only in the direct map, each L1 pinned right after.
    Xen refuses to type a frame as a table while any writable mapping of it
    remains."""
    for level, pfn in tables:
        make_readonly(km, pfn, abi.UVMF_NONE)
        if level == 1:
            pin_table(km, pfn, 1)


@steps.swappable
def pin_tree(km: KernelMemory, kernel_l4: Pfn, user_l4: Pfn) -> None:
    """Queue: each L4 made read-only (with a TLB flush: no stale writable
    translation may survive) and pinned with ``MMUEXT_PIN_L4_TABLE``, kernel
    L4 first. Xen validates the whole tree below each at its pin."""
    for pfn in (kernel_l4, user_l4):
        make_readonly(km, pfn, abi.UVMF_TLB_FLUSH)
        pin_table(km, pfn, 4)


@steps.swappable
def release_tree(
    km: KernelMemory, kernel_l4: Pfn, user_l4: Pfn, tables: Tables, loaded: bool
) -> None:
    """Tear a tree down (Linux ``xen_exit_mmap``): if it is ``loaded``, first
    switch the CPU to the boot L4 with no user base (a loaded tree stays typed
    even once unpinned). Then, in one batch: unpin both L4s, make the user L4
    writable, unpin each L1 and make every table writable, the kernel L4 last
    with a TLB flush. Only then free every frame of it."""
    if loaded:
        load_base(km, km.boot_l4, None)
    with km.hc.lazy():
        unpin_table(km, kernel_l4)
        unpin_table(km, user_l4)
        make_writable(km, user_l4, abi.UVMF_NONE)
        for level, pfn in tables:
            if level == 1:
                unpin_table(km, pfn)
            make_writable(km, pfn, abi.UVMF_NONE)
        make_writable(km, kernel_l4, abi.UVMF_TLB_FLUSH)
    for pfn in (kernel_l4, user_l4, *(pfn for _level, pfn in tables)):
        free_frame(km, pfn)


# -- whole trees --------------------------------------------------------------------------


def _alloc_l4s(km: KernelMemory) -> AddressSpace:
    """A record for a new tree with its two L4 frames allocated (not yet zeroed)."""
    l4 = km.alloc.alloc()
    return AddressSpace(km, l4, km.alloc.alloc())


def _empty_tree(km: KernelMemory, kernel_half: Mapping[int, int]) -> AddressSpace:
    """Queue: a new tree of two L4s (the kernel half copied), pinned; it is live."""
    mm = _alloc_l4s(km)
    write_tables(km, {mm.l4: dict(kernel_half), mm.user_l4: {}})
    pin_tree(km, mm.l4, mm.user_l4)
    mm.live = True
    return mm


def new_tree(km: KernelMemory, kernel_half: Mapping[int, int]) -> AddressSpace:
    """A pinned, empty user address space (2 frames; caller checked memory)."""
    with km.hc.lazy():
        return _empty_tree(km, kernel_half)


def build_tree(
    km: KernelMemory,
    kernel_half: Mapping[int, int],
    leaves: Leaves,
    strategy: str,
    leaves_by_mmu_update: bool,
) -> AddressSpace:
    """A pinned tree mapping ``leaves``, built by ``strategy`` (queued: call
    inside ``km.hc.lazy()``). The caller checked that enough frames are free.
    ``leaves_by_mmu_update`` writes the leaves of an unpinned tree with
    (unchecked, raw) ``mmu_update`` requests as Linux's ``set_pte_at`` does,
    instead of plain stores."""
    if strategy == "minios":
        mm = _empty_tree(km, kernel_half)
        for vpn in sorted(leaves):
            mm.ensure_l1(vpn)
            pfn, rw = leaves[vpn]
            mm.set_leaf(vpn, pfn, rw, abi.MMU_NORMAL_PT_UPDATE)
        return mm
    mm = _alloc_l4s(km)
    images, late = _plan(km, mm, kernel_half, leaves, leaves_by_mmu_update)
    write_tables(km, images)
    if late:
        with km.hc.limits(LINUX_PTE_BATCH, 1):
            for l1, slot, value in late:
                set_pte(km, l1, slot, value, abi.MMU_NORMAL_PT_UPDATE)
    protect_tables(km, mm.table_pfns())
    pin_tree(km, mm.l4, mm.user_l4)
    mm.live = True
    return mm


def _plan(
    km: KernelMemory,
    mm: AddressSpace,
    kernel_half: Mapping[int, int],
    leaves: Leaves,
    by_mmu: bool,
) -> tuple[Images, list[tuple[Pfn, int, int]]]:
    """Allocate every table of a tree mapping ``leaves`` and record it in ``mm``;
    returns each table's image and, with ``by_mmu``, the leaves to write later
    as ``(l1, slot, value)`` instead."""
    keys = sorted(tables_for(list(leaves)), key=lambda k: (-k[0], k[1]))
    for key in keys:
        mm.tables[key] = km.alloc.alloc()
        mm.used[key] = 0
    images: Images = {pfn: {} for pfn in mm.all_table_pfns()}
    images[mm.l4].update(kernel_half)
    for level, index in keys:
        pfn = mm.tables[(level, index)]
        for parent, slot in mm.parents(level, index):
            images[parent][slot] = pfn_pte(km, pfn, TABLE_PROT)
        if level < 3:
            mm.used[(level + 1, index >> 9)] += 1
    late: list[tuple[Pfn, int, int]] = []
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
    return images, late
