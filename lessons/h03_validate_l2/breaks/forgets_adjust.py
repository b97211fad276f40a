"""The entries are not adjusted: ``promote_l2_table`` takes every entry's references and
rolls back right, but stores nothing back -- the entries stay as the guest wrote them,
without the ``_PAGE_USER`` Xen adds to every entry of a 64-bit guest (whose kernel runs in
ring 3: the hardware must let ring 3 through at every level). The guest reads its validated
L2 back and finds entries Xen would never have stored; on real hardware, every access
through an entry left without USER faults."""

from __future__ import annotations

from hypervisor.abi import _PAGE_PRESENT, Mfn
from hypervisor.errors import GuestError
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
                # BUG: words[slot] = adjust_guest_upper(2, e, d) is missing
    except GuestError as err:
        for undo in reversed(range(slot)):
            if words[undo] & _PAGE_PRESENT:
                put_page_from_lne(xen, words[undo], mfn, pg)
        note_validation_failure(xen, err, 2, mfn, slot, words[slot])
        raise
    if pg.pae_xen_l2:
        init_xen_pae_l2_slots(words)
