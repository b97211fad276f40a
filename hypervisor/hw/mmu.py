"""The page walk: x86-64 4-level paging, and the 3-level PAE layout of a
32-bit guest (a 4-entry L3 on top).

The walk reads the tables straight out of machine memory, checks RW and US at
every level, and -- as x86 does -- sets ACCESSED in every entry it uses and
DIRTY in the leaf on a write. The TLB in front of it caches the result.
"""

from __future__ import annotations

from typing import NamedTuple

from hypervisor.abi import (
    _PAGE_ACCESSED,
    _PAGE_DIRTY,
    _PAGE_PRESENT,
    _PAGE_PSE,
    _PAGE_RW,
    _PAGE_USER,
    PAGE_SHIFT,
    PTE_MFN_MASK,
    Mfn,
    pte_mfn,
)
from hypervisor.hw.memory import ZERO_WORDS, Memory
from hypervisor.hw.tlb import Tlb, TlbEntry

__all__ = ["Mmu", "Translation", "WalkFault", "walk"]

FAULT_PRESENT, FAULT_WRITE, FAULT_USER, FAULT_RSVD = 1, 2, 4, 8


class Translation(NamedTuple):
    """A successful walk: the frame, the effective permissions, and where the
    leaf entry lives (``l1_mfn``, ``l1_slot``) with its value after the walk."""

    mfn: Mfn
    writable: bool
    user: bool
    l1_mfn: Mfn
    l1_slot: int
    leaf: int


class WalkFault(Exception):  # noqa: N818 -- a hardware event, not an error
    """The walk failed: ``error_code`` has the x86 page-fault bits; ``level``
    is the level of the entry that stopped it."""

    def __init__(self, va: int, error_code: int, level: int, why: str) -> None:
        super().__init__(va, error_code, level, why)
        self.va = va
        self.error_code = error_code
        self.level = level
        self.why = why


def walk(
    mem: Memory, root: Mfn, va: int, *, levels: int, write: bool, user: bool, set_ad: bool = True
) -> Translation:
    """Translate ``va`` through the tables rooted at frame ``root``.

    Raises :class:`WalkFault` for a non-present entry, a reserved bit, or a
    permission the access needs and the walk does not grant (RW is enforced in
    kernel mode too, as with CR0.WP set; US only in user mode).
    """
    mfn, rights, l1_mfn, l1_slot, entry = _walk(mem, root, va, levels, write, user, set_ad)
    return Translation(
        mfn, bool(rights & _PAGE_RW), bool(rights & _PAGE_USER), l1_mfn, l1_slot, entry
    )


def _walk(
    mem: Memory, root: Mfn, va: int, levels: int, write: bool, user: bool, set_ad: bool
) -> tuple[Mfn, int, Mfn, int, int]:
    """:func:`walk`'s work: the frame, the RW/US rights ANDed over the levels,
    and the leaf entry's table, slot and value after the walk."""
    frames, zero = mem.frames_words, ZERO_WORDS
    table, rights = root, _PAGE_RW | _PAGE_USER
    l1_mfn, l1_slot, entry = root, 0, 0
    unaccessed: list[tuple[Mfn, int]] | None = None  # upper entries to mark ACCESSED
    lvl = levels
    for shift, imask in _LEVELS[levels]:
        idx = (va >> shift) & imask
        entry = frames.get(table, zero)[idx]
        if not entry & _PAGE_PRESENT or (lvl > 1 and entry & _PAGE_PSE):
            raise _fault(va, write, user, lvl, table, idx, entry)
        rights &= entry
        if lvl > 1 and not entry & _PAGE_ACCESSED:
            if unaccessed is None:
                unaccessed = []
            unaccessed.append((table, idx))
        l1_mfn, l1_slot = table, idx
        table = (entry & PTE_MFN_MASK) >> PAGE_SHIFT  # type: ignore[assignment] # pte_mfn
        lvl -= 1
    if user and not rights & _PAGE_USER:
        why = _denied(mem, root, va, levels, _PAGE_USER, "supervisor-only")
        raise WalkFault(va, _code(write, user) | FAULT_PRESENT, 1, why)
    if write and not rights & _PAGE_RW:
        why = _denied(mem, root, va, levels, _PAGE_RW, "read-only")
        raise WalkFault(va, _code(write, user) | FAULT_PRESENT, 1, why)
    if set_ad:  # (every table walked holds a present entry: it is in ``frames``)
        if unaccessed is not None:
            for tmfn, slot in unaccessed:
                frames[tmfn][slot] |= _PAGE_ACCESSED
        want = entry | _PAGE_ACCESSED | (_PAGE_DIRTY if write else 0)
        if want != entry:
            frames[l1_mfn][l1_slot] = entry = want
    return table, rights, l1_mfn, l1_slot, entry


_LEVELS = {
    4: ((39, 511), (30, 511), (21, 511), (12, 511)),
    3: ((30, 3), (21, 511), (12, 511)),
}
"""Per paging mode, top level first: (shift, index mask) of each level."""


def _code(write: bool, user: bool) -> int:
    return (FAULT_WRITE if write else 0) | (FAULT_USER if user else 0)


def _fault(va: int, write: bool, user: bool, lvl: int, table: Mfn, idx: int, e: int) -> WalkFault:
    """The fault of a walk stopped at entry ``idx`` of ``table`` (level ``lvl``)."""
    if not e & _PAGE_PRESENT:
        why = f"L{lvl} entry {idx} of mfn {table:#x} is not present"
        return WalkFault(va, _code(write, user), lvl, why)
    code = _code(write, user) | FAULT_PRESENT | FAULT_RSVD
    return WalkFault(va, code, lvl, "reserved bit (PSE)")


def _denied(mem: Memory, root: Mfn, va: int, levels: int, bit: int, what: str) -> str:
    """``"the leaf entry (L1 mfn 0x17a slot 3) is read-only"``: the first entry
    of the (successful) walk of ``va`` that lacks ``bit`` -- walked again, as
    only a fault needs it."""
    table, lvl = root, levels
    for shift, imask in _LEVELS[levels]:
        idx = (va >> shift) & imask
        e = mem.frames_words.get(table, ZERO_WORDS)[idx]
        if not e & bit:
            where = f"L{lvl} mfn {table:#x} slot {idx}"
            if lvl == 1:
                return f"the leaf entry ({where}) is {what}"
            return f"the {where} entry above the leaf is {what}"
        table, lvl = pte_mfn(e), lvl - 1
    return f"a {what} mapping"  # pragma: no cover -- only called when one lacks it


class Mmu:
    """One CPU's MMU: the loaded root table (CR3), the paging mode and the TLB."""

    __slots__ = ("levels", "mem", "root", "tlb", "walks")

    def __init__(self, mem: Memory, levels: int) -> None:
        self.mem = mem
        self.levels = levels
        self.root = Mfn(0)
        self.tlb = Tlb()
        self.walks = 0
        """Page walks started (TLB misses), faulting ones included."""

    def load_root(self, root: Mfn) -> None:
        """Load CR3: the new root takes effect and the TLB is flushed."""
        self.root = root
        self.tlb.flush_all()

    def translate(self, va: int, *, write: bool, user: bool) -> int:
        """The machine frame for ``va``, from the TLB or a fresh walk.

        A cached entry that does not grant the access (or lacks DIRTY for a
        write) is dropped and the tables walked again, as x86 does before it
        raises a fault.
        """
        vpn = va >> PAGE_SHIFT
        key = (self.root, vpn)
        hit = self.tlb.entries.get(key)
        if hit is not None:
            if (not write or (hit.writable and hit.dirty)) and (not user or hit.user):
                return hit.mfn
            del self.tlb.entries[key]
        self.walks += 1
        if not self.root:
            raise WalkFault(va, (2 if write else 0) | (4 if user else 0), self.levels, "no CR3")
        mfn, rights, _, _, leaf = _walk(self.mem, self.root, va, self.levels, write, user, True)
        self.tlb.entries[key] = TlbEntry(
            mfn, bool(rights & _PAGE_RW), bool(rights & _PAGE_USER), bool(leaf & _PAGE_DIRTY)
        )
        return mfn
