"""Every instance of a diagnosis lesson tells the truth about its own run, and the
instances differ in what the student must find (not only in where it shows): the
incidents run on many seeds, and what they say is checked against the trace, the
panic and the machine. ``lab verify``'s copy figures are checked to fail a lesson
where copying pays."""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from hypervisor import abi, rules
from lessons.lab import diagnosis
from lessons.lab.diagnosis import Scene
from lessons.lab.lessons import load, read_toml
from lessons.lab.verify import copied_scores, verify_lesson
from minikern import steps

SEEDS = range(12)
CLASS = [f"student{n}@example.edu" for n in range(16)]


def run(lesson_id: str, seed: int) -> tuple[Scene, dict[str, Any]]:
    """The incident of ``lesson_id`` on the plan of ``seed``: the scene and its plan."""
    w = diagnosis._incident_of(load(lesson_id))
    plan = w.plan(random.Random(seed))
    scene = Scene(w)
    steps.reset()
    try:
        w.run(scene, plan)
    finally:
        steps.reset()
    return scene, plan


def truths(lesson_id: str) -> list[dict[str, Any]]:
    lesson = load(lesson_id)
    return [diagnosis.generate(lesson, who).truth for who in CLASS]


def row(scene: Scene, number: int) -> Any:
    return scene.ordered()[number - 1]


def mmuext(record: Any) -> list[tuple[int, int]]:
    return [(op.cmd, int(op.arg1)) for op in record.args[0]]


# -- d01: a refused pin ----------------------------------------------------------------


D01_RULES = {
    ("writable", 1): rules.TYPE_WRITABLE_MAPPED,
    ("writable", 2): rules.TYPE_WRITABLE_MAPPED,
    ("writable", 3): rules.TYPE_WRITABLE_MAPPED,
    ("foreign", 1): rules.L1_FREE_FRAME,
    ("foreign", 2): rules.ENTRY_TARGET_NOT_OWNED,
    ("foreign", 3): rules.ENTRY_TARGET_NOT_OWNED,
    ("flags", 1): rules.ENTRY_DISALLOWED_FLAGS,
    ("flags", 2): rules.ENTRY_DISALLOWED_FLAGS,
    ("flags", 3): rules.ENTRY_DISALLOWED_FLAGS,
}


@pytest.mark.parametrize("seed", SEEDS)
def test_d01_the_refused_pin_breaks_the_rule_of_the_broken_table(seed: int) -> None:
    s, plan = run("d01_refused_pin", seed)
    refused = row(s, s.truth["operation"])
    rule = D01_RULES[(plan["fault"], plan["level"])]
    assert refused.op == "mmuext_op"
    assert (s.truth["rule"], s.truth["errno"]) == (rule.id, abi.errno_name(-rule.errno))
    assert refused.rule == rule.id


@pytest.mark.parametrize("seed", SEEDS)
def test_d01_xen_stops_at_the_answers_table_and_slot(seed: int) -> None:
    s, plan = run("d01_refused_pin", seed)
    t = s.truth
    walk = str(s.panic).split("while validating ", 1)[1].split(": ", 1)[0]
    path = re.findall(r"L(\d) mfn (0x[0-9a-f]+) slot (\d+)", walk)
    level, table, slot = (int(path[-1][0]), int(path[-1][1], 16), int(path[-1][2]))
    assert slot == t["slot"]
    if plan["fault"] == "writable":  # stopped in the parent, at its entry to the table
        assert level == t["level"] + 1
        assert f"mfn {t['frame']:#x} is still mapped writable" in str(s.panic)
    else:
        assert (level, table) == (t["level"], t["frame"])


def test_d01_a_class_meets_every_fault_at_every_level() -> None:
    found = truths("d01_refused_pin")
    assert {t["step"] for t in found} == {
        "minikern.build:protect_tables",
        "minikern.build:write_tables",
    }
    assert {t["level"] for t in found} == {1, 2, 3}
    assert len({t["rule"] for t in found}) >= 3
    assert {t["errno"] for t in found} == {"EINVAL", "EBUSY"}


# -- d03: a teardown in the wrong order ---------------------------------------------------


HOLDERS = {
    "MMUEXT_NEW_BASEPTR": {abi.MMUEXT_NEW_BASEPTR, abi.MMUEXT_NEW_USER_BASEPTR},
    "MMUEXT_UNPIN_TABLE": {
        abi.MMUEXT_PIN_L1_TABLE,
        abi.MMUEXT_PIN_L3_TABLE,
        abi.MMUEXT_PIN_L4_TABLE,
    },
}


@pytest.mark.parametrize("seed", SEEDS)
def test_d03_the_refused_frame_is_still_a_table_held_by_the_answers_operation(seed: int) -> None:
    s, _plan = run("d03_teardown_leak", seed)
    t = s.truth
    held = row(s, t["held_by"])
    assert held.result == 0
    assert any(cmd in HOLDERS[t["command"]] and arg == t["frame"] for cmd, arg in mmuext(held))
    refused = row(s, t["operation"])
    assert refused.op == "update_va_mapping"
    assert (int(refused.args[1]) >> 12) & ((1 << 40) - 1) == t["frame"]


# -- d04: a PAE guest that "pinned" with PIN_L4 --------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_d04_the_pin_l4_named_the_table_the_exit_could_not_unpin(seed: int) -> None:
    s, plan = run("d04_pae_pin_l4", seed)
    t = s.truth
    pin, refused = row(s, t["operation"]), row(s, t["exit_operation"])
    assert (abi.MMUEXT_PIN_L4_TABLE, t["frame"]) in mmuext(pin)
    assert (abi.MMUEXT_UNPIN_TABLE, t["frame"]) in mmuext(refused)
    assert t["exit_rule"] == refused.rule == rules.UNPIN_NOT_PINNED.id
    assert not s.xen.frame(t["frame"]).pinned
    level = {"l3": 3, "l1": 1}[plan["fault"]]
    assert t["command"] == f"MMUEXT_PIN_L{level}_TABLE"


def test_d04_a_class_meets_both_tables_pinned_with_pin_l4() -> None:
    found = truths("d04_pae_pin_l4")
    assert {(t["command"], t["step"]) for t in found} == {
        ("MMUEXT_PIN_L3_TABLE", "minikern.build:pin_tree_pae"),
        ("MMUEXT_PIN_L1_TABLE", "minikern.pgtable:add_table"),
    }


# -- copying --------------------------------------------------------------------------------


def test_copied_scores_has_one_share_per_ordered_pair() -> None:
    shares = copied_scores(load("d02_stale_tlb"), CLASS[:3])
    assert len(shares) == 6
    assert all(0 <= x < 1 for x in shares)


def test_verify_fails_a_lesson_where_copying_pays(tmp_path: Path) -> None:
    folder = tmp_path / "d02_stale_tlb"
    shutil.copytree(
        load("d02_stale_tlb").path, folder, ignore=shutil.ignore_patterns("__pycache__")
    )
    test = next((folder / "tests").glob("test_*.py"))
    text = test.read_text()
    test.write_text(re.sub(r'(step = ask\(stale_tlb, "step", points=)\d+', r"\g<1>30", text))
    failed = [line for line, ok in verify_lesson(read_toml(folder)) if not ok]
    assert len(failed) == 1
    assert "a copied answer scores" in failed[0]
