"""``minikern lab verify``: the reference scores full marks, a starter and a do-nothing
submission score zero on every test with points, and every shipped break loses points."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lessons.lab import source, workspace
from lessons.lab.grader import Options, grade_lesson
from lessons.lab.lessons import Lesson
from lessons.lab.results import LessonResult

__all__ = ["copied_scores", "verify_lesson"]


def _grade(lesson: Lesson, text: str, opts: Options) -> LessonResult:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / f"{lesson.id}.py").write_text(text, encoding="utf-8")
        return grade_lesson(lesson, Path(tmp), opts)


def _zero(r: LessonResult) -> bool:
    return all(not t.passed for t in r.tests if t.max_points) and r.status != "grader-error"


STUDENTS = ("ada@example.edu", "grace@example.edu", "edsger@example.edu")
"""The identities a diagnosis lesson is verified with."""
CLASS_SIZE = 30
"""How many identities the copy figures are measured over (every ordered pair)."""
COPY_MEAN_LIMIT = 0.40
"""A diagnosis lesson fails verify when a copied answer scores this share on average..."""
COPY_MAX_LIMIT = 0.50
"""... or this share for any one pair of students."""


def copied_scores(lesson: Lesson, identities: list[str]) -> list[float]:
    """For every ordered pair (a, b) of ``identities``: the share of the points b's
    instance gives for a's correct answers (judged as the grader judges them)."""
    from lessons.lab import diagnosis

    questions = [t.check for t in lesson.tests(False) if isinstance(t.check, diagnosis.Question)]
    total = sum(q.points for q in questions)
    insts = [diagnosis.generate(lesson, who) for who in identities]
    out = []
    for a in insts:
        answer = {k: a.truth[k] for k in lesson.answer}
        for b in insts:
            if b is not a:
                got = sum(q.points for q in questions if diagnosis.judge(q, b, answer) is None)
                out.append(got / total if total else 1.0)
    return out


def _grade_answer(lesson: Lesson, text: str, student: str) -> LessonResult:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / f"{lesson.id}.toml").write_text(text, encoding="utf-8")
        return grade_lesson(lesson, Path(tmp), Options(student=student, explain=False))


def verify_diagnosis(lesson: Lesson) -> Iterator[tuple[str, bool]]:
    """A diagnosis lesson: each student's own answers score full marks, the template
    zero, every break (a plausible wrong answer) loses points, and the instances of
    different students have different answers: over every pair of :data:`CLASS_SIZE`
    students, a copied answer scores under :data:`COPY_MEAN_LIMIT` of the points on
    average and under :data:`COPY_MAX_LIMIT` for every pair."""
    from lessons.lab import diagnosis

    asked = sorted(
        t.check.answer_key for t in lesson.tests(False) if hasattr(t.check, "answer_key")
    )
    yield (
        f"{lesson.id}: questions {', '.join(asked)} answer the [answer] keys",
        asked == sorted(lesson.answer) and len(set(asked)) == len(asked),
    )
    kinds = {"int": int, "str": str}
    truth = diagnosis.generate(lesson, STUDENTS[0]).truth
    typed = [
        k for k, spec in lesson.answer.items() if type(truth.get(k)) is not kinds[spec["type"]]
    ]
    yield f"{lesson.id}: the incident's truth has every key, typed", not typed
    truths = []
    for who in STUDENTS:
        r = _grade_answer(lesson, diagnosis.solution_text(lesson, who), who)
        truths.append(diagnosis.generate(lesson, who).truth)
        yield (
            f"{lesson.id}: {who}'s answers {r.score}/{r.max_score} {r.message}",
            r.score == r.max_score > 0,
        )
    r = _grade_answer(lesson, diagnosis.template_text(lesson), STUDENTS[0])
    yield f"{lesson.id}: template {r.score}/{r.max_score}", _zero(r)
    distinct = len({repr(sorted(t.items())) for t in truths})
    yield f"{lesson.id}: {distinct} distinct answer sets for {len(truths)} students", distinct > 1
    copied = _grade_answer(lesson, diagnosis.solution_text(lesson, STUDENTS[0]), STUDENTS[1])
    yield (
        f"{lesson.id}: {STUDENTS[0]}'s answers copied by {STUDENTS[1]} "
        f"{copied.score}/{copied.max_score}",
        copied.score < copied.max_score,
    )
    shares = copied_scores(lesson, [f"student{n}@example.edu" for n in range(CLASS_SIZE)])
    mean, worst = sum(shares) / len(shares), max(shares)
    yield (
        f"{lesson.id}: a copied answer scores {mean:.0%} on average, {worst:.0%} at most "
        f"({len(shares)} pairs of {CLASS_SIZE} students; limits "
        f"{COPY_MEAN_LIMIT:.0%}, {COPY_MAX_LIMIT:.0%})",
        mean < COPY_MEAN_LIMIT and worst < COPY_MAX_LIMIT,
    )
    breaks = lesson.breaks()
    yield f"{lesson.id}: {len(breaks)} break(s) shipped", bool(breaks)
    for name, path in breaks.items():
        for who in STUDENTS[:2]:
            r = _grade_answer(lesson, diagnosis.apply_break(lesson, who, path), who)
            lost = sorted({t.rule for t in r.tests if not t.passed})
            yield (
                f"{lesson.id}: break {name} ({who}) {r.score}/{r.max_score} caught by "
                f"{', '.join(lost) or r.message[:100]}",
                r.score < r.max_score and r.status == "graded",
            )


def verify_lesson(lesson: Lesson, seed: int | None = None) -> Iterator[tuple[str, bool]]:
    """``(what, held)`` for each property of ``lesson``."""
    if lesson.track == "diagnosis":
        try:
            yield from verify_diagnosis(lesson)
        except Exception as exc:  # the incident itself is broken: the course's bug
            yield f"{lesson.id}: the incident fails: {type(exc).__name__}: {exc}", False
        return
    hidden = seed if seed is not None else secrets.randbelow(2**31)
    opts = Options(seed=0, hidden_seed=hidden, explain=False)
    ref = _grade(lesson, source.solution_source(lesson), opts)
    yield (
        f"{lesson.id}: reference {ref.score}/{ref.max_score} (hidden seed "
        f"{opts.hidden_seed}) {ref.message}",
        ref.score == ref.max_score > 0,
    )
    for what, text in (
        ("starter", source.starter_source(lesson)),
        ("do-nothing", workspace.noop_source(lesson)),
    ):
        r = _grade(lesson, text, opts)
        yield f"{lesson.id}: {what} {r.score}/{r.max_score}", _zero(r)
    breaks = lesson.breaks()
    yield f"{lesson.id}: {len(breaks)} break(s) shipped", bool(breaks)
    for name, path in breaks.items():
        r = _grade(lesson, workspace.break_source(lesson, path), opts)
        rules = sorted({t.rule for t in r.tests if not t.passed and t.rule})
        first = next((t.output.splitlines()[0] for t in r.tests if not t.passed and t.output), "")
        yield (
            f"{lesson.id}: break {name} {r.score}/{r.max_score} caught by "
            f"{', '.join(rules) or first[:100] or r.message[:100]}",
            r.score < r.max_score and r.status == "graded",
        )
