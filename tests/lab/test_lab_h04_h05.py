"""h04_linear_tables and h05_trapped_writes: each exploit demonstration reaches its goal
with the lesson's break installed and is refused, with Xen's errno, on the reference."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import pytest

from hypervisor import Hypervisor, abi
from lessons.lab import seam
from lessons.lab.lessons import Lesson, load, load_file
from lessons.lab.testing import Battery, Plan, plan_rng, run_battery

H04, H05 = "h04_linear_tables", "h05_trapped_writes"
LINEAR = "hypervisor.mm.upper:get_linear_pagetable"
PTWR = "hypervisor.mm.ptwr:ptwr_emulated_update"


def battery(lesson: Lesson, name: str) -> tuple[Battery, Plan]:
    """The public battery ``name`` of ``lesson`` and its plan for seed 5."""
    for path in lesson.test_files(False):
        found = load_file(path).__dict__.get(name)
        if isinstance(found, Battery):
            return found, found.plan(plan_rng(5, lesson.id, name))
    raise LookupError(name)


def break_function(lesson: Lesson, name: str, function: str) -> Callable[..., Any]:
    spec = importlib.util.spec_from_file_location(f"{lesson.id}_{name}", lesson.breaks()[name])
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, function.rpartition(":")[2])  # type: ignore[no-any-return]


@pytest.fixture
def installed() -> Iterator[Callable[[str, Callable[..., Any]], None]]:
    """Install a lesson function for the test; the references come back afterwards."""
    yield seam.install
    seam.reset()


def secret_hex(plan: Plan) -> str:
    return int(plan["secret"], 16).to_bytes(8, "little").hex()


def test_h04_writable_self_map_reads_another_domains_frame_on_the_break(
    installed: Callable[[str, Callable[..., Any]], None],
) -> None:
    h04 = load(H04)
    b, plan = battery(h04, "writable_self_map")
    installed(LINEAR, break_function(h04, "rw_linear", LINEAR))
    host, error = run_battery(b, plan)
    mapped, forged, stolen = host.ops[-3:]
    assert not error
    assert mapped["out"]["status"] == forged["out"]["status"] == "ok"
    assert stolen["out"] == {"status": "ok", "value": secret_hex(plan)}


def test_h04_writable_self_map_is_einval_on_the_reference() -> None:
    b, plan = battery(load(H04), "writable_self_map")
    host, error = run_battery(b, plan)
    mapped, forged, stolen = host.ops[-3:]
    assert not error
    assert (mapped["out"]["errno"], mapped["out"]["rule"]) == ("EINVAL", "linear.writable")
    assert forged["out"]["status"] == stolen["out"]["status"] == "fault"
    assert not host.xen.audit()


def test_h04_stacked_tables_are_torn_down_by_one_unpin_on_the_break(
    installed: Callable[[str, Callable[..., Any]], None],
) -> None:
    h04 = load(H04)
    b, plan = battery(h04, "stacked")
    installed(LINEAR, break_function(h04, "chains_allowed", LINEAR))
    host, error = run_battery(b, plan)
    links = [op for op in host.ops if op["call"].startswith("mmu_update")]
    last_unpin = host.ops[-2]
    assert not error
    assert len(links) == plan["layers"] - 1
    assert all(op["out"]["status"] == "ok" for op in links)
    assert "UNPIN" in last_unpin["call"]
    assert len(last_unpin["digest"]) == plan["layers"]
    assert all(d[1] == 0 and d[3] is False for d in last_unpin["digest"].values())


def test_h04_every_second_stacked_layer_is_einval_on_the_reference() -> None:
    b, plan = battery(load(H04), "stacked")
    host, error = run_battery(b, plan)
    links = [op["out"] for op in host.ops if op["call"].startswith("mmu_update")]
    assert not error
    # c2 -> c1 is a link; c3 -> c2 would stack on it; c4 -> c3 is a link again ...
    assert [o["status"] for o in links] == ["ok", "refused"] * (len(links) // 2) + ["ok"] * (
        len(links) % 2
    )
    refused = {(o["errno"], o["rule"]) for o in links if o["status"] == "refused"}
    assert refused == {("EINVAL", "linear.chain")}
    assert not host.xen.audit()


def _stack_depth(frame: FrameType | None) -> int:
    depth = 0
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    return depth


def _teardown_depth(layers: int) -> int:
    """How many Python frames deeper the stack grows when the top of ``layers`` stacked L2s
    is unpinned (the rest unpinned already)."""
    xen = Hypervisor(total_frames=512)
    dom = xen.create_domain(nr_pages=64)
    v, info = dom.vcpus[0], dom.start_info
    first = (info.pt_base - info.virt_base) // 4096 + info.nr_pt_frames
    l2s = [dom.initial_p2m[pfn] for pfn in range(first, first + layers)]
    for pfn, mfn in enumerate(l2s, first):
        v.update_va_mapping(info.virt_base + pfn * 4096, 0, abi.UVMF_INVLPG)
        v.mmuext_op([abi.MmuExtOp(abi.MMUEXT_PIN_L2_TABLE, mfn)])
    for lower, upper in itertools.pairwise(l2s):
        v.mmu_update([abi.MmuUpdate(upper << 12, lower << 12 | abi._PAGE_PRESENT)])
    for mfn in l2s[:-1]:
        v.mmuext_op([abi.MmuExtOp(abi.MMUEXT_UNPIN_TABLE, mfn)])
    start, deepest = _stack_depth(sys._getframe()), 0

    def probe(frame: FrameType, event: str, arg: object) -> None:
        nonlocal deepest
        if event == "call":
            deepest = max(deepest, _stack_depth(frame))

    sys.setprofile(probe)
    try:
        v.mmuext_op([abi.MmuExtOp(abi.MMUEXT_UNPIN_TABLE, l2s[-1])])
    finally:
        sys.setprofile(None)
    assert not any(xen.frame(m).validated for m in l2s)
    return deepest - start


def test_h04_teardown_of_stacked_tables_recurses_once_per_layer_on_the_break(
    installed: Callable[[str, Callable[..., Any]], None],
) -> None:
    installed(LINEAR, break_function(load(H04), "chains_allowed", LINEAR))
    d4, d8, d16 = (_teardown_depth(n) for n in (4, 8, 16))
    assert (d16 - d8) / 8 == (d8 - d4) / 4 >= 3  # the same few frames for every layer


def test_h05_trapped_store_maps_the_l1_writable_and_reads_d1_on_the_break(
    installed: Callable[[str, Callable[..., Any]], None],
) -> None:
    h05 = load(H05)
    b, plan = battery(h05, "exploit")
    installed(PTWR, break_function(h05, "unchecked_store", PTWR))
    host, error = run_battery(b, plan)
    mapped, forged, stolen = host.ops[-3:]
    assert not error
    assert mapped["out"]["status"] == forged["out"]["status"] == "ok"
    assert stolen["out"] == {"status": "ok", "value": secret_hex(plan)}


def test_h05_trapped_store_of_the_l1_writable_is_ebusy_on_the_reference() -> None:
    b, plan = battery(load(H05), "exploit")
    host, error = run_battery(b, plan)
    mapped, forged, stolen = host.ops[-3:]
    refused = [r for r in host.xen.trace if r.kind == "trapped_write"]
    assert not error
    assert mapped["out"]["status"] == forged["out"]["status"] == stolen["out"]["status"]
    assert mapped["out"]["status"] == "fault"
    assert [(r.result, r.rule) for r in refused] == [(-abi.EBUSY, "l1.writable-pagetable")]
    assert not host.xen.audit()
