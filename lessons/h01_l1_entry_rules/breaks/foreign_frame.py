"""The owner never checked: any allocated frame maps, whoever owns it. Xen refuses a frame
of another domain with EBUSY (l1.foreign-frame) unless a privileged caller named that
domain as FD; with this version one guest reads and writes another's memory at will."""

from __future__ import annotations

from hypervisor import rules
from hypervisor.abi import _PAGE_RW, INVALID_MFN, pte_mfn
from hypervisor.errors import GuestError
from hypervisor.mm.adjust import io_cache_flip
from hypervisor.mm.domain import PvDomain
from hypervisor.mm.frames import PageType
from hypervisor.mm.l1 import put_page_from_l1e
from hypervisor.mm.refs import flags_error, get_page_type
from hypervisor.mm.state import XenState


def get_page_from_l1e(xen: XenState, e: int, l1_owner: PvDomain, pg_owner: PvDomain) -> int:
    if e & l1_owner.l1_mask:
        raise flags_error(e, l1_owner.l1_mask, 1)
    mfn = pte_mfn(e)
    if xen.is_io(mfn):
        if mfn == INVALID_MFN:
            raise GuestError(rules.L1_INVALID_MFN, "INVALID_MFN")
        owner = l1_owner if pg_owner is xen.dom_io else pg_owner
        if not (owner.privileged and l1_owner.privileged):
            raise GuestError(rules.L1_IO_NO_PERMISSION, f"mfn {mfn:#x} is I/O memory")
        return io_cache_flip(e)
    pg = xen.frames.get(mfn)
    if pg is None or pg.count == 0:
        raise GuestError(rules.L1_FREE_FRAME, f"mfn {mfn:#x} is free")
    pg.count += 1
    if e & _PAGE_RW:
        if pg.type_count and pg.type is not PageType.WRITABLE:
            pg.count -= 1
            raise GuestError(rules.L1_WRITABLE_PAGETABLE, f"mfn {mfn:#x} is a page table")
        get_page_type(xen, mfn, pg, PageType.WRITABLE)
    if e & rules.L1_CACHE_ATTRS and pg.xen_heap:
        put_page_from_l1e(xen, e, l1_owner)
        raise GuestError(rules.L1_CACHE_ATTR_XEN_HEAP, f"mfn {mfn:#x} is a Xen-heap page")
    return 0
