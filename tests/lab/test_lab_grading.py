"""Grading lesson 04 end to end: the reference, the starter, the formats, bad submissions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lessons.lab import cli, report, source, workspace
from lessons.lab.lessons import Lesson, all_lessons
from lessons.lab.results import BAD_SUBMISSION, GradeResult
from lessons.lab.verify import verify_lesson
from tests.lab.conftest import grade_text, write


@pytest.mark.parametrize("lesson_id", [lesson.id for lesson in all_lessons()])
def test_verify_holds_for_every_lesson(lesson_id: str) -> None:
    from lessons.lab.lessons import load

    failures = [line for line, ok in verify_lesson(load(lesson_id), seed=7) if not ok]
    assert not failures


def test_reference_scores_full_marks_with_hidden_tests(
    tmp_path: Path, lesson: Lesson, reference_text: str
) -> None:
    r = grade_text(tmp_path, lesson, reference_text, hidden_seed=123)
    assert r.score == r.max_score == lesson.max_points(True)
    assert any(t.hidden for t in r.tests)


def test_starter_message_names_the_function_that_raised(
    tmp_path: Path, lesson: Lesson, starter_text: str
) -> None:
    r = grade_text(tmp_path, lesson, starter_text)
    assert r.score == 0
    assert "NotImplementedError" in r.message
    assert "minikern.build:pin_tree" in r.message


def test_child_tree_holds_no_reference_body(lesson: Lesson) -> None:
    tree = source.child_tree(lesson)
    steps = (tree / "minikern" / "build.py").read_text(encoding="utf-8")
    assert "pin_table(km, pfn, 4)" not in steps
    assert "is yours to write" in steps


def test_grade_prints_score_and_counts_and_exits_nonzero_below_full(
    tmp_path: Path, lesson: Lesson, starter_text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write(tmp_path / "work", lesson, starter_text)
    code = cli.main(["grade", "--submission", str(folder), "--lesson", lesson.id])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert lines[-2] == f"Score: 0/{lesson.max_points(False)}"
    assert lines[-1] == f"0 passed, {len(lesson.tests(False))} failed"
    assert any(line.startswith(f"== Test {lesson.number}.1 ") for line in lines)


def test_check_passes_the_reference_with_exit_zero(
    tmp_path: Path, lesson: Lesson, reference_text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write(tmp_path / "work", lesson, reference_text)
    assert cli.main(["check", lesson.id, "--work", str(folder)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith(" passed, 0 failed")


def test_gradescope_results_follow_the_contract(
    tmp_path: Path, lesson: Lesson, reference_text: str
) -> None:
    folder = write(tmp_path / "work", lesson, reference_text)
    out = tmp_path / "results.json"
    args = ["grade", "--submission", str(folder), "--lesson", lesson.id, "--hidden", "--seed", "5"]
    assert cli.main([*args, "--results", str(out), "--format", "gradescope"]) == 0
    data = json.loads(out.read_text())
    assert data["score"] == sum(t["score"] for t in data["tests"])
    assert data["extra_data"]["seed"] == 5
    assert data["extra_data"]["version"]
    for t in data["tests"]:
        assert t["status"] in ("passed", "failed")
        assert t["number"]
        assert t["output"]
        assert f"lesson:{lesson.id}" in t["tags"]
        assert t["visibility"] in ("visible", "after_published")
    assert {t["visibility"] for t in data["tests"]} == {"visible", "after_published"}


def test_zero_results_is_a_valid_gradescope_file() -> None:
    data = report.zero_results(3)
    assert data["score"] == 0
    assert data["tests"] == []
    assert data["extra_data"]["seed"] == 3


def test_prairielearn_is_ungradable_on_a_grader_error(
    tmp_path: Path, lesson: Lesson, reference_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lessons.lab import grader

    def broken(*args: object) -> None:
        raise RuntimeError("grader bug")

    monkeypatch.setattr(grader, "_grade", broken)
    r = grade_text(tmp_path, lesson, reference_text)
    data = report.prairielearn(GradeResult(lessons=[r]))
    assert r.status == "grader-error"
    assert data["gradable"] is False
    assert data["score"] == 0


def test_prairielearn_score_is_a_fraction(
    tmp_path: Path, lesson: Lesson, reference_text: str
) -> None:
    r = grade_text(tmp_path, lesson, reference_text)
    data = report.prairielearn(GradeResult(lessons=[r]))
    assert data["gradable"] is True
    assert data["score"] == 1.0
    assert {"name", "description", "points", "max_points", "message", "output"} <= set(
        data["tests"][0]
    )


BAD = {
    "syntax error": ("def pin_table(:\n", "syntax error"),
    "missing function": ("def pin_tree(km, kernel_l4, user_l4):\n    pass\n", "does not define"),
    "wrong signature": (
        "def pin_tree(km, pfn):\n    pass\ndef load_base(km, a, b):\n    pass\n",
        "must take the lesson's parameters",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_submission_gets_a_clear_message_and_zero(
    tmp_path: Path, lesson: Lesson, case: str
) -> None:
    text, words = BAD[case]
    r = grade_text(tmp_path, lesson, text)
    assert r.status == BAD_SUBMISSION
    assert words in r.message
    assert r.score == 0


def test_wrong_return_type_is_named(tmp_path: Path, lesson: Lesson, reference_text: str) -> None:
    text = reference_text.replace(
        "        pin_table(km, pfn, 4)",
        "        pin_table(km, pfn, 4)\n    return 1",
    )
    r = grade_text(tmp_path, lesson, text)
    assert r.score == 0
    assert "must return None" in r.message


def test_non_utf8_missing_file_folder_and_outside_symlink(tmp_path: Path, lesson: Lesson) -> None:
    from lessons.lab.grader import Options, grade_lesson

    folder = tmp_path / "s"
    folder.mkdir()
    assert "missing" in grade_lesson(lesson, folder, Options()).message
    assert "does not exist" in grade_lesson(lesson, tmp_path / "nope", Options()).message
    (folder / f"{lesson.id}.py").write_bytes(b"x = '\xff'\n")
    assert "not UTF-8" in grade_lesson(lesson, folder, Options()).message
    (folder / f"{lesson.id}.py").unlink()
    outside = tmp_path / "elsewhere.py"
    outside.write_text("x = 1\n")
    (folder / f"{lesson.id}.py").symlink_to(outside)
    assert "outside the submission" in grade_lesson(lesson, folder, Options()).message


def test_start_solutions_and_list(
    tmp_path: Path, lesson: Lesson, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "lab"
    assert cli.main(["start", str(work)]) == 0
    assert (work / f"{lesson.id}.py").read_text() == source.starter_source(lesson)
    assert cli.main(["solutions", str(tmp_path / "ref")]) == 0
    assert (tmp_path / "ref" / f"{lesson.id}.py").read_text() == source.solution_source(lesson)
    assert cli.main(["list", "--work", str(work)]) == 0
    assert lesson.id in capsys.readouterr().out


def test_hint_follows_the_rule_last_failed(
    tmp_path: Path, lesson: Lesson, capsys: pytest.CaptureFixture[str]
) -> None:
    work = write(
        tmp_path / "lab",
        lesson,
        workspace.break_source(lesson, lesson.path / "breaks" / "pin_as_l1.py"),
    )
    assert cli.main(["check", lesson.id, "--work", str(work)]) == 1
    capsys.readouterr()
    assert cli.main(["hint", lesson.id, "--work", str(work)]) == 0
    assert cli.main(["hint", lesson.id, "--work", str(work)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("hint 1/2 for l1.writable-pagetable")
    assert out[1].startswith("hint 2/2 for l1.writable-pagetable")


def test_hint_use_is_recorded_in_the_results_extra_data(tmp_path: Path, lesson: Lesson) -> None:
    work = write(
        tmp_path / "lab",
        lesson,
        workspace.break_source(lesson, lesson.path / "breaks" / "pin_as_l1.py"),
    )
    cli.main(["check", lesson.id, "--work", str(work)])
    cli.main(["hint", lesson.id, "--work", str(work)])
    out = tmp_path / "results.json"
    cli.main(
        [
            "grade",
            "--work",
            str(work),
            "--lesson",
            lesson.id,
            "--results",
            str(out),
            "--format",
            "gradescope",
        ]
    )
    hints = json.loads(out.read_text())["extra_data"]["hints"]
    assert hints == {lesson.id: {"l1.writable-pagetable": 1}}
