"""The engines courses run: Gradescope, PrairieLearn, GitHub Actions, the gradebook,
and the student-facing folders (handout, run, break)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import attrs
import pytest

from lessons.lab import bundle, cli, diagnosis, report, source, workspace
from lessons.lab.lessons import Lesson, all_lessons

ENV = {**os.environ, "MINIKERN_PYTHON": sys.executable}
STUDENT = "ada@example.edu"
"""The identity the engines' metadata names (diagnosis lessons are graded on its instance)."""


def reference(each: Lesson) -> str:
    """A lesson's full-marks answer: the reference source, or STUDENT's diagnosis answers."""
    if each.track == "diagnosis":
        return diagnosis.solution_text(each, STUDENT)
    return source.solution_source(each)


def starter(each: Lesson) -> str:
    if each.track == "diagnosis":
        return diagnosis.template_text(each)
    return source.starter_source(each)


def file_name(each: Lesson) -> str:
    return f"{each.id}.toml" if each.track == "diagnosis" else f"{each.id}.py"


@pytest.fixture(scope="session")
def gradescope_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bundle.gradescope(tmp_path_factory.mktemp("gs") / "autograder.zip", deps=False)


def test_gradescope_zip_has_setup_and_run_autograder_at_its_root(gradescope_zip: Path) -> None:
    names = zipfile.ZipFile(gradescope_zip).namelist()
    assert "setup.sh" in names
    assert "run_autograder" in names
    wheel = next(n for n in names if n.startswith("wheels/minikern-"))
    with zipfile.ZipFile(gradescope_zip) as z, z.open(wheel) as f:
        inner = zipfile.ZipFile(f).namelist()
    assert any(n.endswith("04_pin_and_load/tests/hidden/test_many_switches.py") for n in inner)
    assert "python3.11" in zipfile.ZipFile(gradescope_zip).read("setup.sh").decode()


def _autograder(tmp: Path, gradescope_zip: Path, text_of: dict[str, str]) -> dict[str, object]:
    root = tmp / "autograder"
    (root / "submission").mkdir(parents=True)
    zipfile.ZipFile(gradescope_zip).extractall(root / "source")
    meta = {"id": 1, "users": [{"email": STUDENT, "id": 7, "name": "Ada"}]}
    (root / "submission_metadata.json").write_text(json.dumps(meta))
    by_id = {each.id: each for each in all_lessons()}
    for lesson_id, text in text_of.items():
        (root / "submission" / file_name(by_id[lesson_id])).write_text(text)
    script = root / "source" / "run_autograder"
    script.chmod(0o755)
    env = {**ENV, "AUTOGRADER_ROOT": str(root)}
    subprocess.run([str(script)], env=env, check=True, capture_output=True, timeout=240)
    data: dict[str, object] = json.loads((root / "results" / "results.json").read_text())
    return data


def answered_by_reference() -> set[str]:
    """Half of each track's lessons, alternately: the one Gradescope run below gets the
    reference for these and the starter for the others."""
    by_track: dict[str, list[Lesson]] = {}
    for each in all_lessons():
        by_track.setdefault(each.track, []).append(each)
    return {each.id for lessons in by_track.values() for each in lessons[::2]}


@attrs.frozen
class Autograded:
    """What one Gradescope run reported: each lesson's tests by lesson id, and the output
    shown to the student."""

    tests: dict[str, list[dict[str, Any]]]
    output: str


@pytest.fixture(scope="module")
def autograded(tmp_path_factory: pytest.TempPathFactory, gradescope_zip: Path) -> Autograded:
    """One run of ``run_autograder`` on a submission of reference and starter answers:
    each lesson's tests in its results, by lesson id."""
    ref = answered_by_reference()
    data = _autograder(
        tmp_path_factory.mktemp("autograder"),
        gradescope_zip,
        {each.id: (reference if each.id in ref else starter)(each) for each in all_lessons()},
    )
    tests = data["tests"]
    assert isinstance(tests, list)
    by_lesson: dict[str, list[dict[str, Any]]] = {}
    for t in tests:
        lesson_id = next(tag for tag in t["tags"] if tag.startswith("lesson:"))[7:]
        by_lesson.setdefault(lesson_id, []).append(t)
    return Autograded(by_lesson, str(data["output"]))


def test_run_autograder_gives_the_reference_full_marks(autograded: Autograded) -> None:
    ref = answered_by_reference()
    assert all(autograded.tests.get(i) for i in ref)
    lost = [t["name"] for i in ref for t in autograded.tests[i] if t["score"] != t["max_score"]]
    assert lost == []


def test_run_autograder_gives_the_starter_zero(autograded: Autograded) -> None:
    starters = {each.id for each in all_lessons()} - answered_by_reference()
    assert all(autograded.tests.get(i) for i in starters)
    scored = [t["name"] for i in starters for t in autograded.tests[i] if t["score"] != 0]
    assert scored == []


def test_run_autograder_shows_each_diagnosis_lesson_short_of_full_marks_its_instance(
    autograded: Autograded,
) -> None:
    short = [
        each.id
        for each in all_lessons()
        if each.track == "diagnosis" and each.id not in answered_by_reference()
    ]
    assert short
    assert [i for i in short if f"your instance of {i}" not in autograded.output] == []


def test_prairielearn_entrypoint_grades_slash_grade(tmp_path: Path, lesson: Lesson) -> None:
    out = bundle.prairielearn(tmp_path / "pl", deps=False)
    assert (out / "Dockerfile").is_file()
    info = json.loads((out / "info.json").read_text())
    assert info["externalGradingOptions"]["entrypoint"] == "/minikern/entrypoint"
    grade = tmp_path / "grade"
    (grade / "student").mkdir(parents=True)
    (grade / "data").mkdir()
    (grade / "data" / "data.json").write_text(json.dumps({"params": {"student": STUDENT}}))
    for each in all_lessons():
        (grade / "student" / file_name(each)).write_text(reference(each))
    (grade / "student" / f"{lesson.id}.py").write_text(source.starter_source(lesson))
    env = {**ENV, "GRADE_ROOT": str(grade)}
    subprocess.run([str(out / "entrypoint")], env=env, check=True, capture_output=True, timeout=240)
    data = json.loads((grade / "results" / "results.json").read_text())
    assert data["gradable"] is True
    assert 0 < data["score"] < 1
    lost = [t for t in data["tests"] if t["points"] < t["max_points"]]
    assert lost
    assert all(t["name"].startswith(lesson.number + ".") for t in lost)


def test_github_workflow_grades_each_push_and_summarises(tmp_path: Path) -> None:
    path = bundle.github(tmp_path)
    text = path.read_text()
    assert "on: [push]" in text
    assert "minikern lab grade" in text
    assert "GITHUB_STEP_SUMMARY" in text
    table = report.markdown(
        {
            "score": 1,
            "max_score": 2,
            "lessons": [
                {
                    "tests": [
                        {
                            "number": "04.1",
                            "name": "pin",
                            "passed": True,
                            "points": 1,
                            "max_points": 1,
                        },
                        {
                            "number": "04.2",
                            "name": "load",
                            "passed": False,
                            "points": 0,
                            "max_points": 1,
                        },
                    ]
                }
            ],
        }
    )
    assert "| 04.2 load | FAIL | 0/1 |" in table
    assert "Score: 1/2" in table


def test_gradebook_grades_each_submission_and_survives_a_bad_one(
    tmp_path: Path, lesson: Lesson, capsys: pytest.CaptureFixture[str]
) -> None:
    subs = tmp_path / "subs"
    for name, text in (
        ("alice", source.solution_source(lesson)),
        ("bob", source.starter_source(lesson)),
        ("carol", "def pin_tree(:\n"),
    ):
        (subs / name).mkdir(parents=True)
        (subs / name / f"{lesson.id}.py").write_text(text)
    out = tmp_path / "grades.csv"
    assert cli.main(["gradebook", str(subs), "--out", str(out), "--jobs", "2"]) == 0
    rows = {r["submission"]: r for r in csv.DictReader(out.open())}
    assert set(rows) == {"alice", "bob", "carol"}
    assert int(rows["alice"][lesson.id]) == lesson.max_points(False)
    assert int(rows["bob"][lesson.id]) == 0
    assert "bad-submission" in rows["carol"]["status"]
    summary = capsys.readouterr().out
    assert f"{lesson.id}: 1/3 full marks" in summary


def test_handout_strips_the_released_functions_and_hides_hidden_tests(
    tmp_path: Path, lesson: Lesson
) -> None:
    out = tmp_path / "handout"
    workspace.handout(out, [lesson.id])
    build = (out / "minikern" / "build.py").read_text()
    assert "is yours to write" in build
    assert "pin_table(km, pfn, 4)" not in build
    assert not (out / "lessons" / lesson.id / "tests" / "hidden").exists()
    assert not (out / "lessons" / lesson.id / "breaks").exists()
    assert (out / "lab" / f"{lesson.id}.py").read_text() == source.starter_source(lesson)
    others = [each.id for each in all_lessons() if each.id != lesson.id]
    assert all(not (out / "lessons" / other).exists() for other in others)


def test_break_draws_the_run_and_loses_points(
    lesson: Lesson, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["break", lesson.id]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in lesson.breaks())
    assert cli.main(["break", lesson.id, "pin_as_l1"]) == 1
    out = capsys.readouterr().out
    assert "hypercalls" in out
    assert "FAIL" in out


def test_a_handout_grades_lesson_n_on_the_students_own_earlier_answers(tmp_path: Path) -> None:
    out = tmp_path / "handout"
    ids = workspace.handout(out)
    first, second = ids[0], ids[1]
    env = {**ENV, "PYTHONPATH": str(out)}
    check = [sys.executable, "-m", "minikern", "lab", "check", second, "--work", "lab"]
    answers = {lesson.id: source.solution_source(lesson) for lesson in all_lessons()}
    for lesson_id in ids:
        (out / "lab" / f"{lesson_id}.py").write_text(answers[lesson_id])
    done = subprocess.run(check, cwd=out, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    (out / "lab" / f"{first}.py").unlink()
    done = subprocess.run(check, cwd=out, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "is yours to write" in done.stdout
