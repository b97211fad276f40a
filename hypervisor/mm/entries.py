"""Changing one entry of a validated table: ``mod_l1_entry`` and
``mod_l2/l3/l4_entry`` (mm.c).

The order is always: check the flags, take the new entry's references, write,
then drop the old entry's references -- so replacing an entry by itself is
safe and no type count touches 0 in between. An update that changes only
harmless flags takes the *fast path* and touches no count at all.
"""

from __future__ import annotations

from hypervisor import rules
from hypervisor.abi import _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_GLOBAL, _PAGE_PRESENT, _PAGE_USER, Mfn
from hypervisor.errors import GuestError
from hypervisor.mm.adjust import GUEST_KERNEL, adjust_guest_upper
from hypervisor.mm.domain import PvDomain
from hypervisor.mm.frames import PageInfo
from hypervisor.mm.l1 import get_page_from_l1e, put_page_from_l1e
from hypervisor.mm.refs import flags_error
from hypervisor.mm.state import XenState
from hypervisor.mm.upper import (
    PAE_FIRST_XEN_L2_SLOT,
    disallow_mask,
    get_page_from_lne,
    put_page_from_lne,
)

__all__ = ["mod_l1_entry", "mod_upper_entry"]

AD = _PAGE_ACCESSED | _PAGE_DIRTY


def mod_l1_entry(
    xen: XenState,
    l1mfn: Mfn,
    words: memoryview,
    slot: int,
    nl1e: int,
    pt_dom: PvDomain,
    pg_dom: PvDomain,
    preserve_ad: bool = False,
    fastpath: bool = True,
) -> None:
    """Set entry ``slot`` of a validated L1 to ``nl1e`` (mm.c ``mod_l1_entry``).

    ``words`` is frame ``l1mfn`` as 64-bit words; ``pt_dom`` owns the L1;
    ``pg_dom`` is FD, the expected owner of the mapped frame. With
    ``preserve_ad`` the A/D bits already in the slot are kept
    (``MMU_PT_UPDATE_PRESERVE_AD``). Trapped writes pass ``fastpath=False``.
    A present entry is stored adjusted: ``adjust_guest_l1e`` (inlined here)
    for a 64-bit guest, and uncached if it maps I/O memory write-back.
    """
    ol1e = words[slot]
    if nl1e & _PAGE_PRESENT:
        try:
            if nl1e & pt_dom.l1_mask:
                raise flags_error(nl1e, pt_dom.l1_mask, 1)
            if pt_dom.pv64:  # adjust_guest_l1e
                if not nl1e & _PAGE_USER:
                    nl1e |= GUEST_KERNEL | _PAGE_USER
                if not nl1e & GUEST_KERNEL:
                    nl1e |= _PAGE_GLOBAL | _PAGE_USER
            if fastpath and not (ol1e ^ nl1e) & xen.fast_l1:
                words[slot] = nl1e | (ol1e & AD) if preserve_ad else nl1e
                return
            nl1e ^= get_page_from_l1e(xen, nl1e, pt_dom, pg_dom)
        except GuestError as err:
            err.entry = (1, l1mfn, slot)
            raise
    words[slot] = nl1e | (ol1e & AD) if preserve_ad else nl1e
    if ol1e & _PAGE_PRESENT:
        put_page_from_l1e(xen, ol1e, pt_dom)


def mod_upper_entry(
    xen: XenState,
    level: int,
    c_mfn: Mfn,
    c_pg: PageInfo,
    slot: int,
    ne: int,
    d: PvDomain,
    preserve_ad: bool = False,
) -> None:
    """Set entry ``slot`` of the validated L``level`` table ``c_mfn`` (2-4) to
    ``ne`` (mm.c ``mod_l2_entry``/``mod_l3_entry``/``mod_l4_entry``)."""
    refused = None
    if level == 4 and 256 <= slot < 272:
        refused = GuestError(rules.L4_XEN_SLOT, "")
    elif d.is_32bit and level == 3 and slot >= 3:
        refused = GuestError(rules.L3_PAE_SLOT, "")
    elif level == 2 and c_pg.pae_xen_l2 and slot >= PAE_FIRST_XEN_L2_SLOT:
        refused = GuestError(rules.L2_PAE_XEN_SLOT, f"mfn {c_mfn:#x} is a PAE Xen L2")
    if refused is not None:
        refused.entry = (level, c_mfn, slot)
        raise refused
    words = xen.mem.words(c_mfn)
    oe = words[slot]
    try:
        ne = _take_upper(xen, level, c_mfn, c_pg, slot, oe, ne, d)
    except GuestError as err:
        if err.entry is None:
            err.entry = (level, c_mfn, slot)
        raise
    if ne < 0:  # fast path: no reference changes
        ne = ~ne
        words[slot] = ne | (oe & AD) if preserve_ad else ne
        return
    words[slot] = ne | (oe & AD) if preserve_ad else ne
    if oe & _PAGE_PRESENT:
        put_page_from_lne(xen, oe, c_mfn, c_pg)


def _take_upper(
    xen: XenState, level: int, c_mfn: Mfn, c_pg: PageInfo, slot: int, oe: int, ne: int, d: PvDomain
) -> int:
    """Check ``ne`` and take its references; return the value to store, or its
    bitwise complement (negative) when the fast path applies and nothing was taken."""
    if ne & _PAGE_PRESENT:
        mask = disallow_mask(level, d)
        if ne & mask:
            raise flags_error(ne, mask, level)
        ne = adjust_guest_upper(level, ne, d)
        if not (oe ^ ne) & xen.fast_upper:
            return ~ne
        get_page_from_lne(xen, ne, level, c_mfn, c_pg, d, slot)
    return ne
