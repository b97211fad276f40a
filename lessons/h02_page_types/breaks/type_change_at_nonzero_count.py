"""The type changes whenever a different type is asked for, whatever the type count:
``get_page_type`` forgets that a type may change only at type count 0. A frame that a guest
still maps writable can then become an L1, an L1 in use an L2: one frame is both a writable
page and a page table. The guest keeps its writable mapping of a frame Xen has
just validated as its L1, rewrites an entry to name another domain's frame and reads that
frame's secret. ``PIN_L1_TABLE`` of a writable frame is accepted where Xen answers EINVAL
(``type.writable-mapped``), and the audit finds the frame mapped RW while it is an L1."""

from __future__ import annotations

from hypervisor.abi import Mfn
from hypervisor.errors import GuestError
from hypervisor.mm import refs
from hypervisor.mm.frames import PageInfo, PageType
from hypervisor.mm.state import XenState


def get_page_type(xen: XenState, mfn: Mfn, pg: PageInfo, t: PageType, xen_l2: bool = False) -> None:
    if pg.type is not t or pg.pae_xen_l2 is not xen_l2:
        # BUG: no "if pg.type_count: refuse" -- the type changes under live references.
        if pg.type is not PageType.NONE:
            xen.type_change_flush(mfn, pg.owner)
        pg.type = t
        pg.pae_xen_l2 = xen_l2
        pg.validated = False
    pg.type_count += 1
    if pg.validated:
        return
    promote = refs.PROMOTE.get(t)
    if promote is not None:
        try:
            promote(xen, mfn, pg)
        except GuestError:
            pg.type_count -= 1
            if not pg.type_count:
                pg.type = PageType.NONE
            raise
    pg.validated = True
