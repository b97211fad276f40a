"""A process's page-table tree and the kernel's record of it (``mm_struct``).

64-bit PV gives each vCPU two bases, like Linux: the **kernel L4** (the kernel
half -- L4 slots 272..511, copied from the boot L4, so slot 511 and the direct
map -- plus the user half) is loaded with NEW_BASEPTR; the **user L4** holds the
user half only and is loaded with NEW_USER_BASEPTR. Two L4s are needed because
a 64-bit PV kernel runs in ring 3, like its user code: Xen makes every present
entry user-accessible (it adds USER to whatever the kernel writes, pv/mm.h
``adjust_guest_l*e``), so no USER bit can keep user code out of kernel memory.
What keeps it out is that the user L4 does not map kernel memory at all: user
code cannot even name it. Both L4s point at the same L3s, so the user half is
kept once.

A 32-bit PAE guest (``km.pae``) has one base, the **L3** (four entries).
Slots 0..2 are user space (below :data:`USER_LIMIT_PAE`), slot 3 points at
the process's **own kernel L2** (a copy of the boot kernel L2's guest slots;
Xen fills its own slots when it validates it, and lets an L2 sit in slot 3 of
one L3 only). There is no user base: the kernel runs in ring 1 and its
entries lack USER, so user code is kept out by the USER bit and the 3 GiB
split. The same two fields hold the two frames: ``l4`` the L3 (also
``mm.l3``), ``user_l4`` the kernel L2 (also ``mm.kernel_l2``).

Tables are recorded by ``(level, index)`` where ``index = va >> SHIFT[level]``;
leaves by virtual page number. A tree is *live* once its L4s are pinned: from
then on every change goes through Xen (``mmu_update``), and a new table is
grown the Linux way: zero, make read-only, pin (L1), then link.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from hypervisor import abi
from hypervisor.abi import Pfn
from minikern import steps
from minikern.errors import panic
from minikern.kmem import KernelMemory, pfn_pte
from minikern.recipe import (
    link_table,
    make_readonly,
    make_writable,
    pin_table,
    unlink_table,
    unpin_table,
    zero_frame,
)
from minikern.vma import VmaMap

__all__ = [
    "LOWER",
    "SHIFT",
    "USER_LIMIT",
    "USER_LIMIT_PAE",
    "AddressSpace",
    "TableKey",
    "add_table",
    "leaf_value",
    "set_pte",
    "store_pte",
]

SHIFT = {1: 21, 2: 30, 3: 39}
"""``va >> SHIFT[n]`` is the index of the level-n table covering ``va``."""
USER_LIMIT = 1 << 47
"""User virtual addresses are below this (L4 slots 0..255)."""
USER_LIMIT_PAE = 0xC0000000
"""A PAE guest's user addresses are below this (L3 slots 0..2; Linux ``TASK_SIZE``)."""
LOWER = {4: (3, 2, 1), 3: (2, 1)}
"""Levels of the tables below the top, top-down, for a tree of 4 or 3 (PAE) levels."""
TableKey = tuple[int, int]
USER_PROT = abi._PAGE_PRESENT | abi._PAGE_USER
"""A user data mapping, read-only (``| _PAGE_RW`` for writable)."""


def leaf_value(km: KernelMemory, pfn: Pfn, writable: bool) -> int:
    """A user data mapping of ``pfn``."""
    return pfn_pte(km, pfn, USER_PROT | (abi._PAGE_RW if writable else 0))


@steps.swappable
def set_pte(km: KernelMemory, l1: Pfn, slot: int, pte: int, cmd: int) -> None:
    """Queue: write ``pte`` into entry ``slot`` of the live L1 ``l1`` through Xen:
    one ``mmu_update`` request whose pointer is the entry's machine address
    with ``cmd`` (``MMU_NORMAL_PT_UPDATE``, or ``MMU_PT_UPDATE_PRESERVE_AD`` to
    keep the Accessed/Dirty bits the hardware set) in its low bits."""
    km.hc.mmu(km.entry_ma(l1, slot) | cmd, pte)


@steps.swappable
def store_pte(km: KernelMemory, l1: Pfn, slot: int, pte: int) -> None:
    """Now: write ``pte`` into entry ``slot`` of the live L1 ``l1`` with a plain
    8-byte store through the direct map. The frame is read-only, so the store
    faults; with ``VMASST_TYPE_writable_pagetables`` Xen traps it, checks the
    new entry as ``mmu_update`` would, and emulates it."""
    km.vcpu.store(km.va(l1) + 8 * slot, pte)


@steps.swappable
def add_table(km: KernelMemory, pfn: Pfn, level: int, parents: Sequence[tuple[Pfn, int]]) -> None:
    """Queue: make the newly allocated frame ``pfn`` a level-``level`` table of a
    live tree: zero it (while still writable), make it read-only, pin it if
    it is an L1, then link it into each ``(parent, slot)``. The order matters:
    Xen validates the frame when it is linked (or pinned)."""
    zero_frame(km, pfn)
    make_readonly(km, pfn, abi.UVMF_NONE)
    if level == 1:
        pin_table(km, pfn, 1)
    for parent, slot in parents:
        link_table(km, parent, slot, pfn)


@attrs.define(eq=False)
class AddressSpace:
    """One process's tree: its two L4s (PAE: its L3 and its kernel L2), its
    tables, its leaves and its VMAs. Every L1 of a live tree is pinned."""

    km: KernelMemory
    l4: Pfn
    """pfn of the kernel-mode L4 (NEW_BASEPTR); PAE: the L3."""
    user_l4: Pfn
    """pfn of the user-mode L4 (NEW_USER_BASEPTR); PAE: the kernel L2 (L3 slot 3)."""
    tables: dict[TableKey, Pfn] = attrs.Factory(dict)
    used: dict[TableKey, int] = attrs.Factory(dict)
    """Present entries per table (L3-L1)."""
    ptes: dict[int, Pfn] = attrs.Factory(dict)
    """vpn -> data pfn mapped there."""
    writable: set[int] = attrs.Factory(set)
    """vpns whose leaf is mapped RW right now."""
    vmas: VmaMap = attrs.Factory(VmaMap)
    """What the process may touch: ranges of pages, "r" or "rw"."""
    live: bool = False

    # -- the shape of the tree ----------------------------------------------------

    @property
    def levels(self) -> int:
        """4, or 3 on a 32-bit PAE guest."""
        return 3 if self.km.pae else 4

    @property
    def user_limit(self) -> int:
        """User addresses are below this."""
        return USER_LIMIT_PAE if self.km.pae else USER_LIMIT

    @property
    def user_base(self) -> Pfn | None:
        """What NEW_USER_BASEPTR loads: the user L4, or None on a PAE guest."""
        return None if self.km.pae else self.user_l4

    @property
    def l3(self) -> Pfn:
        """A PAE tree's L3 (its top, NEW_BASEPTR)."""
        return self.l4

    @property
    def kernel_l2(self) -> Pfn:
        """A PAE tree's own kernel L2 (L3 slot 3)."""
        return self.user_l4

    # -- looking things up --------------------------------------------------------

    def table_pfns(self) -> list[tuple[int, Pfn]]:
        """``(level, pfn)`` of every table below the L4s, top-down."""
        return [(key[0], self.tables[key]) for key in sorted(self.tables, key=_top_down)]

    def all_table_pfns(self) -> list[Pfn]:
        return [self.l4, self.user_l4, *self.tables.values()]

    def leaf_slot(self, vpn: int) -> tuple[Pfn, int]:
        """``(l1 pfn, slot)`` of the leaf entry for ``vpn``; the L1 must exist."""
        l1 = self.tables.get((1, vpn >> 9))
        if l1 is None:
            raise panic(f"walk: no L1 for vpn {vpn:#x}")
        return l1, vpn & 511

    def missing_tables(self, vpn: int) -> int:
        """How many tables mapping ``vpn`` would need."""
        va = vpn << abi.PAGE_SHIFT
        return sum((lv, va >> SHIFT[lv]) not in self.tables for lv in LOWER[self.levels])

    def parents(self, level: int, index: int) -> list[tuple[Pfn, int]]:
        """``(table pfn, slot)`` of every entry that points at table (level, index)."""
        if level == self.levels - 1:
            if self.km.pae:
                return [(self.l3, index)]
            return [(self.l4, index), (self.user_l4, index)]
        return [(self.tables[(level + 1, index >> 9)], index & 511)]

    # -- growing a live tree --------------------------------------------------------

    def ensure_l1(self, vpn: int) -> Pfn:
        """The L1 for ``vpn``, growing the live tree as needed (queued)."""
        va = vpn << abi.PAGE_SHIFT
        for level in LOWER[self.levels]:
            key = (level, va >> SHIFT[level])
            if key not in self.tables:
                self.grow(level, key[1])
        return self.tables[(1, vpn >> 9)]

    def grow(self, level: int, index: int) -> Pfn:
        """Allocate table (level, index) and add it to the live tree (``add_table``)."""
        pfn = self.km.alloc.alloc()
        add_table(self.km, pfn, level, self.parents(level, index))
        self.tables[(level, index)] = pfn
        self.used[(level, index)] = 0
        if level < self.levels - 1:
            self.used[(level + 1, index >> 9)] += 1
        return pfn

    # -- leaves ---------------------------------------------------------------------

    def set_leaf(self, vpn: int, pfn: Pfn, writable: bool, cmd: int) -> None:
        """Queue the leaf for ``vpn`` -> ``pfn`` (the L1 must exist)."""
        l1, slot = self.leaf_slot(vpn)
        if vpn not in self.ptes:
            self.used[(1, vpn >> 9)] += 1
        set_pte(self.km, l1, slot, leaf_value(self.km, pfn, writable), cmd)
        self.ptes[vpn] = pfn
        if writable:
            self.writable.add(vpn)
        else:
            self.writable.discard(vpn)

    def clear_leaf(self, vpn: int) -> Pfn:
        """Queue clearing the leaf for ``vpn``; returns the pfn it mapped."""
        l1, slot = self.leaf_slot(vpn)
        set_pte(self.km, l1, slot, 0, abi.MMU_NORMAL_PT_UPDATE)
        self.used[(1, vpn >> 9)] -= 1
        self.writable.discard(vpn)
        return self.ptes.pop(vpn)

    # -- shrinking ------------------------------------------------------------------

    def prune(self, vpn: int) -> list[Pfn]:
        """Queue the removal of tables over ``vpn`` that became empty: unlink,
        unpin (L1), make writable. Returns their pfns, to free after the flush."""
        va = vpn << abi.PAGE_SHIFT
        gone: list[Pfn] = []
        for level in reversed(LOWER[self.levels]):
            key = (level, va >> SHIFT[level])
            if key not in self.tables or self.used[key]:
                break
            pfn = self.tables.pop(key)
            del self.used[key]
            for parent, slot in self.parents(level, key[1]):
                unlink_table(self.km, parent, slot)
            if level < self.levels - 1:
                self.used[(level + 1, key[1] >> 9)] -= 1
            if level == 1:
                unpin_table(self.km, pfn)
            make_writable(self.km, pfn, abi.UVMF_NONE)
            gone.append(pfn)
        return gone


def _top_down(key: TableKey) -> tuple[int, int]:
    return -key[0], key[1]
