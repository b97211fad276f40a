"""L1 entries: what a present L1 entry may map, and L1 (de)validation.

A present L1 entry holds a general reference on the frame it maps, plus a
writable type reference if it has RW. That writable reference is what stops a
frame from ever being a page table and writable at once: a page table cannot
take the writable type while its type count is non-zero (EBUSY here), and a
frame with writable mappings cannot take a page-table type (EINVAL there).
"""

from __future__ import annotations

from hypervisor import rules, steps
from hypervisor.abi import (
    _PAGE_GLOBAL,
    _PAGE_PRESENT,
    _PAGE_RW,
    _PAGE_USER,
    INVALID_MFN,
    PAGE_SHIFT,
    PTE_MFN_MASK,
    Mfn,
    pte_mfn,
)
from hypervisor.errors import GuestError
from hypervisor.mm.adjust import GUEST_KERNEL, adjust_guest_l1e, io_cache_flip
from hypervisor.mm.domain import PvDomain
from hypervisor.mm.explain import (
    flag_names,
    frame_owner,
    held_by,
    not_owned,
    note_validation_failure,
)
from hypervisor.mm.frames import PageInfo, PageType
from hypervisor.mm.refs import (
    DEMOTE,
    PROMOTE,
    flags_error,
    get_page_type,
    put_page,
    put_page_type,
    registers,
)
from hypervisor.mm.state import IO_FRAMES, XenState
from hypervisor.rules import L1_CACHE_ATTRS

__all__ = ["get_page_from_l1e", "l1_disallow_mask", "l1e_flip_error", "put_page_from_l1e"]

WRITABLE = PageType.WRITABLE
NONE = PageType.NONE
KERNEL_OR_GLOBAL = GUEST_KERNEL | _PAGE_GLOBAL
"""A 64-bit guest's present L1 entry with USER and one of these is already
adjusted (``adjust_guest_l1e`` would not change it)."""


def l1_disallow_mask(d: PvDomain) -> int:
    """Flags refused in ``d``'s L1s (mm.c ``l1_disallow_mask``)."""
    return d.l1_mask


def _get_io(xen: XenState, e: int, mfn: Mfn, l1_owner: PvDomain, pg_owner: PvDomain) -> int:
    """I/O memory (the first MiB, or beyond RAM): permission only, no counts.
    Returns the cache bits to flip: a cacheable mapping is stored uncached.
    (INVALID_MFN is outside every domain's I/O range: EINVAL, whoever asks.)"""
    if mfn == INVALID_MFN:
        raise GuestError(rules.L1_INVALID_MFN, f"L1 entry {e:#x} names mfn {mfn:#x}")
    eff = l1_owner if pg_owner is xen.dom_io else pg_owner
    for d in (eff, l1_owner):
        if not d.privileged:
            io = "" if mfn < xen.total_frames else " (Xen treats it as I/O memory)"
            err = GuestError(
                rules.L1_IO_NO_PERMISSION,
                f"{frame_owner(xen, mfn)}{io}, and d{d.domid} has no I/O privileges",
            )
            err.refused_entry = e
            raise err
    return io_cache_flip(e)


def l1e_flip_error(flip: int) -> str | None:
    """What is wrong with ``flip`` as ``get_page_from_l1e``'s return value
    (None: nothing), checked by the seam on a swapped implementation: Xen's
    positive return is the cache attribute bits the caller flips (0, or some
    of PCD|PWT|PAT); a refusal is raised, never returned as an errno.
    mm.c ``get_page_from_l1e``."""
    if flip & ~L1_CACHE_ATTRS or flip < 0:
        return (
            f"get_page_from_l1e returns the cache attribute bits to flip"
            f" (0, or some of {flag_names(L1_CACHE_ATTRS)}); a refusal is raised as GuestError"
        )
    return None


@steps.swappable(check=l1e_flip_error)
def get_page_from_l1e(xen: XenState, e: int, l1_owner: PvDomain, pg_owner: PvDomain) -> int:
    """Take the references a present L1 entry ``e`` needs (mm.c ``get_page_from_l1e``).

    ``l1_owner`` owns the L1; ``pg_owner`` is FD, the expected owner of the
    mapped frame. Checks, in Xen's order: flags (EINVAL), I/O memory (EPERM),
    the owner (EBUSY), and with RW the writable type (EBUSY). Returns the flags
    the caller must flip before storing the entry (Xen's positive return): the
    cache attributes of a write-back mapping of I/O memory, else 0.
    """
    mfn: Mfn = (e & PTE_MFN_MASK) >> PAGE_SHIFT  # type: ignore[assignment] # pte_mfn, inlined
    pg = xen.frames.get(mfn)
    # The common case first: FD's own frame, allowed flags, read-only or
    # already writable. It takes exactly the references the full path would.
    if (
        pg is not None
        and pg.owner == pg_owner.domid
        and not e & l1_owner.l1_mask
        and not pg.xen_heap
    ):
        if not e & _PAGE_RW:
            pg.count += 1
            return 0
        if pg.type is WRITABLE and pg.type_count:
            pg.count += 1
            pg.type_count += 1
            return 0
        if not pg.type_count and (pg.type is NONE or (pg.type is WRITABLE and pg.validated)):
            # The first writable mapping of an untyped frame: get_page_type
            # makes it WRITABLE with no flush (it was no other type) and
            # nothing to validate.
            pg.count += 1
            pg.type, pg.type_count, pg.validated, pg.pae_xen_l2 = WRITABLE, 1, True, False
            return 0
    return _get_page_from_l1e_checked(xen, e, mfn, pg, l1_owner, pg_owner)


@steps.plain_variant(get_page_from_l1e, inlines=[get_page_type])
def _get_page_from_l1e_plain(xen: XenState, e: int, l1_owner: PvDomain, pg_owner: PvDomain) -> int:
    """``get_page_from_l1e`` without its fast path, which inlines
    ``get_page_type``'s common case: every entry goes through the checks and a
    writable one calls ``get_page_type`` (bound while ``get_page_type`` is
    swapped, see :mod:`hypervisor.steps`). mm.c ``get_page_from_l1e``."""
    mfn: Mfn = (e & PTE_MFN_MASK) >> PAGE_SHIFT  # type: ignore[assignment] # pte_mfn, inlined
    return _get_page_from_l1e_checked(xen, e, mfn, xen.frames.get(mfn), l1_owner, pg_owner)


def _get_page_from_l1e_checked(
    xen: XenState, e: int, mfn: Mfn, pg: PageInfo | None, l1_owner: PvDomain, pg_owner: PvDomain
) -> int:
    """Every check of ``get_page_from_l1e``, in Xen's order, for the entry ``e``
    mapping ``mfn`` (frame ``pg``, None if it has no metadata). mm.c
    ``get_page_from_l1e``."""
    if e & l1_owner.l1_mask:
        raise flags_error(e, l1_owner.l1_mask, 1)
    if xen.is_io(mfn):
        return _get_io(xen, e, mfn, l1_owner, pg_owner)
    if pg is None or pg.count == 0:
        raise GuestError(rules.L1_FREE_FRAME, frame_owner(xen, mfn))
    owner = pg.owner
    if owner != pg_owner.domid and (pg_owner is l1_owner or not pg_owner.privileged):
        raise GuestError(rules.L1_FOREIGN_FRAME, not_owned(xen, mfn, pg_owner.domid))
    pg.count += 1
    if e & _PAGE_RW:
        if pg.type_count and pg.type is not WRITABLE:
            pg.count -= 1
            raise GuestError(
                rules.L1_WRITABLE_PAGETABLE,
                f"the entry maps mfn {mfn:#x} with RW, and it is {held_by(xen, mfn, pg)}",
            )
        get_page_type(xen, mfn, pg, WRITABLE)
    if e & L1_CACHE_ATTRS and pg.xen_heap:
        put_page_from_l1e(xen, e, l1_owner)
        raise GuestError(
            rules.L1_CACHE_ATTR_XEN_HEAP,
            f"the entry maps Xen-heap mfn {mfn:#x} with {flag_names(e & L1_CACHE_ATTRS)}",
        )
    return 0


def put_page_from_l1e(xen: XenState, e: int, l1_owner: PvDomain) -> None:
    """Release what a present L1 entry held (mm.c ``put_page_from_l1e``).
    I/O frames (no metadata) held nothing."""
    mfn: Mfn = (e & PTE_MFN_MASK) >> PAGE_SHIFT  # type: ignore[assignment] # pte_mfn, inlined
    pg = xen.frames.get(mfn)
    if pg is None or mfn < IO_FRAMES:
        return
    if e & _PAGE_RW:
        pg.type_count -= 1  # put_page_type, inlined: writable, no devalidation to do
    pg.count -= 1
    if not pg.count:
        xen.free_frame(mfn)


@steps.plain_variant(put_page_from_l1e, inlines=[put_page_type])
def _put_page_from_l1e_plain(xen: XenState, e: int, l1_owner: PvDomain) -> None:
    """``put_page_from_l1e`` calling ``put_page_type`` for a writable entry
    (``put_page_and_type``) instead of inlining it; bound while
    ``put_page_type`` is swapped. mm.c ``put_page_from_l1e``."""
    mfn = pte_mfn(e)
    pg = xen.frames.get(mfn)
    if pg is None or mfn < IO_FRAMES:
        return
    if e & _PAGE_RW:
        put_page_type(xen, mfn, pg, None)
    put_page(xen, mfn, pg)


@registers(PROMOTE, PageType.L1)
def promote_l1_table(xen: XenState, mfn: Mfn, pg: PageInfo) -> None:
    """Validate every present entry of an L1 (mm.c ``promote_l1_table``).

    Each entry is stored adjusted (``adjust_guest_l1e``, I/O cache flip) as
    soon as its references are taken. The first failing entry stops it: the
    earlier entries' references are released but they keep their adjustments,
    as in Xen. Validation always runs with the L1's owner as FD: an L1 holding
    a foreign mapping cannot be (re)validated. A failed L1 is left untyped
    (``promote_l1_table`` never takes Xen's partial path).

    The common cases of ``get_page_from_l1e`` are inlined (the domain's own
    frame mapped read-only, writable once more, or writable for the first
    time while untyped); every other entry goes through it.
    """
    d = xen.domains[pg.owner]  # type: ignore[index]
    words = xen.mem.peek(mfn)  # writable whenever an entry is present
    made, domid, mask, pv64 = xen.frames.made, d.domid, d.l1_mask, d.pv64
    for slot, e in enumerate(words.tolist()):
        if not e & _PAGE_PRESENT:
            continue
        flip = 0
        # (a record not made yet reads None: that entry takes the full path)
        target = made((e & PTE_MFN_MASK) >> PAGE_SHIFT)  # type: ignore[arg-type]
        if target is None or target.owner != domid or e & mask or target.xen_heap:
            flip = _promote_entry(xen, mfn, words, slot, e, d)
        elif not e & _PAGE_RW:
            target.count += 1
        elif target.type_count:
            if target.type is WRITABLE:
                target.count += 1
                target.type_count += 1
            else:
                flip = _promote_entry(xen, mfn, words, slot, e, d)
        elif target.type is NONE:
            target.count += 1
            target.type, target.type_count, target.validated = WRITABLE, 1, True
        else:
            flip = _promote_entry(xen, mfn, words, slot, e, d)
        if flip or (pv64 and (not e & _PAGE_USER or not e & KERNEL_OR_GLOBAL)):
            a = e ^ flip
            if pv64:  # adjust_guest_l1e, inlined
                if not a & _PAGE_USER:
                    a |= GUEST_KERNEL | _PAGE_USER
                if not a & GUEST_KERNEL:
                    a |= _PAGE_GLOBAL | _PAGE_USER
            words[slot] = a


def _promote_entry(
    xen: XenState, mfn: Mfn, words: memoryview, slot: int, e: int, d: PvDomain
) -> int:
    """``promote_l1_table``'s call of ``get_page_from_l1e`` for entry ``slot``;
    on a refusal, the earlier entries' references are released first."""
    try:
        return get_page_from_l1e(xen, e, d, d)
    except GuestError as err:
        for undo in range(slot):
            if words[undo] & _PAGE_PRESENT:
                put_page_from_l1e(xen, words[undo], d)
        note_validation_failure(xen, err, 1, mfn, slot, e)
        raise


@steps.plain_variant(promote_l1_table, inlines=[get_page_from_l1e, get_page_type])
def _promote_l1_table_plain(xen: XenState, mfn: Mfn, pg: PageInfo) -> None:
    """``promote_l1_table`` calling ``get_page_from_l1e`` for every present
    entry instead of inlining its common cases; bound while
    ``get_page_from_l1e`` or ``get_page_type`` is swapped. mm.c
    ``promote_l1_table``."""
    d = xen.domains[pg.owner]  # type: ignore[index]
    words = xen.mem.words(mfn)
    for slot in range(512):
        e = words[slot]
        if not e & _PAGE_PRESENT:
            continue
        try:
            flip = get_page_from_l1e(xen, e, d, d)
        except GuestError as err:
            for undo in range(slot):
                if words[undo] & _PAGE_PRESENT:
                    put_page_from_l1e(xen, words[undo], d)
            note_validation_failure(xen, err, 1, mfn, slot, e)
            raise
        words[slot] = adjust_guest_l1e(e ^ flip, d)


@registers(DEMOTE, PageType.L1)
def demote_l1_table(xen: XenState, mfn: Mfn, pg: PageInfo) -> None:
    """Release every present entry's references (mm.c ``demote_l1_table``).
    ``put_page_from_l1e``'s common case is inlined: a reference that is not
    the frame's last (a writable entry's type reference with it)."""
    d = xen.domains[pg.owner]  # type: ignore[index]
    made = xen.frames.made
    for e in xen.mem.peek(mfn).tolist():
        if e & _PAGE_PRESENT:
            # (I/O frames have no metadata, and a record not made yet reads
            # None: both take put_page_from_l1e's full path)
            target = made((e & PTE_MFN_MASK) >> PAGE_SHIFT)  # type: ignore[arg-type]
            if target is not None and target.count > 1:
                if e & _PAGE_RW:
                    target.type_count -= 1
                target.count -= 1
            else:
                put_page_from_l1e(xen, e, d)


@steps.plain_variant(demote_l1_table, inlines=[put_page_type])
def _demote_l1_table_plain(xen: XenState, mfn: Mfn, pg: PageInfo) -> None:
    """``demote_l1_table`` calling ``put_page_from_l1e`` for every present
    entry; bound while ``put_page_type`` is swapped. mm.c ``demote_l1_table``."""
    d = xen.domains[pg.owner]  # type: ignore[index]
    words = xen.mem.peek(mfn)
    for slot in range(512):
        e = words[slot]
        if e & _PAGE_PRESENT:
            put_page_from_l1e(xen, e, d)
