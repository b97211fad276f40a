"""Hidden tests of h01_l1_entry_rules: the other paths into get_page_from_l1e (the pin of
a new L1, update_va_mapping), Xen's own shared pages, and FD = DOMID_IO."""

from __future__ import annotations

import random

from hypervisor import abi
from lessons.lab.testing import Comparison, Dom, Host, Plan, battery, check

P, RW, PCD, A = abi._PAGE_PRESENT, abi._PAGE_RW, abi._PAGE_PCD, abi._PAGE_ACCESSED
FIRST_FREE = 6


def more_plan(rng: random.Random) -> Plan:
    """Which free pfns become new L1s, which slots they fill, what they map."""
    pfns = rng.sample(range(FIRST_FREE, 64), 10)
    return {
        "pfns": pfns,
        "slots": rng.sample(range(64, 512), 12),
        "fill": rng.sample(range(512), 6),
        "table": rng.randrange(4),
        "io_mfn": rng.randrange(1, 0x100),
    }


@battery(plan=more_plan, guests=(Dom(64), Dom(64), Dom(64, privileged=True)))
def more_entries(h: Host, plan: Plan) -> None:
    """New L1s built by hand and pinned (good, then with a RW page table or d1's frame
    inside); entries through update_va_mapping; shared_info with cache attributes; FD
    DOMID_IO."""
    pfns, slots, fill = iter(plan["pfns"]), iter(plan["slots"]), iter(plan["fill"])
    l1 = h.l1(0)

    def new_l1(entries: list[int]) -> int:
        """A fresh L1 in a free pfn of d0: filled by plain stores, made read-only, pinned."""
        pfn = next(pfns)
        mfn = h.mfn(0, pfn)
        for e in entries:
            h.store(0, h.va(0, pfn) + 8 * next(fill), e)
        h.set_entry(0, l1, pfn, abi.make_pte(mfn, P | A))
        h.pin(0, 1, mfn)
        return mfn

    with h.case("pin-good"):
        own_ro, own_rw = h.mfn(0, next(pfns)), h.mfn(0, next(pfns))
        new_l1([abi.make_pte(own_ro, P), abi.make_pte(own_rw, P | RW)])
    with h.case("pin-bad"):
        table = h.mfn(0, h.tables(0)[plan["table"]])
        new_l1([abi.make_pte(table, P | RW)])
        new_l1([abi.make_pte(h.mfn(1, next(pfns)), P)])
    with h.case("uvm"):
        va = h.va(0, next(slots))
        h.update_va_mapping(0, va, abi.make_pte(h.mfn(0, next(pfns)), P | RW))
        h.update_va_mapping(0, va, 0)
        h.update_va_mapping(0, h.va(0, next(slots)), abi.make_pte(table, P | RW))
        h.update_va_mapping(0, h.va(0, next(slots)), abi.make_pte(h.mfn(1, 40), P))
    shared = h.domain(2).start_info.shared_info >> 12
    with h.case("xen-heap"):
        h.set_entry(2, h.l1(2), next(slots), abi.make_pte(shared, P | RW))
        h.set_entry(2, h.l1(2), next(slots), abi.make_pte(shared, P | PCD))
    with h.case("io-domid-io"):
        h.set_entry(
            2, h.l1(2), next(slots), abi.make_pte(plan["io_mfn"], P), foreigndom=abi.DOMID_IO
        )
        h.set_entry(0, l1, next(slots), abi.make_pte(plan["io_mfn"], P), foreigndom=abi.DOMID_IO)
    h.audit()


@check(more_entries, points=10, name="pin: every entry of an L1 being pinned is checked")
def pinned_l1s_checked(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("pin-good", "pin-bad")


@check(more_entries, points=5, name="uvm: update_va_mapping entries get the same checks")
def uvm_checked(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("uvm")


@check(more_entries, points=5, name="heap: Xen's shared pages are mapped write-back only")
def xen_heap_checked(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("xen-heap")


@check(more_entries, points=5, name="io: FD = DOMID_IO asks for the L1 owner's privileges")
def domid_io_checked(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("io-domid-io")
