"""Replay a trace on a fresh, trusted machine: what graders use.

A run's trace (:meth:`hypervisor.Tracer.to_jsonl`) starts with a header saying
how the machine was made (size, config knobs, every ``create_domain``), then
lists what the guest did and what came of it. The guest's actions are the
**steps** of the trace: every hypercall it issued (depth 0), every store, and
every load that walked the page tables. Replaying re-issues the steps in
order, on the same domain and vCPU, in the same mode and at the same logical
clock, on a machine rebuilt from the header -- so a faithful trace comes out
of the replay byte for byte. Whatever differs is a :class:`Divergence`: a call
whose result, ``done`` or rule differs from the record, or the first record the
replay made differently (an edited trace, or one made by a tampered
simulator, shows up here)::

    from hypervisor import replay
    trace = replay.parse(text)               # TraceFormatError if unreadable
    run = replay.run(trace)                  # or replay.run(trace, at=40)
    run.divergences                          # [] when the trace is faithful
    run.xen                                  # the trusted machine, after the steps
    run.xen.audit()

Only guest actions are replayed: the records Xen makes (flushes, faults,
trapped writes, multicall sub-calls) are compared, never obeyed. A step that
names no vCPU of the machine is a divergence, not a crash.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeGuard

import attrs

from hypervisor import rules
from hypervisor.argcheck import need_bool, need_instance, need_int
from hypervisor.config import Config
from hypervisor.errors import HypercallError, PageFault
from hypervisor.hypercalls import TABLE
from hypervisor.machine import Hypervisor
from hypervisor.trace import (
    FORMAT,
    DomainSpec,
    HypercallRecord,
    LoadRecord,
    Record,
    StoreRecord,
    TraceFormatError,
    TraceHeader,
    parse_jsonl,
)
from hypervisor.vcpu import VCpu

__all__ = [
    "Divergence",
    "HypercallRecord",
    "LoadRecord",
    "Replay",
    "Trace",
    "TraceFormatError",
    "is_step",
    "machine",
    "parse",
    "replay",
    "run",
    "Step",
    "StoreRecord",
]

_RECORD_TYPES = typing.get_args(Record)
_CALLS = frozenset(spec.name for spec in TABLE.values())
Step = HypercallRecord | StoreRecord | LoadRecord


@attrs.frozen
class Divergence:
    """A replayed step (or record) whose outcome differs from the recorded one.
    ``step`` is the 1-based step number (0: not tied to a step)."""

    record: Record
    expected: str
    got: str
    step: int = 0

    def __str__(self) -> str:
        where = f"step {self.step}" if self.step else "trace"
        return f"{where}: expected {self.expected}, got {self.got}"


@attrs.frozen
class Trace:
    """A parsed trace: its header (None for a bare record list) and records."""

    header: TraceHeader | None
    records: tuple[Record, ...]

    @property
    def steps(self) -> list[Step]:
        """The guest's actions, in order (step ``n`` is ``steps[n - 1]``)."""
        return [r for r in self.records if is_step(r)]


@attrs.frozen
class Replay:
    """The outcome of :func:`run`: the machine after the replayed steps, the
    divergences in order (empty: faithful), and how many steps ran."""

    xen: Hypervisor
    divergences: list[Divergence]
    steps: int
    """Steps replayed (``at``, or every step of the trace)."""
    total_steps: int

    @property
    def faithful(self) -> bool:
        return not self.divergences


def is_step(record: Record) -> TypeGuard[Step]:
    """True for the guest's actions: depth-0 hypercalls, stores, walking loads."""
    if isinstance(record, HypercallRecord):
        return record.depth == 0
    return isinstance(record, StoreRecord | LoadRecord)


def parse(text: str) -> Trace:
    """A trace from JSON-lines text; :class:`TraceFormatError` (a ValueError)
    names the line when it cannot be read or its header is of another format."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, not {type(text).__name__}")
    header, records = parse_jsonl(text)
    if header is not None and header.format != FORMAT:
        raise TraceFormatError(1, f"trace format {header.format}, this replayer reads {FORMAT}")
    return Trace(header, tuple(records))


def machine(header: TraceHeader, *, with_domains: bool = True) -> Hypervisor:
    """A fresh machine as the header describes it, its tracer carrying the
    header's seed and notes (every domain created, in order, unless
    ``with_domains`` is false). ValueError if it cannot be built."""
    need_instance("header", header, TraceHeader, "a TraceHeader (see replay.parse)")
    need_bool("with_domains", with_domains)
    try:
        config = Config(**header.config)
        xen = Hypervisor(total_frames=header.total_frames, config=config)
    except TypeError as exc:
        raise ValueError(f"the trace header describes no machine: {exc}") from None
    xen.trace.seed = header.seed
    xen.trace.meta.update(header.meta)
    if with_domains:
        for spec in header.domains:
            _create(xen, spec)
    return xen


def _create(xen: Hypervisor, spec: DomainSpec) -> None:
    xen.create_domain(
        spec.nr_pages, privileged=spec.privileged, guest_width=spec.guest_width, vcpus=spec.vcpus
    )


def run(trace: Trace, *, at: int | None = None, xen: Hypervisor | None = None) -> Replay:
    """Replay ``trace`` -- its first ``at`` steps, or all -- on ``xen``, or on a
    fresh machine rebuilt from the header (domains created at the point of
    the trace where they were). The divergences are those of the steps run."""
    if not isinstance(trace, Trace):
        raise TypeError(f"trace must be a replay.Trace (see replay.parse), not {trace!r}")
    total = len(trace.steps)
    if at is not None:
        need_int("at", at)
        if not 0 <= at <= total:
            raise ValueError(f"at must be a step number 0..{total}, not {at}")
    if xen is not None:
        need_instance("xen", xen, Hypervisor, "a hypervisor.Hypervisor or None")
    pending: list[DomainSpec] = []
    if xen is None:
        if trace.header is None:
            raise ValueError("a trace without a header needs a machine (xen=...)")
        xen = machine(trace.header, with_domains=False)
        pending = list(trace.header.domains)
    limit = total if at is None else at
    out, done = _replay(trace.records, xen, limit, pending)
    return Replay(xen, out, done, total)


def replay(records: Iterable[Record], xen: Hypervisor) -> list[Divergence]:
    """Re-issue every step of ``records`` on ``xen`` (already built as the
    original was); the divergences, in order (empty: identical)."""
    need_instance("records", records, Iterable, "an iterable of trace records")
    need_instance("xen", xen, Hypervisor, "a hypervisor.Hypervisor")
    recs = tuple(records)
    for rec in recs:
        if not isinstance(rec, _RECORD_TYPES):
            raise TypeError(f"records must hold trace records, not {type(rec).__name__}")
    return _replay(recs, xen, len(recs), [])[0]


def _replay(
    records: Sequence[Record], xen: Hypervisor, limit: int, pending: list[DomainSpec]
) -> tuple[list[Divergence], int]:
    """Run up to ``limit`` steps; compare what the replay recorded with what the
    trace says, up to the last step run."""
    tracer = xen.trace
    tracer.record_stores = True
    first = len(tracer.records)
    out: list[Divergence] = []
    steps = 0
    complete = True
    for i, rec in enumerate(records):
        while pending and pending[0].at <= i:
            _create(xen, pending.pop(0))
        if not is_step(rec):
            continue
        if steps == limit:
            complete = False
            break
        steps += 1
        got = _replay_step(xen, rec)
        want = _outcome(rec)
        if got != want:
            out.append(Divergence(rec, want, got, steps))
    if complete:
        while pending:
            _create(xen, pending.pop(0))
    if not out:
        out.extend(_first_difference(records, tracer.records[first:], complete))
    return out, steps


def _outcome(rec: Step) -> str:
    """What the record says the step came to."""
    if isinstance(rec, HypercallRecord):
        return "ok" if rec.result == 0 else f"{rec.result} (done {rec.done}, {rec.rule})"
    return "done"


def _vcpu(xen: Hypervisor, rec: Step) -> VCpu | None:
    if not 0 <= rec.domid < len(xen.domains):
        return None
    vcpus = xen.domains[rec.domid].vcpus
    return vcpus[rec.vcpu] if 0 <= rec.vcpu < len(vcpus) else None


def _mode(vcpu: VCpu, user: bool) -> AbstractContextManager[None]:
    """User mode if the recorded step ran there, else the kernel (no change)."""
    return vcpu.user_mode() if user else nullcontext()


def _replay_step(xen: Hypervisor, rec: Step) -> str:
    """Re-issue one step at its recorded clock; its outcome as :func:`_outcome` says it."""
    vcpu = _vcpu(xen, rec)
    if vcpu is None:
        return f"no vCPU {rec.vcpu} of domain {rec.domid}"
    tracer = xen.trace
    if isinstance(rec, HypercallRecord):
        if rec.op not in _CALLS:
            return f"no hypercall named {rec.op!r}"
        tracer.clock = rec.clock - 1
        return _replay_call(vcpu, rec)
    tracer.clock = rec.clock
    try:
        with _mode(vcpu, rec.user):
            if isinstance(rec, LoadRecord):
                vcpu.read(rec.va, rec.length)
            elif rec.op == "store":
                data = rec.payload()
                vcpu.store(rec.va, int.from_bytes(data, "little"), len(data))
            else:
                vcpu.write(rec.va, rec.payload())
    except PageFault:
        pass  # the original faulted too, or the records that follow differ
    except (TypeError, ValueError) as exc:
        return f"a step the machine cannot take ({exc})"
    return "done"


def _replay_call(vcpu: VCpu, rec: HypercallRecord) -> str:
    call: Any = getattr(vcpu, rec.op)
    try:
        with _mode(vcpu, rec.rule == rules.HYPERCALL_USER_MODE.id):
            call(*rec.args)
    except HypercallError as exc:
        return f"{-int(exc.errno or 0)} (done {exc.done}, {exc.rule})"
    except TypeError as exc:
        return f"a call the machine cannot make ({exc})"
    return "ok"


def _first_difference(
    want: Sequence[Record], got: Sequence[Record], complete: bool
) -> list[Divergence]:
    """One divergence at the first record the replay made differently, if any
    (a partial replay is compared with the trace's records as far as it got)."""
    for w, g in zip(want, got, strict=False):
        if w != g:
            return [Divergence(w, _describe(w), _describe(g))]
    if complete and len(want) > len(got):
        return [Divergence(want[len(got)], _describe(want[len(got)]), "no such record")]
    if len(got) > len(want):
        return [Divergence(got[len(want)], "no more records", _describe(got[len(want)]))]
    return []


def _describe(rec: Record) -> str:
    fields = ", ".join(f"{f.name}={getattr(rec, f.name)!r}" for f in attrs.fields(type(rec)))
    return f"{rec.kind}({fields})"
