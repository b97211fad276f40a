"""The hypervisor track, graded end to end on h01: batteries, divergences and their
messages, crashes of the student's function, stripping, the exploit demonstration."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lessons.lab import cli, seam, source, workspace
from lessons.lab.grader import Tampered, parse_ops
from lessons.lab.lessons import Lesson, load, load_file
from lessons.lab.results import LessonResult
from lessons.lab.testing import Battery, Comparison, Host, plan_rng, run_battery
from tests.lab.conftest import grade_text

H01 = "h01_l1_entry_rules"
FUNCTION = "hypervisor.mm.l1:get_page_from_l1e"


@pytest.fixture(scope="session")
def h01() -> Lesson:
    return load(H01)


def battery(lesson: Lesson, name: str) -> Battery:
    found = load_file(lesson.test_files(False)[0]).__dict__[name]
    assert isinstance(found, Battery)
    return found


def break_text(lesson: Lesson, name: str) -> str:
    return workspace.break_source(lesson, lesson.breaks()[name])


@pytest.fixture(scope="module")
def rw_pagetable(h01: Lesson, tmp_path_factory: pytest.TempPathFactory) -> LessonResult:
    """h01 graded with its rw_pagetable break (once for the tests that read it)."""
    return grade_text(tmp_path_factory.mktemp("rw"), h01, break_text(h01, "rw_pagetable"))


def test_a_break_fails_with_the_first_divergence_in_words(rw_pagetable: LessonResult) -> None:
    r = rw_pagetable
    failed = {t.key: t for t in r.tests if not t.passed}
    assert set(failed) == {"no_writable_pagetable", "exploit_refused"}
    out = failed["no_writable_pagetable"].output
    assert out.startswith("op ")
    assert " mmu_update L1 mfn 0x" in out
    assert "(RW): your get_page_from_l1e allowed it" in out
    assert "Xen refuses it with EBUSY (l1.writable-pagetable): a frame in use" in out
    assert failed["no_writable_pagetable"].rule == "l1.writable-pagetable"


def test_the_exploit_check_says_the_secret_was_read(rw_pagetable: LessonResult) -> None:
    out = next(t.output for t in rw_pagetable.tests if t.key == "exploit_refused")
    assert out.startswith("the exploit worked: d0 read d1's secret")


def test_right_answers_with_wrong_counts_are_named_as_counts(tmp_path: Path, h01: Lesson) -> None:
    r = grade_text(tmp_path, h01, break_text(h01, "no_count"))
    own = next(t for t in r.tests if t.key == "own_frames")
    assert not own.passed
    assert own.rule == "lesson.counts"
    assert "as on Xen, but the frames differ: mfn 0x" in own.output
    assert "(Xen " in own.output


def test_a_raising_function_is_that_operations_outcome(tmp_path: Path, h01: Lesson) -> None:
    r = grade_text(tmp_path, h01, source.starter_source(h01))
    assert r.status == "graded"
    assert r.score == 0
    assert all("your get_page_from_l1e raised NotImplementedError" in t.output for t in r.tests)
    assert FUNCTION in r.message


def test_a_wrong_return_type_is_that_operations_outcome(tmp_path: Path, h01: Lesson) -> None:
    text = source.noop_source(h01).replace("return 0", "return 'no'")
    r = grade_text(tmp_path, h01, text)
    assert r.score == 0
    assert "returned str 'no', but it must return an int" in r.tests[0].output


def test_the_exploit_works_on_the_break_and_fails_on_the_fix(h01: Lesson) -> None:
    b = battery(h01, "exploit")
    plan = b.plan(plan_rng(3, H01, "exploit"))
    spec = importlib.util.spec_from_file_location("h01_break", h01.breaks()["rw_pagetable"])
    assert spec is not None
    assert spec.loader is not None
    broken = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(broken)
    seam.install(FUNCTION, broken.get_page_from_l1e)
    try:
        host, error = run_battery(b, plan)
    finally:
        seam.reset()
    mapped, forged, stolen = host.ops[-3:]
    assert not error
    assert mapped["out"]["status"] == forged["out"]["status"] == "ok"
    assert stolen["out"] == {"status": "ok", "value": plan["secret"]}
    host, _ = run_battery(b, plan)
    mapped, forged, stolen = host.ops[-3:]
    assert mapped["out"]["errno"] == "EBUSY"
    assert mapped["out"]["rule"] == "l1.writable-pagetable"
    assert forged["out"]["status"] == stolen["out"]["status"] == "fault"
    assert not host.xen.audit()


def test_a_battery_leaves_a_clean_audit_on_xen(h01: Lesson) -> None:
    b = battery(h01, "entries")
    host, error = run_battery(b, b.plan(plan_rng(11, H01, "entries")))
    assert not error
    assert not host.xen.audit()
    assert {op["out"]["status"] for op in host.ops} == {"ok", "refused"}


def test_every_label_a_check_names_is_on_an_operation(h01: Lesson) -> None:
    for t in h01.tests(hidden=True):
        b = t.workload
        assert isinstance(b, Battery)
        host, _ = run_battery(b, b.plan(plan_rng(0, H01, b.name)))
        c = Comparison(host, {}, [])
        t.check.fn(c, b.plan(plan_rng(0, H01, b.name)))  # no divergence: passes


def test_an_unknown_label_is_the_lessons_bug() -> None:
    c = Comparison(Host(Battery("b", lambda h, p: None, lambda r: {}, 1024, (), "")), {}, [])
    with pytest.raises(ValueError, match="no operation of the battery is labelled"):
        c.expect_agrees("no-such-case")


def _lines(ops: list[dict[str, Any]]) -> list[str]:
    return [json.dumps({"kind": "lab.op", "op": op}) for op in ops]


def test_a_report_of_other_operations_is_tampering(h01: Lesson) -> None:
    b = battery(h01, "exploit")
    host, _ = run_battery(b, b.plan(plan_rng(0, H01, "exploit")))
    assert parse_ops(_lines(host.ops), host.ops)[2]["out"] == host.ops[2]["out"]
    forged = [dict(op) for op in host.ops]
    forged[2]["call"] = "d0 something else"
    with pytest.raises(Tampered, match="not the battery's operation 2"):
        parse_ops(_lines(forged), host.ops)
    with pytest.raises(Tampered, match="operations, the battery has"):
        parse_ops(_lines(host.ops + host.ops), host.ops)
    odd = [dict(op) for op in host.ops]
    odd[0] = {**odd[0], "out": {"status": "ok", "value": [1, 2]}}
    with pytest.raises(Tampered, match="malformed outcome"):
        parse_ops(_lines(odd), host.ops)


def test_the_childs_copy_strips_the_function_and_its_private_helpers(h01: Lesson) -> None:
    text = (source.child_tree(h01) / "hypervisor" / "mm" / "l1.py").read_text(encoding="utf-8")
    assert "is yours to write" in text
    assert "L1_WRITABLE_PAGETABLE" not in text
    assert "L1_FOREIGN_FRAME" not in text
    assert "def _get_page_from_l1e_checked(" in text  # the name stays, its body is gone
    assert "def put_page_from_l1e(" in text
    assert "pg.count -= 1" in text


def test_solutions_carry_the_private_helpers_and_start_writes_a_starter(
    tmp_path: Path, h01: Lesson
) -> None:
    assert cli.main(["solutions", str(tmp_path / "ref")]) == 0
    ref = (tmp_path / "ref" / f"{H01}.py").read_text(encoding="utf-8")
    assert "def _get_page_from_l1e_checked(" in ref
    assert "import _get" not in ref
    assert cli.main(["start", str(tmp_path / "lab")]) == 0
    starter = (tmp_path / "lab" / f"{H01}.py").read_text(encoding="utf-8")
    assert "def get_page_from_l1e(xen: XenState, e: int, l1_owner: PvDomain" in starter
    assert "raise NotImplementedError('write me')" in starter


def test_a_handout_strips_the_hypervisor_reference_and_checks_with_xens_outcomes(
    tmp_path: Path, h01: Lesson
) -> None:
    out = tmp_path / "out"
    assert cli.main(["handout", str(out), "--release", H01]) == 0
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(out)}
    check = [sys.executable, "-m", "minikern", "lab", "check", H01, "--work", "lab"]
    done = subprocess.run(check, cwd=out, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "your get_page_from_l1e raised NotImplementedError" in done.stdout
    (out / "lab" / f"{H01}.py").write_text(source.solution_source(h01), encoding="utf-8")
    done = subprocess.run(check, cwd=out, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    l1 = (out / "hypervisor" / "mm" / "l1.py").read_text(encoding="utf-8")
    assert "is yours to write" in l1
    assert "L1_WRITABLE_PAGETABLE" not in l1
    assert not (tmp_path / "out" / "lessons" / H01 / "tests" / "hidden").exists()
    assert not (tmp_path / "out" / "lessons" / H01 / "breaks").exists()


def test_lab_break_draws_the_exploit_working(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["break", H01, "rw_pagetable"]) == 1
    out = capsys.readouterr().out
    assert "battery exploit" in out
    assert "it read" in out
    assert "page-faults" in out


TABLE_CHEAT = """
import json
from lessons.lab import testing

TABLE = json.loads({table!r})

def answer(self, i, call, touch, action, kind="call"):
    try:
        action()
    except BaseException:
        pass
    seen = TABLE[self.battery.name][len(self.ops)]
    full = (f"d{{i}} " if i >= 0 and len(self.battery.guests) > 1 else "") + call
    self.ops.append({{**seen, "i": len(self.ops), "call": full}})

testing.Host._op = answer

def get_page_from_l1e(xen, e, l1_owner, pg_owner):
    return 0
"""


def test_a_table_of_xens_public_answers_scores_zero_when_the_grader_redraws(
    tmp_path: Path, h01: Lesson
) -> None:
    from lessons.lab import grader

    public = h01.tests(hidden=False)
    runs = grader._runs(h01, public, grader.Options(seed=0))
    table = {run.attr: grader.trusted_run(h01, run).ops for run in runs}
    text = TABLE_CHEAT.format(table=json.dumps(table))
    at_zero = grade_text(tmp_path / "a", h01, text)
    assert at_zero.score == at_zero.max_score  # the public plan alone cannot tell
    graded = grade_text(tmp_path / "b", h01, text, hidden_seed=12345)
    assert all(not t.passed for t in graded.tests if not t.hidden)
    assert "with the plan drawn from the grader's seed 12345" in graded.tests[0].output
