"""The exploit demonstrations of h02_page_types and h03_validate_l2: each attack, written as
a guest in the lessons' batteries, reaches its goal with the break installed and is stopped
by Xen's errno (or a page fault) on the reference; the leaks the breaks cause are what the
audit finds."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from lessons.lab import seam
from lessons.lab.lessons import LESSONS_DIR, Lesson, load, load_file
from lessons.lab.testing import Battery, Host, plan_rng, run_battery
from tests.lab.conftest import grade_text

H02, H03 = "h02_page_types", "h03_validate_l2"
Op = dict[str, Any]


def lesson_battery(lesson: Lesson, name: str) -> Battery:
    for path in lesson.test_files(True):
        found = load_file(path).__dict__.get(name)
        if isinstance(found, Battery):
            return found
    raise LookupError(name)


def broken(lesson: Lesson, name: str) -> dict[str, Callable[..., Any]]:
    """The functions break ``name`` of ``lesson`` defines, by lesson-function name."""
    spec = importlib.util.spec_from_file_location(f"{lesson.id}_{name}", lesson.breaks()[name])
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {
        f: getattr(module, seam.bare_name(f))
        for f in lesson.functions
        if hasattr(module, seam.bare_name(f))
    }


def run(
    lesson_id: str, battery: str, brk: str | None, seed: int = 3
) -> tuple[Host, dict[str, Any]]:
    """Battery ``battery`` of the lesson on the reference, or with break ``brk``."""
    lesson = load(lesson_id)
    b = lesson_battery(lesson, battery)
    plan = b.plan(plan_rng(seed, lesson_id, battery))
    for name, fn in (broken(lesson, brk) if brk else {}).items():
        seam.install(name, fn)
    try:
        host, error = run_battery(b, plan)
    finally:
        seam.reset()
    assert not error
    return host, plan


def labelled(host: Host, label: str) -> list[Op]:
    return [op for op in host.ops if label in op["labels"]]


def outcomes(ops: list[Op]) -> list[tuple[Any, ...]]:
    return [(op["out"]["status"], op["out"].get("errno"), op["out"].get("rule")) for op in ops]


# -- h02 ---------------------------------------------------------------------------------


def test_h02_a_writable_frame_hooked_as_an_l1_reads_d1s_secret_on_the_break() -> None:
    host, plan = run(H02, "exploit", "type_change_at_nonzero_count")
    hook, forge, steal = labelled(host, "exploit-writable-l1")
    assert outcomes([hook, forge]) == [("ok", None, None)] * 2
    assert steal["out"] == {"status": "ok", "value": plan["secret"]}
    assert any(v.check == "safety" for v in host.xen.audit())


def test_h02_xen_refuses_to_hook_a_writable_frame_as_an_l1() -> None:
    host, _ = run(H02, "exploit", None)
    hook, forge, steal = labelled(host, "exploit-writable-l1")
    assert outcomes([hook]) == [("refused", "EINVAL", "type.writable-mapped")]
    assert forge["out"]["status"] == "ok"  # a plain store into d0's own writable page
    assert steal["out"]["status"] == "fault"
    assert not host.xen.audit()


def test_h02_a_stale_writable_translation_rewrites_a_pinned_l1_on_the_break() -> None:
    host, plan = run(H02, "exploit", "no_flush_on_type_change")
    ops = labelled(host, "exploit-stale-tlb")
    assert [op["out"]["status"] for op in ops] == ["ok"] * 5 + ["ok"]
    assert ops[-1]["out"]["value"] == plan["secret"]


def test_h02_xen_flushes_the_stale_translation_when_the_frame_becomes_an_l1() -> None:
    host, _ = run(H02, "exploit", None)
    fill, unmap, pin, forge, hook, steal = labelled(host, "exploit-stale-tlb")
    assert outcomes([fill, unmap, pin, hook]) == [("ok", None, None)] * 4
    assert forge["out"] == {"status": "fault", "code": 2}  # not present, write
    assert steal["out"]["status"] == "fault"
    assert not host.xen.audit()


def test_h02_no_devalidation_leaks_references_the_audit_counts() -> None:
    host, _ = run(H02, "types", "no_devalidate_on_last_put")
    audits = [op["out"]["value"] for op in host.ops if op["call"] == "audit"]
    assert audits[0] == 0
    assert audits[-1] > 0
    assert {"general-count", "type-count"} <= {v.check for v in host.xen.audit()}
    clean, _ = run(H02, "types", None)
    assert {op["out"]["value"] for op in clean.ops if op["call"] == "audit"} == {0}


# -- h03 ---------------------------------------------------------------------------------


def test_h03_a_refused_l2_drops_a_live_l1_and_d0_reads_d1s_secret_on_the_break() -> None:
    host, plan = run(H03, "exploit", "rollback_one_too_many")
    ops = labelled(host, "exploit-drop-live-l1")
    pin, remap, forge, steal = ops[-4:]
    assert outcomes([pin]) == [("refused", "EINVAL", "entry.disallowed-flags")]
    assert outcomes([remap, forge]) == [("ok", None, None)] * 2
    assert steal["out"] == {"status": "ok", "value": plan["secret"]}


def test_h03_xen_keeps_the_live_l1_typed_and_refuses_to_map_it_writable() -> None:
    host, _ = run(H03, "exploit", None)
    pin, remap, forge, steal = labelled(host, "exploit-drop-live-l1")[-4:]
    assert outcomes([pin, remap]) == [
        ("refused", "EINVAL", "entry.disallowed-flags"),
        ("refused", "EBUSY", "l1.writable-pagetable"),
    ]
    assert forge["out"]["status"] == steal["out"]["status"] == "fault"
    assert not host.xen.audit()


def test_h03_a_writable_frame_behind_an_empty_slot_reads_d1s_secret_on_the_break() -> None:
    host, plan = run(H03, "exploit", "stops_at_empty_slot")
    hook, forge, steal = labelled(host, "exploit-behind-a-hole")[-3:]
    assert outcomes([hook, forge]) == [("ok", None, None)] * 2
    assert steal["out"] == {"status": "ok", "value": plan["secret"]}


def test_h03_xen_checks_the_slot_after_the_hole_and_refuses_the_l2() -> None:
    host, _ = run(H03, "exploit", None)
    hook, _forge, steal = labelled(host, "exploit-behind-a-hole")[-3:]
    assert outcomes([hook]) == [("refused", "EINVAL", "type.writable-mapped")]
    assert steal["out"]["status"] == "fault"


@pytest.mark.parametrize("brk", [None, "no_rollback"])
def test_h03_without_rollback_the_frame_stays_an_l1_for_good(brk: str | None) -> None:
    host, _ = run(H03, "exploit", brk)
    pin, remap, audit = labelled(host, "leak-keeps-frame")[-3:]
    assert outcomes([pin]) == [("refused", "EINVAL", "entry.target-not-owned")]
    if brk is None:
        assert remap["out"]["status"] == "ok"
        assert audit["out"]["value"] == 0
        return
    assert outcomes([remap]) == [("refused", "EBUSY", "l1.writable-pagetable")]
    assert audit["out"]["value"] > 0
    assert {v.check for v in host.xen.audit()} == {"general-count", "type-count"}


# -- hostile submissions ---------------------------------------------------------------------

CHECKOUT = str(LESSONS_DIR.parent)


def _from_disk(module: str, functions: tuple[str, ...]) -> str:
    """A submission that finds a copy of ``module``'s source on disk, execs the reference
    definitions of ``functions`` in the live module's namespace and answers with them."""
    rel = module.replace(".", "/") + ".py"
    calls = "\n".join(f"{f} = lambda *a: NS['{f}'](*a)" for f in functions)
    return f"""
import ast, glob, importlib
NS = dict(vars(importlib.import_module({module!r})))
WANTED = {functions!r}
for path in glob.glob({CHECKOUT!r} + "/{rel}") + glob.glob("/work/*/*/{rel}"):
    try:
        tree = ast.parse(open(path).read())
    except Exception:
        continue
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in WANTED]
    for n in defs:
        n.decorator_list = []
    if len(defs) == len(WANTED) and all("NotImplementedError" not in ast.unparse(n) for n in defs):
        exec(compile(ast.Module(defs, []), "ref", "exec"), NS)
        break
{calls}
"""


HOSTILE = {
    (H02, "reads-the-reference-from-disk"): _from_disk(
        "hypervisor.mm.refs", ("get_page_type", "put_page_type")
    ),
    (H03, "reads-the-reference-from-disk"): _from_disk(
        "hypervisor.mm.upper", ("promote_l2_table",)
    ),
    (H03, "calls-the-dispatch-table"): """
from hypervisor.mm import refs
from hypervisor.mm.frames import PageType

def promote_l2_table(xen, mfn, pg):
    return refs.PROMOTE[PageType.L2](xen, mfn, pg)
""",
}


@pytest.mark.parametrize("key", sorted(HOSTILE), ids=lambda k: f"{k[0][:3]}-{k[1]}")
def test_hostile_submission_scores_zero(tmp_path: Path, key: tuple[str, str]) -> None:
    lesson = attrs.evolve(load(key[0]), timeout_s=10)
    r = grade_text(tmp_path, lesson, "from __future__ import annotations\n" + HOSTILE[key])
    assert r.status in ("graded", "timeout"), r.message
    assert r.score == 0, [t.name for t in r.tests if t.passed]
