"""Replay a trace against a fresh, trusted hypervisor.

A grader runs a student's kernel with ``xen.trace.record_stores = True``,
exports the trace (``to_jsonl``), and replays it here on a machine built the
same way (same ``Hypervisor`` size and ``create_domain`` calls): every
guest-issued hypercall (depth 0) and every recorded store is re-issued in
order, on the same domain and vCPU, in the same mode. Any call whose result,
``done`` or rule differs from the record is a :class:`Divergence` -- which is
how a trace that was edited, or produced by a tampered simulator, shows up.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext

import attrs

from hypervisor import rules
from hypervisor.errors import HypercallError, PageFault
from hypervisor.machine import Hypervisor
from hypervisor.trace import HypercallRecord, Record, StoreRecord
from hypervisor.vcpu import VCpu

__all__ = ["Divergence", "replay"]


@attrs.frozen
class Divergence:
    """A replayed step whose outcome differs from the recorded one."""

    record: Record
    expected: str
    got: str


def _outcome(result: int, done: int, rule: str) -> str:
    return "ok" if result == 0 else f"{result} (done {done}, {rule})"


def replay(records: Iterable[Record], xen: Hypervisor) -> list[Divergence]:
    """Re-issue ``records`` on ``xen``; the divergences, in order (empty: identical)."""
    out: list[Divergence] = []
    for rec in records:
        if isinstance(rec, HypercallRecord) and rec.depth == 0:
            got = _replay_call(xen, rec)
            want = _outcome(rec.result, rec.done, rec.rule)
            if got != want:
                out.append(Divergence(rec, want, got))
        elif isinstance(rec, StoreRecord):
            _replay_store(xen, rec)
    return out


def _mode(vcpu: VCpu, user: bool) -> AbstractContextManager[None]:
    """User mode if the recorded step ran there, else the kernel (no change)."""
    return vcpu.user_mode() if user else nullcontext()


def _replay_call(xen: Hypervisor, rec: HypercallRecord) -> str:
    vcpu = xen.domains[rec.domid].vcpus[rec.vcpu]
    call = getattr(vcpu, rec.op)
    try:
        with _mode(vcpu, rec.rule == rules.HYPERCALL_USER_MODE.id):
            call(*rec.args)
    except HypercallError as exc:
        return _outcome(-int(exc.errno or 0), exc.done, exc.rule)
    return "ok"


def _replay_store(xen: Hypervisor, rec: StoreRecord) -> None:
    vcpu = xen.domains[rec.domid].vcpus[rec.vcpu]
    data = bytes.fromhex(rec.data)

    try:
        with _mode(vcpu, rec.user):
            if rec.op == "store":
                vcpu.store(rec.va, int.from_bytes(data, "little"), len(data))
            else:
                vcpu.write(rec.va, data)
    except PageFault:
        pass  # the original store faulted too (or the divergence shows later)
