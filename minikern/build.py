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

A 32-bit PAE guest (``km.pae``) runs the same recipe one level down
(Linux ``__xen_pgd_pin`` / ``__xen_pgd_unpin`` with ``CONFIG_X86_PAE``): its
tree is an L3 with its own kernel L2 in slot 3 (:func:`pae_pgd_images`), the
tables below are protected the same way, then the kernel L2 and the L3 are
made read-only and the L3 is pinned with ``MMUEXT_PIN_L3_TABLE``
(:func:`pin_tree_pae`) -- ``PIN_L4`` on a PAE guest is a silent no-op in Xen,
which leaves the tree unpinned. Teardown: :func:`release_tree_pae`.

Lesson functions here: :func:`write_tables` and :func:`protect_tables` (03),
:func:`pin_tree` (04), :func:`release_tree` (10), :func:`pae_pgd_images`,
:func:`pin_tree_pae` and :func:`release_tree_pae` (12).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hypervisor import abi
from hypervisor.abi import Pfn
from minikern import steps
from minikern.boot import PAE_KERNEL_L3_SLOT
from minikern.hypercall import LINUX_PTE_BATCH
from minikern.kmem import TABLE_PROT, KernelMemory, pfn_pte
from minikern.pgtable import LOWER, SHIFT, AddressSpace, TableKey, leaf_value, set_pte
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
    "pae_pgd_images",
    "pin_tree",
    "pin_tree_pae",
    "protect_tables",
    "release_mm",
    "release_tree",
    "release_tree_pae",
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


def tables_for(vpns: list[int], levels: int) -> set[TableKey]:
    """The (level, index) of every table below the top a tree of ``levels``
    levels (4, or 3 for PAE) mapping ``vpns`` needs."""
    keys: set[TableKey] = set()
    for l1_index in {vpn >> 9 for vpn in vpns}:  # the pages one L1 maps need the same tables
        va = l1_index << SHIFT[1]
        keys.update((lv, va >> SHIFT[lv]) for lv in LOWER[levels])
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


# -- 12: the same recipe for a 32-bit PAE guest -------------------------------------------


@steps.swappable
def pae_pgd_images(
    km: KernelMemory, l3: Pfn, kernel_l2: Pfn, kernel_pmd: Mapping[int, int]
) -> dict[Pfn, dict[int, int]]:
    """The first contents (slot -> entry) of a new PAE tree's two frames: the
    L3, whose slot 3 points at ``kernel_l2`` (``TABLE_PROT``), and
    ``kernel_l2`` itself, a copy of ``kernel_pmd`` (the boot kernel L2's guest
    slots). The L3 cannot point at the boot kernel L2 itself: Xen lets an L2
    in slot 3 belong to one L3 only (it fills Xen's slots of it when it
    validates the L3)."""
    return {
        l3: {PAE_KERNEL_L3_SLOT: pfn_pte(km, kernel_l2, TABLE_PROT)},
        kernel_l2: dict(kernel_pmd),
    }


@steps.swappable
def pin_tree_pae(km: KernelMemory, l3: Pfn, kernel_l2: Pfn) -> None:
    """Queue: the kernel L2 and then the L3 made read-only (the L3 with a TLB
    flush, which covers both), then ``MMUEXT_PIN_L3_TABLE`` of the L3: on a
    32-bit PAE guest the L3 is the top, and Xen validates the whole tree
    below it -- slot 3's L2 as the kernel L2 -- at the pin.
    ``MMUEXT_PIN_L4_TABLE`` would be a silent no-op there."""
    make_readonly(km, kernel_l2, abi.UVMF_NONE)
    make_readonly(km, l3, abi.UVMF_TLB_FLUSH)
    pin_table(km, l3, 3)


@steps.swappable
def release_tree_pae(
    km: KernelMemory, l3: Pfn, kernel_l2: Pfn, tables: Tables, loaded: bool
) -> None:
    """Tear a PAE tree down (Linux ``xen_exit_mmap``, PAE): if it is
    ``loaded``, first switch the CPU to the boot L3 (NEW_BASEPTR only: there
    is no user base). Then, in one batch: unpin the L3, make the kernel L2
    writable, unpin each L1 and make every table writable, the L3 last with
    a TLB flush. Only then free every frame of it."""
    if loaded:
        load_base(km, km.boot_l4, None)
    with km.hc.lazy():
        unpin_table(km, l3)
        make_writable(km, kernel_l2, abi.UVMF_NONE)
        for level, pfn in tables:
            if level == 1:
                unpin_table(km, pfn)
            make_writable(km, pfn, abi.UVMF_NONE)
        make_writable(km, l3, abi.UVMF_TLB_FLUSH)
    for pfn in (l3, kernel_l2, *(pfn for _level, pfn in tables)):
        free_frame(km, pfn)


# -- whole trees --------------------------------------------------------------------------


def _alloc_top(km: KernelMemory) -> AddressSpace:
    """A record for a new tree with its two top frames allocated (not yet
    zeroed): the two L4s, or the PAE L3 and its kernel L2. A 64-bit tree needs
    the user L4 because it alone hides kernel memory from user code (Xen makes
    every 64-bit entry user-accessible; see ``pgtable``)."""
    l4 = km.alloc.alloc()
    return AddressSpace(km, l4, km.alloc.alloc())


def _top_images(km: KernelMemory, mm: AddressSpace, kernel_half: Mapping[int, int]) -> Images:
    """The first contents of ``mm``'s two top frames (the kernel half copied)."""
    if km.pae:
        return pae_pgd_images(km, mm.l3, mm.kernel_l2, kernel_half)
    return {mm.l4: dict(kernel_half), mm.user_l4: {}}


def _pin_top(km: KernelMemory, mm: AddressSpace) -> None:
    """Queue: protect and pin ``mm``'s top (:func:`pin_tree` / :func:`pin_tree_pae`)."""
    if km.pae:
        pin_tree_pae(km, mm.l3, mm.kernel_l2)
    else:
        pin_tree(km, mm.l4, mm.user_l4)


def release_mm(km: KernelMemory, mm: AddressSpace, loaded: bool) -> None:
    """Tear ``mm``'s tree down (:func:`release_tree` / :func:`release_tree_pae`)."""
    if km.pae:
        release_tree_pae(km, mm.l3, mm.kernel_l2, mm.table_pfns(), loaded)
    else:
        release_tree(km, mm.l4, mm.user_l4, mm.table_pfns(), loaded)


def _empty_tree(km: KernelMemory, kernel_half: Mapping[int, int]) -> AddressSpace:
    """Queue: a new tree of two L4s (the kernel half copied), pinned; it is live."""
    mm = _alloc_top(km)
    write_tables(km, _top_images(km, mm, kernel_half))
    _pin_top(km, mm)
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
    mm = _alloc_top(km)
    images, late = _plan(km, mm, kernel_half, leaves, leaves_by_mmu_update)
    write_tables(km, images)
    if late:
        with km.hc.limits(LINUX_PTE_BATCH, 1):
            for l1, slot, value in late:
                set_pte(km, l1, slot, value, abi.MMU_NORMAL_PT_UPDATE)
    protect_tables(km, mm.table_pfns())
    _pin_top(km, mm)
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
    keys = sorted(tables_for(list(leaves), mm.levels), key=lambda k: (-k[0], k[1]))
    for key in keys:
        mm.tables[key] = km.alloc.alloc()
        mm.used[key] = 0
    images: Images = {pfn: {} for pfn in mm.all_table_pfns()}
    images.update(_top_images(km, mm, kernel_half))
    for level, index in keys:
        pfn = mm.tables[(level, index)]
        for parent, slot in mm.parents(level, index):
            images[parent][slot] = pfn_pte(km, pfn, TABLE_PROT)
        if level < mm.levels - 1:
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
