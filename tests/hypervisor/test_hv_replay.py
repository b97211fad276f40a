"""Replaying a trace on a fresh machine (``hypervisor.replay``), as graders do."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import attrs
import pytest

from hypervisor import Config, Hypervisor, replay
from hypervisor.trace import (
    FlushRecord,
    HypercallRecord,
    Record,
    StoreRecord,
    TraceFormatError,
)
from minikern import Kernel


def _student_run(xen: Hypervisor) -> None:
    """A kernel's whole life: boot, spawn, fork, copy-on-write, exit."""
    k = Kernel.boot(nr_pages=1024, hypervisor=xen)
    p = k.spawn()
    p.mmap(0x400000, 4 * 4096, "rw")
    p.write(0x400000, b"parent")
    child = k.fork(p)
    child.write(0x400000, b"child")
    assert p.read(0x400000, 6) == b"parent"
    k.exit(child)
    k.exit(p)


def _recorded_machine(config: Config | None = None) -> Hypervisor:
    xen = Hypervisor(total_frames=4096, config=config)
    _student_run(xen)
    return xen


def _frames(xen: Hypervisor) -> list[object]:
    return [(xen.frame(m), xen.read_frame(m), xen.m2p(m)) for m in range(xen.total_frames)]


@pytest.fixture(scope="module")
def recorded() -> Hypervisor:
    return _recorded_machine()


@pytest.fixture(scope="module")
def text(recorded: Hypervisor) -> str:
    return recorded.trace.to_jsonl()


def test_a_kernel_run_replays_with_no_divergence_from_its_text_alone(text: str) -> None:
    result = replay.run(replay.parse(text))
    assert result.divergences == []
    assert result.xen.audit() == []


def test_a_replay_reproduces_the_trace_byte_for_byte(text: str) -> None:
    assert replay.run(replay.parse(text)).xen.trace.to_jsonl() == text


def test_a_replay_reproduces_every_frame_its_contents_and_the_m2p(
    recorded: Hypervisor, text: str
) -> None:
    assert _frames(replay.run(replay.parse(text)).xen) == _frames(recorded)


def test_the_header_describes_the_machine_and_its_domains(text: str) -> None:
    header = replay.parse(text).header
    assert header is not None
    assert (header.format, header.total_frames, header.stores) == (1, 4096, True)
    assert [(d.nr_pages, d.privileged, d.guest_width, d.vcpus) for d in header.domains] == [
        (1024, False, 64, 1)
    ]


def test_the_header_carries_the_seed_and_notes_the_caller_sets() -> None:
    xen = Hypervisor(total_frames=1024)
    xen.trace.seed = 7
    xen.trace.meta["lesson"] = "03_pin_and_load"
    header = replay.parse(xen.trace.to_jsonl()).header
    assert header is not None
    assert (header.seed, header.meta) == (7, {"lesson": "03_pin_and_load"})


def test_the_machine_is_rebuilt_with_the_recorded_config_knobs() -> None:
    config = Config(fastpath="pre-4.8", flush_on_l2plus_update=False)
    header = replay.parse(Hypervisor(total_frames=1024, config=config).trace.to_jsonl()).header
    assert header is not None
    assert replay.machine(header).config == config


def test_a_domain_created_mid_trace_is_created_at_that_point_of_the_replay() -> None:
    xen = Hypervisor(total_frames=2048)
    xen.create_domain(256)
    xen.domains[0].vcpus[0].vm_assist(0, 2)
    xen.create_domain(256, privileged=True)
    trace = replay.parse(xen.trace.to_jsonl())
    assert [d.at for d in trace.header.domains] == [0, 1]  # type: ignore[union-attr]
    assert len(replay.run(trace, at=0).xen.domains) == 1
    assert len(replay.run(trace).xen.domains) == 2


def _exported_stores(write: bytes) -> list[dict[str, object]]:
    xen = Hypervisor(total_frames=1024)
    dom = xen.create_domain(256)
    si = dom.start_info
    free_va = si.pt_base + si.nr_pt_frames * 4096
    dom.vcpus[0].write(free_va, write)
    lines = [json.loads(line) for line in xen.trace.to_jsonl().splitlines()]
    return [line for line in lines if line["kind"] == "store"]


def test_a_zeroed_page_is_exported_in_a_few_bytes() -> None:
    [store] = _exported_stores(bytes(4096))
    assert (store["data"], store["length"], store["pad"]) == ("", 4096, 0)


def test_a_junk_filled_page_is_exported_in_a_few_bytes() -> None:
    [store] = _exported_stores(b"\x01" * 4096)
    assert (store["data"], store["length"], store["pad"]) == ("", 4096, 1)


@pytest.mark.parametrize(
    "data", [b"\x01\x02" + bytes(100) + b"\x07\x07", bytes(7) + b"\x05", b"", b"\x09" * 4096]
)
def test_an_exported_store_parses_back_to_the_bytes_written(data: bytes) -> None:
    xen = Hypervisor(total_frames=1024)
    xen.trace.emit(StoreRecord.of(0, 0, 0, 0x1000, data, True, "write"))
    [rec] = replay.parse(xen.trace.to_jsonl()).records
    assert isinstance(rec, StoreRecord)
    assert rec.payload() == data


def test_zeroed_pages_share_one_buffer_in_the_trace() -> None:
    a = StoreRecord.of(0, 0, 0, 0x1000, bytes(4096), False, "write")
    b = StoreRecord.of(0, 0, 0, 0x2000, bytes(4096), False, "write")
    assert a.data is b.data


def test_replay_at_n_stops_after_n_steps(text: str) -> None:
    trace = replay.parse(text)
    result = replay.run(trace, at=10)
    assert (result.steps, result.total_steps) == (10, len(trace.steps))
    assert sum(replay.is_step(r) for r in result.xen.trace.records) == 10
    assert result.divergences == []


def test_replay_at_n_is_the_machine_the_original_had_after_step_n() -> None:
    xen = Hypervisor(total_frames=4096)
    steps, calls, seen = 0, 0, []

    def snapshot_after_the_second_call(rec: Record) -> None:
        nonlocal steps, calls
        steps += replay.is_step(rec)
        calls += isinstance(rec, HypercallRecord) and rec.depth == 0
        if calls == 2 and not seen:
            seen.append((steps, copy.deepcopy(xen)))

    xen.trace.add_listener(snapshot_after_the_second_call)
    Kernel.boot(nr_pages=512, hypervisor=xen).spawn()
    n, then = seen[0]
    assert _frames(replay.run(replay.parse(xen.trace.to_jsonl()), at=n).xen) == _frames(then)


def test_a_tampered_result_is_a_divergence_at_its_step(recorded: Hypervisor) -> None:
    records = list(recorded.trace)
    i = next(
        n
        for n, r in enumerate(records)
        if isinstance(r, HypercallRecord) and r.op == "mmuext_op" and r.depth == 0
    )
    records[i] = attrs.evolve(records[i], result=-22, rule="type.mismatch")  # type: ignore[misc]
    divergences = replay.replay(records, _fresh())
    assert [d.record for d in divergences] == [records[i]]
    assert divergences[0].step == sum(replay.is_step(r) for r in records[: i + 1])


def test_an_edited_multicall_sub_call_is_a_divergence(recorded: Hypervisor) -> None:
    records = list(recorded.trace)
    i = next(n for n, r in enumerate(records) if isinstance(r, HypercallRecord) and r.depth)
    records[i] = attrs.evolve(records[i], result=-1)  # type: ignore[misc]
    assert [d.record for d in replay.replay(records, _fresh())] == [records[i]]


def test_an_edited_flush_record_is_a_divergence(recorded: Hypervisor) -> None:
    records = list(recorded.trace)
    i = next(n for n, r in enumerate(records) if isinstance(r, FlushRecord))
    records[i] = attrs.evolve(records[i], scope="va")  # type: ignore[misc]
    assert [d.record for d in replay.replay(records, _fresh())] == [records[i]]


def test_a_missing_store_is_a_divergence(recorded: Hypervisor) -> None:
    records = [r for r in recorded.trace if not isinstance(r, StoreRecord) or r.user]
    assert replay.replay(records, _fresh()) != []


def test_a_step_of_no_such_vcpu_is_a_divergence_not_a_crash(recorded: Hypervisor) -> None:
    records = list(recorded.trace)
    records[1] = attrs.evolve(records[1], domid=5)  # type: ignore[misc]
    assert "no vCPU" in replay.replay(records, _fresh())[0].got


def test_a_step_naming_no_hypercall_is_a_divergence(recorded: Hypervisor) -> None:
    records = list(recorded.trace)
    i = next(n for n, r in enumerate(records) if isinstance(r, HypercallRecord))
    records[i] = attrs.evolve(records[i], op="__init__")  # type: ignore[misc]
    assert "no hypercall" in replay.replay(records, _fresh())[0].got


def _fresh() -> Hypervisor:
    xen = Hypervisor(total_frames=4096)
    xen.create_domain(1024)
    return xen


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "'kind'"),
        ('{"kind": "teleport"}', "unknown record kind"),
        ('{"kind": "load", "clock": "0", "domid": 0, "vcpu": 0, "va": 0, "length": 1, '
         '"user": false}', "'clock' must be int"),
        ('{"kind": "load", "clock": 0}', "needs 'domid'"),
        ('{"kind": "load", "clock": 0, "domid": 0, "vcpu": 0, "va": 0, "length": 1099511627776, '
         '"user": false}', "impossible"),
        ('{"kind": "store", "clock": 0, "domid": 0, "vcpu": 0, "va": 0, "data": "", '
         '"length": 1099511627776, "pad": 0, "user": false}', "impossible"),
        ('{"kind": "store", "clock": 0, "domid": 0, "vcpu": 0, "va": 0, "data": "zz", '
         '"length": 1, "pad": 0, "user": false}', "hex"),
        ('{"kind": "load", "clock": 0, "domid": 0, "vcpu": 0, "va": 0, "length": 1, '
         '"user": false, "extra": 1}', "unknown field"),
    ],
)  # fmt: skip
def test_an_unreadable_line_is_a_format_error_naming_it(text: str, line: str, why: str) -> None:
    lines = text.splitlines()
    with pytest.raises(TraceFormatError, match=why) as info:
        replay.parse("\n".join([*lines[:3], line, *lines[3:]]))
    assert info.value.line == 4


def test_a_header_after_the_first_record_is_a_format_error(text: str) -> None:
    lines = text.splitlines()
    with pytest.raises(TraceFormatError, match="first line"):
        replay.parse("\n".join([lines[1], lines[0]]))


def test_a_trace_of_another_format_version_is_refused(text: str) -> None:
    lines = text.splitlines()
    header = json.loads(lines[0])
    header["format"] = 99
    with pytest.raises(TraceFormatError, match="format 99"):
        replay.parse("\n".join([json.dumps(header), *lines[1:]]))


def test_replay_at_a_step_beyond_the_trace_is_a_value_error(text: str) -> None:
    trace = replay.parse(text)
    with pytest.raises(ValueError, match="at must be a step number"):
        replay.run(trace, at=len(trace.steps) + 1)


def test_a_deep_copy_of_a_machine_is_independent() -> None:
    xen = Hypervisor(total_frames=4096)
    xen.create_domain(1024)
    snapshot = copy.deepcopy(xen)
    before = _frames(snapshot)
    Kernel.boot(nr_pages=512, hypervisor=xen).spawn()
    assert _frames(snapshot) == before
    assert _frames(xen) != before
    assert snapshot.audit() == []


def test_the_readme_replay_example_runs() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Replaying a trace", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md", "exec"), {})
