"""The rollback releases one entry too many: on a failure at slot ``i``,
``promote_l2_table`` puts the references of slots ``0..i`` -- the failing entry included,
though it took nothing. If that entry names an L1 that is in use elsewhere, its type count
drops under what is really held: at 0 the L1 is devalidated while a live L2 still links it.
The guest then maps that frame writable (allowed: type count 0), writes an entry naming
another domain's frame and reads it through its own tree. Xen refuses the same L2 with the
same errno and leaves the L1's counts alone; the audit finds the broken counts here."""

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
            if e & _PAGE_PRESENT:
                get_page_from_lne(xen, e, 2, mfn, pg, d, slot)
                words[slot] = adjust_guest_upper(2, e, d)
    except GuestError as err:
        for undo in reversed(range(slot + 1)):  # BUG: range(slot) -- slot took nothing
            if words[undo] & _PAGE_PRESENT:
                put_page_from_lne(xen, words[undo], mfn, pg)
        note_validation_failure(xen, err, 2, mfn, slot, words[slot])
        raise
    if pg.pae_xen_l2:
        init_xen_pae_l2_slots(words)
