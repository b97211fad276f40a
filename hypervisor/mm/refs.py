"""General and type references: ``get_page``/``put_page`` and
``get_page_type``/``put_page_type`` (mm.c).

Taking the first reference of a page-table type *validates* the frame
(promotion: every present entry takes its own references, recursively);
dropping the last one *devalidates* it (demotion: every entry's references are
released, which may cascade down a whole tree). The promote/demote functions
for each level register themselves in :data:`PROMOTE`/:data:`DEMOTE`.
"""

from __future__ import annotations

from collections.abc import Callable

from hypervisor import rules, steps
from hypervisor.abi import _PAGE_PRESENT, _PAGE_RW, Mfn, pte_mfn
from hypervisor.errors import GuestError
from hypervisor.mm.explain import flag_names, held_by, type_name
from hypervisor.mm.frames import PageInfo, PageType
from hypervisor.mm.state import XenState

__all__ = [
    "DEMOTE",
    "PROMOTE",
    "describe",
    "find_writable_mappings",
    "failed_partway",
    "flags_error",
    "get_page",
    "get_page_type",
    "put_page",
    "put_page_and_type",
    "put_page_type",
    "registers",
    "type_mismatch_error",
]

PromoteFn = Callable[[XenState, Mfn, PageInfo], None]
PROMOTE: dict[PageType, PromoteFn] = {}
"""Validation of a frame as each page-table type (``promote_lN_table``)."""
DEMOTE: dict[PageType, PromoteFn] = {}
"""Devalidation (``demote_lN_table``): release every entry's references."""

RW_PRESENT = _PAGE_PRESENT | _PAGE_RW
WRITABLE = PageType.WRITABLE
NONE = PageType.NONE


def registers(table: dict[PageType, PromoteFn], t: PageType) -> Callable[[PromoteFn], PromoteFn]:
    """Decorator: register a promote/demote function for type ``t``."""

    def deco(fn: PromoteFn) -> PromoteFn:
        table[t] = fn
        return fn

    return deco


def get_page(pg: PageInfo | None, domid: int) -> bool:
    """Take a general reference if the frame is in use and owned by ``domid``
    (mm.c ``get_page``). A free frame cannot be referenced."""
    if pg is None or pg.count == 0 or pg.owner != domid:
        return False
    pg.count += 1
    return True


def put_page(xen: XenState, mfn: Mfn, pg: PageInfo) -> None:
    """Drop a general reference; the last one frees the frame (``put_page``)."""
    pg.count -= 1
    if pg.count == 0:
        xen.free_frame(mfn)


def describe(pg: PageInfo) -> str:
    """``"an L2 table (type count 1)"``-style description of a frame's type."""
    return f"{type_name(pg)} (type count {pg.type_count})"


def flags_error(e: int, mask: int, level: int) -> GuestError:
    """The refusal of a present entry carrying flags its level disallows."""
    err = GuestError(
        rules.ENTRY_DISALLOWED_FLAGS,
        f"L{level} entry {e:#x} carries disallowed flags {flag_names(e & mask)}",
    )
    err.refused_entry = e
    return err


def find_writable_mappings(xen: XenState, mfn: Mfn) -> list[tuple[Mfn, int]]:
    """Every ``(l1 mfn, slot)`` of a validated L1 with an RW entry mapping ``mfn``."""
    hits = []
    for l1mfn, pg in xen.frames.items():
        if pg.type is PageType.L1 and pg.validated and pg.type_count:
            words = xen.mem.peek(l1mfn)
            for slot in range(512):
                e = words[slot]
                if e & RW_PRESENT == RW_PRESENT and pte_mfn(e) == mfn:
                    hits.append((l1mfn, slot))
    return hits


def type_mismatch_error(
    xen: XenState, mfn: Mfn, pg: PageInfo, t: PageType, xen_l2: bool
) -> GuestError:
    """The refusal of a type reference of type ``t`` on a frame whose type count
    is non-zero with another type: ``type.writable-mapped`` (a page-table type
    wanted, the frame mapped writable: the mappings named), ``type.in-use``
    (writable wanted) or ``type.mismatch``. All EINVAL, as ``_get_page_type``."""
    want = type_name(PageInfo(None, type=t, pae_xen_l2=xen_l2))
    if pg.type is WRITABLE and t.is_pagetable:
        hits = find_writable_mappings(xen, mfn)
        where = ", ".join(f"L1 mfn {m:#x} slot {s}" for m, s in hits[:4])
        more = f" and {len(hits) - 4} more" if len(hits) > 4 else ""
        n = len(hits)
        by = f" by {n} L1 entr{'y' if n == 1 else 'ies'} ({where}{more})" if hits else ""
        return GuestError(
            rules.TYPE_WRITABLE_MAPPED,
            f"mfn {mfn:#x} is still mapped writable{by}; wanted {want}",
        )
    rule = rules.TYPE_IN_USE if t is WRITABLE else rules.TYPE_MISMATCH
    return GuestError(rule, f"mfn {mfn:#x} is {held_by(xen, mfn, pg)}; wanted {want}")


@steps.swappable
def get_page_type(xen: XenState, mfn: Mfn, pg: PageInfo, t: PageType, xen_l2: bool = False) -> None:
    """Take one type reference of type ``t`` on frame ``mfn`` (``pg``); ``xen_l2``
    is the ``PGT_pae_xen_l2`` mark, part of the type.

    With a non-zero type count only the same type (and mark) is allowed: one
    more reference; any other is refused (:func:`type_mismatch_error`). At
    count 0 the type may change: from any type but NONE the owner's TLBs are
    flushed first (``xen.type_change_flush``), and the frame is no longer
    validated. A page-table type not validated yet is validated by
    ``PROMOTE[t]``. A failed validation holds nothing afterwards: count 0, no
    mark, and type NONE (``validate_page``), except for an L2-L4 that failed
    after its first slot (:func:`failed_partway`): that one went through Xen's
    partial path (``PGT_partial``, ``old_guest_table``, torn down by
    ``put_old_guest_table`` before the hypercall returns) and keeps type Ln.
    mm.c ``_get_page_type``.
    """
    if pg.type_count:
        if pg.type is not t or pg.pae_xen_l2 is not xen_l2:
            raise type_mismatch_error(xen, mfn, pg, t, xen_l2)
        pg.type_count += 1
        return
    if pg.type is not t or pg.pae_xen_l2 is not xen_l2:
        if pg.type is not NONE:
            xen.type_change_flush(mfn, pg.owner)
        pg.type = t
        pg.pae_xen_l2 = xen_l2
        pg.validated = False
    pg.type_count = 1
    if pg.validated:
        return
    promote = PROMOTE.get(t)
    if promote is not None:
        try:
            promote(xen, mfn, pg)
        except GuestError as err:
            pg.type_count = 0
            pg.pae_xen_l2 = False
            if not failed_partway(err, mfn, t):
                pg.type = NONE
            raise
    pg.validated = True


def failed_partway(err: GuestError, mfn: Mfn, t: PageType) -> bool:
    """Did the validation of L2-L4 ``mfn`` fail at a slot other than 0
    (mm.c ``promote_l2/l3/l4_table``: ``if ( i )`` sets ``old_guest_table``)?"""
    if not err.path or t not in (PageType.L2, PageType.L3, PageType.L4):
        return False
    _level, where, slot = err.path[0]
    return where == mfn and slot > 0


@steps.swappable
def put_page_type(xen: XenState, mfn: Mfn, pg: PageInfo, container: PageInfo | None = None) -> None:
    """Drop one type reference of frame ``mfn`` (``pg``). ``container`` is the
    table whose entry held it (None for a pin, a base pointer or an L1 entry):
    one of the frame's own type means a linear entry, whose counters are undone
    (with ``xen.config.linear_single_level``). The last reference of a
    validated page table devalidates it first -- ``validated`` cleared, then
    ``DEMOTE[type]`` releases everything its entries held. mm.c ``_put_page_type``.
    """
    if container is not None and container.type is pg.type and xen.config.linear_single_level:
        pg.linear += 1
        container.linear -= 1
    if pg.type_count == 1 and pg.validated and pg.type.is_pagetable:
        pg.validated = False
        DEMOTE[pg.type](xen, mfn, pg)
    pg.type_count -= 1


def put_page_and_type(xen: XenState, mfn: Mfn, pg: PageInfo) -> None:
    put_page_type(xen, mfn, pg)
    put_page(xen, mfn, pg)
