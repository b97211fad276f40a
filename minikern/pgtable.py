"""A process's page-table tree and the kernel's record of it (``mm_struct``).

64-bit PV gives each vCPU two bases, like Linux: the **kernel L4** (the kernel
half -- L4 slots 272..511, copied from the boot L4, so slot 511 and the direct
map -- plus the user half) is loaded with NEW_BASEPTR; the **user L4** holds the
user half only and is loaded with NEW_USER_BASEPTR. User code therefore cannot
even name kernel memory: the hardware, not a software check, refuses it. Both
L4s point at the same L3s, so the user half is kept once.

Tables are recorded by ``(level, index)`` where ``index = va >> SHIFT[level]``;
leaves by virtual page number. A tree is *live* once its L4s are pinned: from
then on every change goes through Xen (``mmu_update``), and a new table is
grown the Linux way: zero, make read-only, pin (L1), then link.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs

from hypervisor import abi
from minikern import steps
from minikern.errors import panic
from minikern.kmem import KernelMemory

__all__ = ["SHIFT", "USER_LIMIT", "AddressSpace", "TableKey", "leaf_value"]

SHIFT = {1: 21, 2: 30, 3: 39}
"""``va >> SHIFT[n]`` is the index of the level-n table covering ``va``."""
USER_LIMIT = 1 << 47
"""User virtual addresses are below this (L4 slots 0..255)."""
TableKey = tuple[int, int]
P, RW, US = abi._PAGE_PRESENT, abi._PAGE_RW, abi._PAGE_USER


def leaf_value(km: KernelMemory, pfn: int, writable: bool) -> int:
    """A user data mapping of ``pfn``."""
    return km.pte(pfn, P | US | (RW if writable else 0))


@attrs.define(eq=False)
class AddressSpace:
    """One process's tree: its two L4s, its tables, its leaves and its VMAs."""

    km: KernelMemory
    l4: int
    """pfn of the kernel-mode L4 (NEW_BASEPTR)."""
    user_l4: int
    """pfn of the user-mode L4 (NEW_USER_BASEPTR)."""
    tables: dict[TableKey, int] = attrs.Factory(dict)
    used: dict[TableKey, int] = attrs.Factory(dict)
    """Present entries per table (L3-L1)."""
    ptes: dict[int, int] = attrs.Factory(dict)
    """vpn -> data pfn mapped there."""
    writable: set[int] = attrs.Factory(set)
    """vpns whose leaf is mapped RW right now."""
    vmas: dict[int, str] = attrs.Factory(dict)
    """vpn -> "r" / "rw": what the process may touch (page-granular VMAs)."""
    pinned_l1: set[int] = attrs.Factory(set)
    live: bool = False

    # -- looking things up --------------------------------------------------------

    def table_pfns(self) -> Iterator[tuple[int, int]]:
        """``(level, pfn)`` of every table below the L4s, top-down."""
        for key in sorted(self.tables, key=lambda k: (-k[0], k[1])):
            yield key[0], self.tables[key]

    def all_table_pfns(self) -> list[int]:
        return [self.l4, self.user_l4, *self.tables.values()]

    def leaf_slot(self, vpn: int) -> tuple[int, int]:
        """``(l1 pfn, slot)`` of the leaf entry for ``vpn``; the L1 must exist."""
        l1 = self.tables.get((1, vpn >> 9))
        if l1 is None:
            raise panic(f"walk: no L1 for vpn {vpn:#x}")
        return l1, vpn & 511

    def missing_tables(self, vpn: int) -> int:
        """How many tables mapping ``vpn`` would need."""
        va = vpn << 12
        return sum((lv, va >> SHIFT[lv]) not in self.tables for lv in (3, 2, 1))

    def parents(self, level: int, index: int) -> list[tuple[int, int]]:
        """``(table pfn, slot)`` of every entry that points at table (level, index)."""
        if level == 3:
            return [(self.l4, index), (self.user_l4, index)]
        return [(self.tables[(level + 1, index >> 9)], index & 511)]

    # -- growing a live tree --------------------------------------------------------

    def ensure_l1(self, vpn: int) -> int:
        """The L1 for ``vpn``, growing the live tree as needed (queued)."""
        va = vpn << 12
        for level in (3, 2, 1):
            key = (level, va >> SHIFT[level])
            if key not in self.tables:
                self.grow(level, key[1])
        return self.tables[(1, vpn >> 9)]

    def grow(self, level: int, index: int) -> int:
        """Add table (level, index) to the live tree: zero, read-only, pin an L1,
        then link into its parent(s)."""
        km = self.km
        pfn = km.alloc.alloc()
        steps.zero(km, pfn)
        steps.make_readonly(km, pfn)
        if level == 1:
            steps.pin(km, pfn, 1)
            self.pinned_l1.add(pfn)
        for parent, slot in self.parents(level, index):
            steps.link(km, parent, slot, pfn)
        self.tables[(level, index)] = pfn
        self.used[(level, index)] = 0
        if level < 3:
            self.used[(level + 1, index >> 9)] += 1
        return pfn

    # -- leaves ---------------------------------------------------------------------

    def set_leaf(self, vpn: int, pfn: int, writable: bool, cmd: int = 0) -> None:
        """Queue the leaf for ``vpn`` -> ``pfn`` (the L1 must exist)."""
        l1, slot = self.leaf_slot(vpn)
        if vpn not in self.ptes:
            self.used[(1, vpn >> 9)] += 1
        self.km.hc.mmu(self.km.entry_ma(l1, slot) | cmd, leaf_value(self.km, pfn, writable))
        self.ptes[vpn] = pfn
        if writable:
            self.writable.add(vpn)
        else:
            self.writable.discard(vpn)

    def clear_leaf(self, vpn: int) -> int:
        """Queue clearing the leaf for ``vpn``; returns the pfn it mapped."""
        l1, slot = self.leaf_slot(vpn)
        self.km.hc.mmu(self.km.entry_ma(l1, slot) | abi.MMU_NORMAL_PT_UPDATE, 0)
        self.used[(1, vpn >> 9)] -= 1
        self.writable.discard(vpn)
        return self.ptes.pop(vpn)

    # -- shrinking ------------------------------------------------------------------

    def prune(self, vpn: int) -> list[int]:
        """Queue the removal of tables over ``vpn`` that became empty: unlink,
        unpin (L1), make writable. Returns their pfns, to free after the flush."""
        va = vpn << 12
        gone: list[int] = []
        for level in (1, 2, 3):
            key = (level, va >> SHIFT[level])
            if key not in self.tables or self.used[key]:
                break
            pfn = self.tables.pop(key)
            del self.used[key]
            for parent, slot in self.parents(level, key[1]):
                steps.unlink(self.km, parent, slot)
            if level < 3:
                self.used[(level + 1, key[1] >> 9)] -= 1
            if pfn in self.pinned_l1:
                steps.unpin(self.km, pfn)
                self.pinned_l1.discard(pfn)
            steps.make_writable(self.km, pfn)
            gone.append(pfn)
        return gone
