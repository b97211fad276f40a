"""Guest stores and hypercalls in the trace: kept cheaply until the trace is
read, then read back as records, in order; a listener gets each record at
once."""

from __future__ import annotations

import tracemalloc

from hypervisor import Hypervisor, abi
from hypervisor.trace import HypercallRecord, Record, StoreRecord


def _guest() -> tuple[Hypervisor, abi.GuestVCpu, int]:
    xen = Hypervisor(total_frames=8192)
    dom = xen.create_domain(nr_pages=1024)
    si = dom.start_info
    free_va = si.pt_base + si.nr_pt_frames * abi.PAGE_SIZE  # the first free page
    return xen, dom.vcpus[0], free_va


def test_a_page_write_reads_back_as_a_store_record() -> None:
    xen, v, va = _guest()
    v.write(va, b"\x07" * 16)
    rec = xen.trace.records[-1]
    assert rec == StoreRecord(rec.clock, 0, 0, va, b"\x07" * 16, False, "write")


def test_stores_keep_their_place_among_hypercall_records() -> None:
    xen, v, va = _guest()
    v.write(va, b"a")
    v.mmuext_op([abi.MmuExtOp(abi.MMUEXT_TLB_FLUSH_LOCAL)])
    v.write(va + 8, b"b")
    kinds = [type(r) for r in xen.trace.records if type(r) in (StoreRecord, HypercallRecord)]
    assert kinds[-3:] == [StoreRecord, HypercallRecord, StoreRecord]


def test_a_listener_gets_the_store_record_at_once() -> None:
    xen, v, va = _guest()
    seen: list[Record] = []
    xen.trace.add_listener(seen.append)
    v.write(va, b"xy")
    assert [type(r) for r in seen] == [StoreRecord]


def test_stores_of_fresh_zero_pages_keep_no_copy_of_them() -> None:
    """2,000 pages zeroed, each from its own zero-filled bytes object, the
    trace not read meanwhile: it shares one page for all of them."""
    _, v, va = _guest()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(2000):
            v.write(va, bytes(abi.PAGE_SIZE))
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 1 << 20, f"{grown} bytes for 2,000 zeroed pages"


def test_records_not_recorded_when_the_tracer_is_disabled() -> None:
    xen, v, va = _guest()
    xen.trace.enabled = False
    n = len(xen.trace.records)
    v.write(va, b"z")
    assert len(xen.trace.records) == n


def test_a_listener_gets_the_hypercall_record_at_once() -> None:
    xen, v, _ = _guest()
    seen: list[Record] = []
    xen.trace.add_listener(seen.append)
    v.mmuext_op([abi.MmuExtOp(abi.MMUEXT_TLB_FLUSH_LOCAL)])
    assert HypercallRecord in [type(r) for r in seen]


def test_a_hypercall_reads_back_with_its_arguments_and_result() -> None:
    xen, v, _ = _guest()
    v.mmuext_op([abi.MmuExtOp(abi.MMUEXT_TLB_FLUSH_LOCAL)])
    rec = [r for r in xen.trace.records if isinstance(r, HypercallRecord)][-1]
    assert (rec.op, rec.result, rec.done, rec.depth) == ("mmuext_op", 0, 1, 0)
