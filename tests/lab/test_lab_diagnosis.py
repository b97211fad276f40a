"""The diagnosis track end to end: instances made from identities, answers in
``<id>.toml`` graded key by key, identities read from the engines' metadata, the
lab verbs, and the result formats. Grading parses TOML only: nothing here runs
code a student wrote."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lessons.lab import cli, diagnosis, report, workspace
from lessons.lab.grader import Options, grade_lesson
from lessons.lab.lessons import Lesson, all_lessons, load
from lessons.lab.results import BAD_SUBMISSION, GradeResult

LESSON = "d01_refused_pin"
ADA, GRACE = "ada@example.edu", "grace@example.edu"


@pytest.fixture(scope="module")
def d01() -> Lesson:
    return load(LESSON)


def answer(folder: Path, lesson: Lesson, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{lesson.id}.toml").write_text(text, encoding="utf-8")
    return folder


def grade(folder: Path, lesson: Lesson, student: str | None = ADA) -> GradeResult:
    result = GradeResult()
    result.lessons = [grade_lesson(lesson, folder, Options(student=student))]
    return result


def test_there_are_four_diagnosis_lessons_with_answer_keys() -> None:
    found = [lesson for lesson in all_lessons() if lesson.track == "diagnosis"]
    assert [lesson.id for lesson in found][:4] == [
        "d01_refused_pin",
        "d02_stale_tlb",
        "d03_teardown_leak",
        "d04_pae_pin_l4",
    ]
    for lesson in found:
        assert lesson.functions == ()
        assert set(lesson.answer) == {t.check.answer_key for t in lesson.tests(False)}  # type: ignore[attr-defined]


def test_a_students_own_answers_score_full_marks(tmp_path: Path, d01: Lesson) -> None:
    folder = answer(tmp_path, d01, diagnosis.solution_text(d01, ADA))
    r = grade(folder, d01).lessons[0]
    assert r.score == r.max_score == d01.max_points(False) > 0
    assert "identity from --student" in r.message


def test_the_template_scores_zero(tmp_path: Path, d01: Lesson) -> None:
    r = grade(answer(tmp_path, d01, diagnosis.template_text(d01)), d01).lessons[0]
    assert r.score == 0
    assert all("is not answered" in t.output for t in r.tests)


def test_one_wrong_key_costs_that_keys_points_only(tmp_path: Path, d01: Lesson) -> None:
    step = diagnosis.generate(d01, ADA).truth["step"]
    text = diagnosis.solution_text(d01, ADA).replace(step, "minikern.recipe:pin_table")
    r = grade(answer(tmp_path, d01, text), d01).lessons[0]
    lost = [t for t in r.tests if not t.passed]
    assert [t.rule for t in lost] == ["diag.step"]
    assert r.score == r.max_score - lost[0].max_points
    assert step not in lost[0].output  # the failure never tells the answer


def test_errno_is_matched_without_regard_to_case(tmp_path: Path, d01: Lesson) -> None:
    errno = diagnosis.generate(d01, ADA).truth["errno"]
    text = diagnosis.solution_text(d01, ADA).replace(f'"{errno}"', f'"{errno.lower()}"')
    assert errno.lower() in text
    r = grade(answer(tmp_path, d01, text), d01).lessons[0]
    assert r.score == r.max_score


@pytest.mark.parametrize("lesson_id", ["d01_refused_pin", "d02_stale_tlb"])
def test_instances_differ_between_students(lesson_id: str) -> None:
    lesson = load(lesson_id)
    ada, grace = diagnosis.generate(lesson, ADA), diagnosis.generate(lesson, GRACE)
    assert ada.seed != grace.seed
    assert ada.truth != grace.truth
    assert ada.rows != grace.rows


def test_a_student_always_gets_the_same_instance(d01: Lesson) -> None:
    diagnosis._generate.cache_clear()
    first = diagnosis.generate(d01, ADA)
    diagnosis._generate.cache_clear()
    again = diagnosis.generate(d01, "  Ada@Example.EDU ")
    assert (again.seed, again.truth, again.rows) == (first.seed, first.truth, first.rows)


def test_another_students_answers_lose_points(tmp_path: Path, d01: Lesson) -> None:
    folder = answer(tmp_path, d01, diagnosis.solution_text(d01, ADA))
    r = grade(folder, d01, GRACE).lessons[0]
    assert r.score < r.max_score


def test_the_course_salt_changes_every_instance(
    d01: Lesson, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = diagnosis.seed_of(d01.id, ADA, diagnosis.course_salt())
    monkeypatch.setenv("MINIKERN_COURSE_SALT", "fall-2027")
    assert diagnosis.course_salt() == "fall-2027"
    assert diagnosis.seed_of(d01.id, ADA, diagnosis.course_salt()) != before


def test_the_refused_batch_is_shown_without_its_verdicts(d01: Lesson) -> None:
    inst = diagnosis.generate(d01, ADA)
    refused = next(r for r in inst.rows if r.number == inst.truth["operation"])
    assert refused.hidden
    assert all(r.hidden for r in inst.rows if r.number > refused.number and r.verdict)
    shown = [r for r in inst.rows if r.number and r.verdict and not r.hidden]
    assert shown
    assert all(r.verdict == "ok" for r in shown)


# -- identities ---------------------------------------------------------------------------


def gradescope_layout(root: Path, users: list[dict[str, object]]) -> Path:
    """``root`` laid out as Gradescope's /autograder: submission/ and its metadata."""
    (root / "submission").mkdir(parents=True)
    meta = {"id": 1, "users": users, "assignment": {"title": "minikern"}}
    (root / "submission_metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    return root / "submission"


def test_identity_comes_from_gradescope_submission_metadata(tmp_path: Path, d01: Lesson) -> None:
    folder = gradescope_layout(tmp_path / "autograder", [{"email": ADA, "id": 7, "name": "A"}])
    answer(folder, d01, diagnosis.solution_text(d01, ADA))
    r = grade(folder, d01, student=None).lessons[0]
    assert r.score == r.max_score
    assert "Gradescope submission_metadata.json" in r.message


def test_a_gradescope_group_shares_one_instance(tmp_path: Path) -> None:
    folder = gradescope_layout(tmp_path / "ag", [{"email": GRACE}, {"email": ADA.upper()}])
    assert diagnosis.identity_of(folder) == (
        f"{ADA},{GRACE}",
        "Gradescope submission_metadata.json",
    )


def test_identity_comes_from_prairielearn_data_json(tmp_path: Path, d01: Lesson) -> None:
    (tmp_path / "grade" / "data").mkdir(parents=True)
    folder = tmp_path / "grade" / "student"
    data = {"params": {"student": GRACE}, "variant_seed": 99, "submitted_answers": {}}
    (tmp_path / "grade" / "data" / "data.json").write_text(json.dumps(data), encoding="utf-8")
    answer(folder, d01, diagnosis.solution_text(d01, GRACE))
    r = grade(folder, d01, student=None).lessons[0]
    assert r.score == r.max_score
    assert "PrairieLearn" in r.message


def test_no_identity_scores_zero_with_a_message(tmp_path: Path, d01: Lesson) -> None:
    folder = answer(tmp_path / "sub", d01, diagnosis.solution_text(d01, ADA))
    r = grade(folder, d01, student=None).lessons[0]
    assert r.score == 0
    assert r.status == BAD_SUBMISSION
    assert "--student" in r.message


def test_metadata_inside_the_submission_is_not_believed(tmp_path: Path, d01: Lesson) -> None:
    folder = answer(tmp_path / "sub", d01, diagnosis.solution_text(d01, ADA))
    (folder / "submission_metadata.json").write_text(json.dumps({"users": [{"email": ADA}]}))
    assert diagnosis.identity_of(folder) is None


@pytest.mark.parametrize(
    "meta",
    ["not json", "[]", '{"users": "ada"}', '{"users": [{"email": ["x"]}]}', '{"users": []}'],
)
def test_malformed_gradescope_metadata_is_no_identity(tmp_path: Path, meta: str) -> None:
    (tmp_path / "submission").mkdir()
    (tmp_path / "submission_metadata.json").write_text(meta)
    assert diagnosis.identity_of(tmp_path / "submission") is None


# -- bad answer files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("operation = [", "is not TOML"),
        ('operation = "98"\n', "operation must be int"),
        ("step = 3\n", "step must be str"),
        ("operation = 1.5\n", "operation must be int"),
        ("operation = true\n", "operation must be int"),
    ],
)
def test_a_bad_answer_file_scores_zero_with_a_message(
    tmp_path: Path, d01: Lesson, text: str, says: str
) -> None:
    r = grade(answer(tmp_path, d01, text), d01).lessons[0]
    assert r.score == 0
    assert r.status == BAD_SUBMISSION
    assert says in r.message


def test_a_missing_answer_file_says_how_to_make_one(tmp_path: Path, d01: Lesson) -> None:
    tmp_path.joinpath("sub").mkdir()
    r = grade(tmp_path / "sub", d01).lessons[0]
    assert r.score == 0
    assert "minikern lab start" in r.message


def test_unknown_keys_are_ignored(tmp_path: Path, d01: Lesson) -> None:
    text = diagnosis.solution_text(d01, ADA) + "\n[notes]\nwhy = 'because'\n"
    r = grade(answer(tmp_path, d01, text), d01).lessons[0]
    assert r.score == r.max_score


# -- the verbs ---------------------------------------------------------------------------------


def test_lab_diagnose_draws_the_instance_with_verdicts_hidden(
    tmp_path: Path, d01: Lesson, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "lab"
    work.mkdir()
    assert cli.main(["diagnose", LESSON, "--student", ADA, "--work", str(work)]) == 0
    out = capsys.readouterr().out
    inst = diagnosis.generate(d01, ADA)
    assert "MMUEXT_PIN_L4_TABLE" in out
    assert "?" in out
    assert inst.truth["rule"] not in out  # the verdict is the question
    assert "operation = 0" in out  # the template
    assert workspace.State(work).data["student"] == ADA


def test_lab_diagnose_without_an_identity_asks_for_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["diagnose", LESSON, "--work", str(tmp_path)]) == 2
    assert "--student" in capsys.readouterr().out


def test_lab_start_writes_toml_templates(tmp_path: Path, d01: Lesson) -> None:
    workspace.start(tmp_path / "lab", [d01])
    text = (tmp_path / "lab" / f"{LESSON}.toml").read_text()
    assert text == diagnosis.template_text(d01)
    assert set(tomllib.loads(text)) == set(d01.answer)


def test_lab_solutions_for_a_student_grade_full_marks_with_lab_check(
    tmp_path: Path, d01: Lesson, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ref"
    assert cli.main(["solutions", str(out), "--student", ADA]) == 0
    assert (out / f"{LESSON}.toml").is_file()
    assert (out / "04_pin_and_load.py").is_file()
    code = cli.main(["check", LESSON, "--work", str(out), "--student", ADA])
    assert code == 0, capsys.readouterr().out


def test_lab_check_uses_the_identity_diagnose_saved(
    tmp_path: Path, d01: Lesson, capsys: pytest.CaptureFixture[str]
) -> None:
    work = answer(tmp_path / "lab", d01, diagnosis.solution_text(d01, GRACE))
    cli.main(["diagnose", LESSON, "--student", GRACE, "--work", str(work)])
    assert cli.main(["check", LESSON, "--work", str(work)]) == 0
    full = d01.max_points(False)
    assert f"Score: {full}/{full}" in capsys.readouterr().out


def test_gradebook_takes_each_subfolders_name_as_its_identity(
    tmp_path: Path, d01: Lesson, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lessons.lab import gradebook

    monkeypatch.setattr(gradebook, "all_lessons", lambda: [d01])
    subs = tmp_path / "subs"
    answer(subs / ADA, d01, diagnosis.solution_text(d01, ADA))
    answer(subs / GRACE, d01, diagnosis.solution_text(d01, ADA))  # copied from ada
    out = tmp_path / "grades.csv"
    assert gradebook.run(subs, out, jobs=1) == 0
    rows = {r["submission"]: r for r in csv.DictReader(out.open())}
    assert int(rows[ADA][LESSON]) == d01.max_points(False)
    assert int(rows[GRACE][LESSON]) < d01.max_points(False)


def test_results_formats_carry_a_diagnosis_lesson(tmp_path: Path, d01: Lesson) -> None:
    text = diagnosis.solution_text(d01, ADA).replace("level = ", "level = 1 + ")
    result = grade(answer(tmp_path, d01, diagnosis.solution_text(d01, ADA)), d01)
    gs = report.gradescope(result)
    assert gs["score"] == d01.max_points(False)
    assert {t["status"] for t in gs["tests"]} == {"passed"}
    assert all(t["number"].startswith("d01.") for t in gs["tests"])
    pl = report.prairielearn(result)
    assert pl["score"] == 1.0
    assert pl["gradable"] is True
    assert result.to_json()["lessons"][0]["id"] == LESSON
    bad = grade(answer(tmp_path / "b", d01, text), d01)
    assert report.prairielearn(bad)["score"] == 0.0


def test_a_break_is_made_concrete_per_student(d01: Lesson) -> None:
    path = d01.breaks()["batch_not_entry"]
    got = tomllib.loads(diagnosis.apply_break(d01, ADA, path))
    truth = diagnosis.generate(d01, ADA).truth
    assert got["operation"] == truth["operation"] - 1
    assert got["level"] == 4
    assert got["step"] == truth["step"]


def test_lab_break_lists_the_wrong_answers_and_grades_one(
    d01: Lesson, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["break", LESSON]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in d01.breaks())
    assert "blames the pin" in listed
    assert cli.main(["break", LESSON, "blames_the_pin", "--student", GRACE]) == 1
    out = capsys.readouterr().out
    assert "rule: diag.step" in out
    assert "minikern.recipe:pin_table" in out


def test_lab_run_points_a_diagnosis_lesson_at_diagnose(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["run", LESSON]) == 2
    assert f"minikern lab diagnose {LESSON}" in capsys.readouterr().out


def test_grading_a_submission_short_of_full_marks_shows_the_instance(
    tmp_path: Path, d01: Lesson, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = answer(tmp_path / "sub", d01, diagnosis.template_text(d01))
    argv = ["grade", "--submission", str(folder), "--lesson", LESSON, "--student", ADA]
    assert cli.main(argv) == 1
    out = capsys.readouterr().out
    assert f"your instance of {LESSON}" in out
    assert "MMUEXT_PIN_L4_TABLE" in out
    answer(folder, d01, diagnosis.solution_text(d01, ADA))
    assert cli.main(argv) == 0
    assert "your instance" not in capsys.readouterr().out


def test_lab_diagnose_out_writes_the_instance_as_text(tmp_path: Path, d01: Lesson) -> None:
    out = tmp_path / "ada.txt"
    argv = ["diagnose", LESSON, "--student", ADA, "--out", str(out), "--work", str(tmp_path)]
    assert cli.main(argv) == 0
    text = out.read_text()
    assert "\x1b[" not in text
    assert text == diagnosis.instance_text(d01, diagnosis.generate(d01, ADA))


def _handout_diagnose(tmp_path: Path, release: list[str]) -> subprocess.CompletedProcess[str]:
    out = tmp_path / "handout"
    workspace.handout(out, release)
    argv = [sys.executable, "-m", "minikern", "lab", "diagnose", "d03_teardown_leak"]
    argv += ["--student", ADA, "--out", str(tmp_path / "ada.txt")]
    env = {**os.environ, "PYTHONPATH": str(out)}
    return subprocess.run(argv, cwd=out, env=env, capture_output=True, text=True, timeout=120)


def test_a_handout_makes_the_same_instance_as_the_grader(tmp_path: Path) -> None:
    done = _handout_diagnose(tmp_path, ["d03_teardown_leak"])
    assert done.returncode == 0, done.stdout + done.stderr
    lesson = load("d03_teardown_leak")
    want = diagnosis.instance_text(lesson, diagnosis.generate(lesson, ADA))
    assert (tmp_path / "ada.txt").read_text() == want


def test_a_handout_without_the_kernels_references_says_where_the_instance_is(
    tmp_path: Path,
) -> None:
    done = _handout_diagnose(tmp_path, ["d03_teardown_leak", "10_teardown"])
    assert done.returncode == 1
    assert "is a handout" in done.stdout
    assert "submit the answer template" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize(
    "lesson_id", ["d01_refused_pin", "d02_stale_tlb", "d03_teardown_leak", "d04_pae_pin_l4"]
)
def test_a_class_gets_mostly_different_answers(lesson_id: str) -> None:
    lesson = load(lesson_id)
    answers = {
        repr(sorted(diagnosis.generate(lesson, f"student{n}@example.edu").truth.items()))
        for n in range(10)
    }
    assert len(answers) >= 9


def _copy_of_d01(tmp_path: Path) -> Path:
    import shutil

    folder = tmp_path / LESSON
    shutil.copytree(load(LESSON).path, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def test_verify_fails_a_break_that_is_the_right_answer(tmp_path: Path) -> None:
    from lessons.lab.lessons import read_toml
    from lessons.lab.verify import verify_lesson

    folder = _copy_of_d01(tmp_path)
    (folder / "breaks" / "not_wrong.toml").write_text('doc = "changes nothing"\n')
    failed = [line for line, ok in verify_lesson(read_toml(folder)) if not ok]
    assert failed
    assert all("not_wrong" in line for line in failed)


def test_verify_fails_an_answer_key_no_question_asks(tmp_path: Path) -> None:
    from lessons.lab.lessons import read_toml
    from lessons.lab.verify import verify_lesson

    folder = _copy_of_d01(tmp_path)
    toml = folder / "lesson.toml"
    toml.write_text(toml.read_text() + '\n[answer.extra]\ntype = "int"\nhelp = "x"\n')
    failed = [line for line, ok in verify_lesson(read_toml(folder)) if not ok]
    assert any("answer the [answer] keys" in line for line in failed)


def test_a_huge_identity_counts_only_its_first_characters() -> None:
    long = "x" * 10_000
    assert diagnosis.normal_identity(long) == "x" * diagnosis.MAX_IDENTITY
    assert diagnosis.seed_of(LESSON, long, "s") == diagnosis.seed_of(LESSON, long + "y", "s")
