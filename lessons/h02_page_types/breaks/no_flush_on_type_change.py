"""No TLB flush on a type change: ``get_page_type`` changes a frame's type at type count 0,
as it must, but skips ``type_change_flush``. A translation the guest's TLB still holds from
before -- a writable mapping of the frame it has just removed without asking for a flush
(``UVMF_NONE``) -- survives the change. The guest pins the frame as an L1, keeps writing it
through the stale translation, and makes its entries name another domain's frame: Xen
validated the L1 once and never sees those stores. On Xen the stale translation is gone
after the pin, and the store page-faults."""

from __future__ import annotations

from hypervisor.abi import Mfn
from hypervisor.errors import GuestError
from hypervisor.mm import refs
from hypervisor.mm.frames import PageInfo, PageType
from hypervisor.mm.state import XenState


def get_page_type(xen: XenState, mfn: Mfn, pg: PageInfo, t: PageType, xen_l2: bool = False) -> None:
    if pg.type_count:
        if pg.type is not t or pg.pae_xen_l2 is not xen_l2:
            raise refs.type_mismatch_error(xen, mfn, pg, t, xen_l2)
        pg.type_count += 1
        return
    if pg.type is not t or pg.pae_xen_l2 is not xen_l2:
        # BUG: no xen.type_change_flush(mfn, pg.owner) here.
        pg.type = t
        pg.pae_xen_l2 = xen_l2
        pg.validated = False
    pg.type_count = 1
    if pg.validated:
        return
    promote = refs.PROMOTE.get(t)
    if promote is not None:
        try:
            promote(xen, mfn, pg)
        except GuestError as err:
            pg.type_count = 0
            pg.pae_xen_l2 = False
            if not refs.failed_partway(err, mfn, t):
                pg.type = PageType.NONE
            raise
    pg.validated = True
