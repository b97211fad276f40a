"""Replaying a trace on a fresh machine (``hypervisor.replay``), as graders do."""

from __future__ import annotations

import copy

from hypervisor import Hypervisor
from hypervisor.replay import replay
from hypervisor.trace import HypercallRecord, from_jsonl
from minikern import Kernel


def _student_run(xen: Hypervisor) -> None:
    """A kernel's whole life: boot, spawn, fork, copy-on-write, exit."""
    k = Kernel.boot(nr_pages=1024, hypervisor=xen)
    p = k.spawn()
    p.mmap(0x400000, 4 * 4096, "rw")
    p.write(0x400000, b"parent")
    child = k.fork(p)
    child.write(0x400000, b"child")
    k.exit(child)
    k.exit(p)


def _recorded_machine() -> Hypervisor:
    xen = Hypervisor(total_frames=4096)
    xen.trace.record_stores = True
    _student_run(xen)
    return xen


def _frames(xen: Hypervisor) -> list[object]:
    return [(xen.frame(m), xen.read_frame(m)) for m in range(xen.total_frames)]


def test_replaying_a_recorded_kernel_run_reproduces_every_result() -> None:
    original = _recorded_machine()
    fresh = Hypervisor(total_frames=4096)
    fresh.create_domain(1024)
    assert replay(from_jsonl(original.trace.to_jsonl()), fresh) == []
    assert fresh.audit() == []


def test_replaying_a_recorded_kernel_run_reproduces_frame_metadata() -> None:
    original = _recorded_machine()
    fresh = Hypervisor(total_frames=4096)
    fresh.create_domain(1024)
    replay(list(original.trace), fresh)
    assert [fresh.frame(m) for m in range(4096)] == [original.frame(m) for m in range(4096)]


def test_a_tampered_result_in_the_trace_is_a_divergence() -> None:
    original = _recorded_machine()
    records = list(original.trace)
    i = next(
        n for n, r in enumerate(records) if isinstance(r, HypercallRecord) and r.op == "mmuext_op"
    )
    forged = records[i]
    assert isinstance(forged, HypercallRecord)
    records[i] = HypercallRecord(
        forged.clock, forged.domid, forged.vcpu, forged.op, forged.args, -22, 0, "type.mismatch"
    )
    fresh = Hypervisor(total_frames=4096)
    fresh.create_domain(1024)
    divergences = replay(records, fresh)
    assert [d.record for d in divergences] == [records[i]]


def test_jsonl_round_trip_exports_the_same_text() -> None:
    original = _recorded_machine()
    text = original.trace.to_jsonl()
    again = Hypervisor(total_frames=4096)
    again.trace.records.extend(from_jsonl(text))
    assert again.trace.to_jsonl() == text


def test_a_deep_copy_of_a_machine_is_independent() -> None:
    xen = Hypervisor(total_frames=4096)
    xen.create_domain(1024)
    snapshot = copy.deepcopy(xen)
    before = _frames(snapshot)
    Kernel.boot(nr_pages=512, hypervisor=xen).spawn()
    assert _frames(snapshot) == before
    assert _frames(xen) != before
    assert snapshot.audit() == []
