"""Validation stops at the first empty slot: ``promote_l2_table`` walks the entries while
they are present and ``break``s at the first hole, where it should ``continue``. Every entry
after a hole is never checked and takes no reference: an L2 whose slot 0 is empty and whose
slot 1 names a frame the guest still maps writable validates, and that writable frame is
now an L1 of the guest's tree. The guest writes an entry naming another domain's frame into
it and reads the frame. Xen checks all 512 slots and refuses the writable one (EINVAL,
``type.writable-mapped``)."""

from __future__ import annotations

from hypervisor.abi import _PAGE_PRESENT, Mfn
from hypervisor.errors import GuestError
from hypervisor.mm.adjust import adjust_guest_upper
from hypervisor.mm.explain import note_validation_failure
from hypervisor.mm.frames import PageInfo
from hypervisor.mm.state import XenState
from hypervisor.mm.upper import (
    get_page_from_lne,
    guest_slots,
    init_xen_pae_l2_slots,
    put_page_from_lne,
)


def promote_l2_table(xen: XenState, mfn: Mfn, pg: PageInfo) -> None:
    d = xen.domains[pg.owner]  # type: ignore[index]
    words = xen.mem.words(mfn)
    slot = 0
    try:
        for slot in guest_slots(2, pg, d):
            e = words[slot]
            if not e & _PAGE_PRESENT:
                break  # BUG: continue -- the slots after a hole are never checked
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
