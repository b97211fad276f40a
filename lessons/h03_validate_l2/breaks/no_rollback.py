"""No rollback: when an entry fails, ``promote_l2_table`` propagates the error but keeps the
references the entries before it took. Xen refuses the L2 all the same (same errno, same
rule), so nothing looks wrong -- but every L1 those entries named keeps a general reference
and an L1 type reference that nothing holds. The audit finds them (``general-count``,
``type-count``); the guest finds that such a frame stays an L1 for good: it can never map
it writable again (EBUSY, ``l1.writable-pagetable``), and it can never be freed."""

from __future__ import annotations

from hypervisor.abi import _PAGE_PRESENT, Mfn
from hypervisor.errors import GuestError
from hypervisor.mm.adjust import adjust_guest_upper
from hypervisor.mm.explain import note_validation_failure
from hypervisor.mm.frames import PageInfo
from hypervisor.mm.state import XenState
from hypervisor.mm.upper import get_page_from_lne, guest_slots, init_xen_pae_l2_slots


def promote_l2_table(xen: XenState, mfn: Mfn, pg: PageInfo) -> None:
    d = xen.domains[pg.owner]  # type: ignore[index]
    words = xen.mem.words(mfn)
    for slot in guest_slots(2, pg, d):
        e = words[slot]
        if not e & _PAGE_PRESENT:
            continue
        try:
            get_page_from_lne(xen, e, 2, mfn, pg, d, slot)
        except GuestError as err:
            # BUG: slots 0..slot-1 keep the references they took.
            note_validation_failure(xen, err, 2, mfn, slot, e)
            raise
        words[slot] = adjust_guest_upper(2, e, d)
    if pg.pae_xen_l2:
        init_xen_pae_l2_slots(words)
