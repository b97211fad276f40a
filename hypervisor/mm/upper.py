"""L2, L3 and L4 entries: what they may point to, linear (same-level) page
tables, and (de)validation of the upper levels.

A present entry at level n holds a general reference and an L(n-1) type
reference on its target -- which validates the target, recursively, the first
time. If that fails with EINVAL, the *linear* rule is tried: a read-only entry
may point at the table itself, or at another validated table of the same level
(mm.c ``get_lN_linear_pagetable``).
"""

from __future__ import annotations

from collections.abc import Sequence

from hypervisor import rules, steps
from hypervisor.abi import (
    _PAGE_ACCESSED,
    _PAGE_PRESENT,
    _PAGE_RW,
    EINVAL,
    Mfn,
    VMASST_TYPE_pae_extended_cr3,
    make_pte,
    pte_mfn,
)
from hypervisor.errors import GuestError
from hypervisor.mm.adjust import adjust_guest_upper, unadjust_guest_l3e
from hypervisor.mm.domain import PvDomain
from hypervisor.mm.explain import held_by, not_owned, note_validation_failure
from hypervisor.mm.frames import PageInfo, PageType
from hypervisor.mm.refs import (
    DEMOTE,
    PROMOTE,
    flags_error,
    get_page,
    get_page_type,
    put_page,
    put_page_type,
    registers,
)
from hypervisor.mm.state import IO_FRAMES, XenState
from hypervisor.rules import BASE_DISALLOW_MASK, L3_PAE_DISALLOW_MASK

__all__ = [
    "PAE_FIRST_XEN_L2_SLOT",
    "disallow_mask",
    "get_linear_pagetable",
    "get_page_from_lne",
    "guest_slots",
    "init_xen_l4_slots",
    "init_xen_pae_l2_slots",
    "is_guest_slot",
    "present_guest_slots",
    "put_page_from_lne",
]

LEVEL_TYPE = {1: PageType.L1, 2: PageType.L2, 3: PageType.L3, 4: PageType.L4}
PAE_FIRST_XEN_L2_SLOT = 428
"""l2_table_offset(HYPERVISOR_COMPAT_VIRT_START): Xen's part of a PAE Xen L2."""
XEN_L4_SLOTS = range(256, 272)
XEN_ENTRY_FLAGS = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED
"""The flags of the entries Xen writes into its own slots."""


def disallow_mask(level: int, d: PvDomain) -> int:
    return L3_PAE_DISALLOW_MASK if level == 3 and d.is_32bit else BASE_DISALLOW_MASK


def is_guest_slot(level: int, pg: PageInfo, slot: int) -> bool:
    """Guest (not Xen) slots: L4 0-255 and 272-511; a PAE Xen L2 below 428."""
    if level == 4:
        return not 256 <= slot < 272
    if level == 2 and pg.pae_xen_l2:
        return slot < PAE_FIRST_XEN_L2_SLOT
    return True


_L4_GUEST_SLOTS = (*range(256), *range(272, 512))


def guest_slots(level: int, pg: PageInfo, d: PvDomain) -> Sequence[int]:
    """The slots Xen walks when (de)validating a table."""
    if level == 4:
        return _L4_GUEST_SLOTS
    if level == 3 and d.is_32bit:
        return range(4)
    if level == 2 and pg.pae_xen_l2:
        return range(PAE_FIRST_XEN_L2_SLOT)
    return range(512)


_PRESENT_BYTE = bytes(b & _PAGE_PRESENT for b in range(256))
"""Maps an entry's low byte to 1 if it has PRESENT, else 0."""


def present_guest_slots(words: memoryview, level: int, pg: PageInfo, d: PvDomain) -> list[int]:
    """The slots of :func:`guest_slots` whose entry is present, in order. The
    scan runs in C over the entries' low bytes (little-endian: every 8th
    byte, from 0); only present entries cost a Python step (an upper table
    holds a handful of its 512 slots)."""
    flags = words.tobytes()[::8].translate(_PRESENT_BYTE)
    present: list[int] = []
    slot = flags.find(1)
    while slot >= 0:
        present.append(slot)
        slot = flags.find(1, slot + 1)
    if level == 4:
        return [slot for slot in present if not 256 <= slot < 272]
    end = len(guest_slots(level, pg, d))
    return [slot for slot in present if slot < end]


def get_page_from_lne(
    xen: XenState, e: int, level: int, c_mfn: Mfn, c_pg: PageInfo, d: PvDomain, slot: int
) -> None:
    """Take the references of a present entry ``e`` at ``level`` 2-4 in table
    ``c_mfn`` (mm.c ``get_page_from_l2e/l3e/l4e``)."""
    mask = disallow_mask(level, d)
    if e & mask:
        raise flags_error(e, mask, level)
    t_mfn = pte_mfn(e)
    pg = None if xen.is_io(t_mfn) else xen.frames.get(t_mfn)
    if not get_page(pg, d.domid):
        err = GuestError(rules.ENTRY_TARGET_NOT_OWNED, not_owned(xen, t_mfn, d.domid))
        err.refused_entry = e
        raise err
    assert pg is not None
    xen_l2 = level == 3 and d.is_32bit and slot == 3
    try:
        get_page_type(xen, t_mfn, pg, LEVEL_TYPE[level - 1], xen_l2)
    except GuestError as err:
        put_page(xen, t_mfn, pg)
        if err.errno != EINVAL or (level == 3 and d.is_32bit) or err.path:
            raise
        if _looks_linear(level, t_mfn, c_mfn, pg):
            get_linear_pagetable(xen, e, level, t_mfn, pg, c_mfn, c_pg, d)
            return
        if err.rule is rules.TYPE_MISMATCH:
            raise GuestError(
                rules.ENTRY_TARGET_WRONG_TYPE,
                f"L{level} entry {e:#x} points at mfn {t_mfn:#x}, {held_by(xen, t_mfn, pg)}",
            ) from None
        raise
    if xen_l2 and pg.type_count != 1:
        put_page_type(xen, t_mfn, pg)
        put_page(xen, t_mfn, pg)
        raise GuestError(
            rules.L3_PAE_XEN_L2_SHARED,
            f"mfn {t_mfn:#x} is already in use as a PAE Xen L2 (type count {pg.type_count})",
        )


def _looks_linear(level: int, t_mfn: Mfn, c_mfn: Mfn, pg: PageInfo) -> bool:
    """Was the entry meant as a same-level (linear) entry?"""
    return t_mfn == c_mfn or (pg.type is LEVEL_TYPE[level] and pg.type_count > 0)


@steps.swappable
def get_linear_pagetable(
    xen: XenState,
    e: int,
    level: int,
    t_mfn: Mfn,
    pg: PageInfo,
    c_mfn: Mfn,
    c_pg: PageInfo,
    d: PvDomain,
) -> None:
    """Take the references of a linear entry: ``e`` at ``level`` in table
    ``c_mfn`` points at ``t_mfn``, a table of the same level (``pg``, its
    general reference already dropped by the caller). Checked in Xen's order:
    linear tables allowed at all, read-only, then (single-level rule,
    XSA-240) neither the container already a linear target nor the target
    the holder of linear entries of its own. A table mapping itself takes no
    references; otherwise a general and a type reference on the target, and
    the linear counters move. Raises GuestError on a refusal.
    mm.c ``get_l2/l3/l4_linear_pagetable`` (``define_get_linear_pagetable``)."""
    what = f"L{level} entry {e:#x} points at L{level} mfn {t_mfn:#x}, a table of its own level"
    if not xen.config.linear_pt:
        raise GuestError(rules.LINEAR_DISABLED, what)
    if e & _PAGE_RW:
        raise GuestError(rules.LINEAR_WRITABLE, f"{what}, with RW")
    if t_mfn == c_mfn:
        return  # a table mapping itself: no references at all
    # Xen also checks that both tables belong to d: get_page() above already
    # proved it for the target, and the container is d's by construction.
    single = xen.config.linear_single_level
    if single and c_pg.linear < 0:
        raise GuestError(
            rules.LINEAR_CHAIN, f"{what}, but mfn {c_mfn:#x} is itself the target of a linear entry"
        )
    if single and pg.linear > 0:
        raise GuestError(
            rules.LINEAR_CHAIN, f"{what}, but mfn {t_mfn:#x} has linear entries of its own"
        )
    # Only a validated table has a type count here: one that is still being
    # validated is an ancestor of this entry, so of a higher level.
    assert pg.validated, f"linear target mfn {t_mfn:#x} is not validated"
    pg.count += 1
    pg.type_count += 1
    if single:
        c_pg.linear += 1
        pg.linear -= 1


def put_page_from_lne(xen: XenState, e: int, c_mfn: Mfn, c_pg: PageInfo) -> None:
    """Release what a present L2-L4 entry held (mm.c ``put_page_from_lNe``)."""
    t_mfn = pte_mfn(e)
    if t_mfn == c_mfn:
        return
    pg = xen.frames[t_mfn]
    put_page_type(xen, t_mfn, pg, container=c_pg)
    put_page(xen, t_mfn, pg)


def _promote(xen: XenState, mfn: Mfn, pg: PageInfo, level: int) -> None:
    """Validate an L3 or L4 (``level``): every present guest entry, in slot
    order, storing each one adjusted as soon as its references are taken
    (``adjust_guest_lNe``). (The L2 is ``promote_l2_table``'s own loop.)

    On a failure the references already taken are released (Xen: at once, or
    by ``put_old_guest_table`` when the table failed after slot 0); the earlier
    entries keep their adjustments, except a PAE L3's (``unadjust_guest_l3e``).
    """
    assert level in (3, 4), f"_promote validates an L3 or L4, not an L{level}"
    d = xen.domains[pg.owner]  # type: ignore[index]
    words = xen.mem.words(mfn)
    pae_l3 = level == 3 and not d.pv64
    if pae_l3:
        _pae_l3_prepare(xen, mfn, d, words)
    taken: list[int] = []
    slot = 0
    # A PAE L3 walks all four slots (slot 3 must be present); the others only
    # their present entries.
    slots = guest_slots(level, pg, d) if pae_l3 else present_guest_slots(words, level, pg, d)
    try:
        for slot in slots:
            e = words[slot]
            if pae_l3 and slot == 3 and not e & _PAGE_PRESENT:
                raise GuestError(
                    rules.L3_PAE_MISSING_XEN_L2, f"slot 3 of PAE L3 mfn {mfn:#x} is not present"
                )
            if not e & _PAGE_PRESENT:
                continue
            get_page_from_lne(xen, e, level, mfn, pg, d, slot)
            taken.append(slot)
            words[slot] = adjust_guest_upper(level, e, d)
    except GuestError as err:
        for undo in reversed(taken):
            put_page_from_lne(xen, words[undo], mfn, pg)
        if pae_l3:
            for undo in range(slot):
                words[undo] = unadjust_guest_l3e(words[undo], d)
        note_validation_failure(xen, err, level, mfn, slot, words[slot])
        raise
    if level == 4:
        init_xen_l4_slots(words)


def init_xen_l4_slots(words: memoryview) -> None:
    """Write Xen's own entries into slots 256-271 of a validated L4 (opaque
    sentinels standing for Xen's mappings; mm.c ``init_xen_l4_slots``)."""
    for slot in XEN_L4_SLOTS:
        words[slot] = make_pte(IO_FRAMES + slot - 256, XEN_ENTRY_FLAGS)


def _pae_l3_prepare(xen: XenState, mfn: Mfn, d: PvDomain, words: memoryview) -> None:
    """A 32-bit PAE L3: below 4 GiB unless pae_extended_cr3; then Xen zeroes
    slots 4-511 (slot 3's presence is checked in slot order, after 0-2)."""
    if mfn >= 0x100000 and not d.assist(VMASST_TYPE_pae_extended_cr3):
        raise GuestError(rules.L3_PAE_ABOVE_4G, f"PAE L3 mfn {mfn:#x} lies above 4 GiB")
    for slot in range(4, 512):
        words[slot] = 0


def _demote(xen: XenState, mfn: Mfn, pg: PageInfo, level: int) -> None:
    """Release every present guest entry's references (``demote_lN_table``);
    a PAE L3's entries lose their adjustments, an L2 its PAE Xen-L2 mark."""
    d = xen.domains[pg.owner]  # type: ignore[index]
    words = xen.mem.peek(mfn)
    pae_l3 = level == 3 and not d.pv64
    for slot in present_guest_slots(words, level, pg, d):
        e = words[slot]
        put_page_from_lne(xen, e, mfn, pg)
        if pae_l3:
            xen.mem.words(mfn)[slot] = unadjust_guest_l3e(e, d)
    pg.pae_xen_l2 = False


@registers(PROMOTE, PageType.L2)
@steps.swappable
def promote_l2_table(xen: XenState, mfn: Mfn, pg: PageInfo) -> None:
    """Validate an L2: every present entry of the guest's slots
    (``guest_slots``), in slot order, takes its references
    (``get_page_from_lne``: a general and an L1 type reference on the table it
    names, which validates that L1 the first time) and is stored adjusted at
    once (``adjust_guest_upper``, Xen's ``adjust_guest_l2e``).

    The first failing entry stops the walk. The references of the present
    entries before it -- and only those: the failing one took nothing -- are
    released (``put_page_from_lne``, last first; Xen: at once for slot 0, else
    by ``put_old_guest_table`` before the hypercall returns); those entries
    keep their adjustments; the failure is noted (``note_validation_failure``)
    and propagates. A PAE Xen L2 then gets Xen's own slots
    (``init_xen_pae_l2_slots``). mm.c ``promote_l2_table``.
    """
    d = xen.domains[pg.owner]  # type: ignore[index]
    words = xen.mem.words(mfn)
    slot = 0
    try:
        for slot in guest_slots(2, pg, d):
            e = words[slot]
            if e & _PAGE_PRESENT:
                get_page_from_lne(xen, e, 2, mfn, pg, d, slot)
                words[slot] = adjust_guest_upper(2, e, d)
    except GuestError as err:
        for undo in reversed(range(slot)):
            if words[undo] & _PAGE_PRESENT:
                put_page_from_lne(xen, words[undo], mfn, pg)
        note_validation_failure(xen, err, 2, mfn, slot, words[slot])
        raise
    if pg.pae_xen_l2:
        init_xen_pae_l2_slots(words)


def init_xen_pae_l2_slots(words: memoryview) -> None:
    """Write Xen's own entries into slots 428-511 of a validated PAE Xen L2
    (mm.c ``init_xen_pae_l2_slots``)."""
    for slot in range(PAE_FIRST_XEN_L2_SLOT, 512):
        words[slot] = make_pte(IO_FRAMES + slot % 16, XEN_ENTRY_FLAGS)


@registers(PROMOTE, PageType.L3)
def promote_l3_table(xen: XenState, mfn: Mfn, pg: PageInfo) -> None:
    """mm.c ``promote_l3_table``."""
    _promote(xen, mfn, pg, 3)


@registers(PROMOTE, PageType.L4)
def promote_l4_table(xen: XenState, mfn: Mfn, pg: PageInfo) -> None:
    """mm.c ``promote_l4_table`` (then ``init_xen_l4_slots``)."""
    _promote(xen, mfn, pg, 4)


@registers(DEMOTE, PageType.L2)
def demote_l2_table(xen: XenState, mfn: Mfn, pg: PageInfo) -> None:
    """mm.c ``demote_l2_table``."""
    _demote(xen, mfn, pg, 2)


@registers(DEMOTE, PageType.L3)
def demote_l3_table(xen: XenState, mfn: Mfn, pg: PageInfo) -> None:
    """mm.c ``demote_l3_table``."""
    _demote(xen, mfn, pg, 3)


@registers(DEMOTE, PageType.L4)
def demote_l4_table(xen: XenState, mfn: Mfn, pg: PageInfo) -> None:
    """mm.c ``demote_l4_table``."""
    _demote(xen, mfn, pg, 4)
