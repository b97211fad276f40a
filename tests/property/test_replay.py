"""The trace is deterministic and replayable.

A fixed sequence of hypercalls (some refused) is run twice on identical
machines: the JSON-lines export is identical byte for byte. Replaying the
guest's own (depth-0) hypercall records onto a fresh machine built the same way
reproduces every call's result, every frame's metadata and contents, the M2P,
and the trace itself.

Replay is :func:`hypervisor.replay.replay`, the function graders use.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hypervisor import Domain, HypercallError, Hypervisor, VCpu, abi
from hypervisor.replay import replay

pytestmark = pytest.mark.property

P, RW, A = abi._PAGE_PRESENT, abi._PAGE_RW, abi._PAGE_ACCESSED
DOMAINS: tuple[dict[str, object], ...] = (
    {"nr_pages": 300, "privileged": True},
    {"nr_pages": 300},
    {"nr_pages": 300, "guest_width": 32},
)


def build() -> Hypervisor:
    """The machine every run starts from."""
    xen = Hypervisor(total_frames=2048)
    for spec in DOMAINS:
        xen.create_domain(**spec)  # type: ignore[arg-type]
    return xen


def first_free_pfn(dom: Domain) -> int:
    si = dom.start_info
    return ((si.pt_base - si.virt_base) >> 12) + si.nr_pt_frames


def va_of(dom: Domain, pfn: int) -> int:
    return dom.start_info.virt_base + pfn * 4096


def run_sequence(xen: Hypervisor) -> list[int]:
    """A fixed guest story with successes and refusals; returns each call's
    outcome (0 or a positive errno) in order."""
    d0, d1, d2 = xen.domains
    v0, v1, v2 = (d.vcpus[0] for d in xen.domains)
    f = first_free_pfn(d1)
    l1, data = d1.initial_p2m[f], d1.initial_p2m[f + 1]
    foreign = d2.initial_p2m[first_free_pfn(d2)]
    calls: list[Callable[[], object]] = [
        # build an L1 in a free frame: make it read-only, fill it, pin it
        lambda: v1.update_va_mapping(va_of(d1, f), (l1 << 12) | P | A),
        lambda: v1.mmu_update([abi.MmuUpdate(l1 << 12, (data << 12) | P | RW | A)]),
        lambda: v1.mmuext_op([abi.MmuExtOp(abi.MMUEXT_PIN_L1_TABLE, l1)]),
        lambda: v1.mmuext_op([abi.MmuExtOp(abi.MMUEXT_PIN_L1_TABLE, l1)]),  # already pinned
        # a batch whose second request maps another domain's frame: done == 1
        lambda: v1.mmu_update(
            [
                abi.MmuUpdate((l1 << 12) | 8, (data << 12) | P | A),
                abi.MmuUpdate((l1 << 12) | 16, (foreign << 12) | P | A),
            ]
        ),
        lambda: v1.update_va_mapping(va_of(d1, f + 2), 0, 3),  # bad flags
        lambda: v1.vm_assist(abi.VMASST_CMD_enable, abi.VMASST_TYPE_writable_pagetables),
        lambda: v1.multicall(
            [
                abi.MulticallEntry(abi.HYPERVISOR_mmuext_op, ([abi.MmuExtOp(4, l1)],)),
                abi.MulticallEntry(abi.HYPERVISOR_mmuext_op, ([abi.MmuExtOp(4, l1)],)),
                abi.MulticallEntry(99, ()),
            ]
        ),
        lambda: v1.mmuext_op([abi.MmuExtOp(abi.MMUEXT_TLB_FLUSH_LOCAL)], 0),  # not privileged
        # dom0 maps a frame of d1 through its own direct map (foreign mapping)
        lambda: v0.update_va_mapping_otherdomain(
            va_of(d0, first_free_pfn(d0)), (data << 12) | P | A, abi.UVMF_INVLPG, 1
        ),
        lambda: v2.mmuext_op([abi.MmuExtOp(abi.MMUEXT_NEW_USER_BASEPTR, 0)]),  # 32-bit: EINVAL
        lambda: v2.mmu_update([abi.MmuUpdate(foreign << 12 | 1, 7)]),  # M2P of its own frame
        _from_user_mode(v1),
    ]
    outcomes = []
    for call in calls:
        try:
            call()
        except HypercallError as err:
            outcomes.append(err.errno)
        else:
            outcomes.append(0)
    return outcomes


def _from_user_mode(vcpu: VCpu) -> Callable[[], object]:
    def call() -> object:
        with vcpu.user_mode():
            return vcpu.vm_assist(abi.VMASST_CMD_enable, abi.VMASST_TYPE_writable_pagetables)

    return call


def frame_state(xen: Hypervisor) -> list[tuple[object, ...]]:
    return [(xen.frame(m), xen.read_frame(m), xen.m2p(m)) for m in range(xen.total_frames)]


# -- tests -------------------------------------------------------------------------------


def test_fixed_sequence_has_successes_and_refusals() -> None:
    xen = build()
    outcomes = run_sequence(xen)
    assert 0 in outcomes
    assert any(outcomes)
    assert not xen.audit()


def test_trace_export_is_identical_across_identical_runs() -> None:
    first, second = build(), build()
    run_sequence(first)
    run_sequence(second)
    text = first.trace.to_jsonl()
    assert text
    assert text.encode() == second.trace.to_jsonl().encode()


def test_trace_records_refusals_with_their_rule() -> None:
    xen = build()
    run_sequence(xen)
    refused = [r for r in xen.trace.hypercalls() if r.result < 0]
    assert refused
    assert all(r.rule for r in refused)


def test_replay_gives_every_call_its_recorded_result() -> None:
    original = build()
    run_sequence(original)
    assert original.trace.hypercalls()
    assert replay(list(original.trace), build()) == []


def test_replay_reproduces_frame_metadata_contents_and_m2p() -> None:
    original = build()
    run_sequence(original)
    fresh = build()
    replay(list(original.trace), fresh)
    assert frame_state(fresh) == frame_state(original)
    assert not fresh.audit()


def test_replay_reproduces_the_trace_byte_for_byte() -> None:
    original = build()
    run_sequence(original)
    fresh = build()
    replay(list(original.trace), fresh)
    assert fresh.trace.to_jsonl() == original.trace.to_jsonl()
