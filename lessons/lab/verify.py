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

__all__ = ["verify_lesson"]


def _grade(lesson: Lesson, text: str, opts: Options) -> LessonResult:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / f"{lesson.id}.py").write_text(text, encoding="utf-8")
        return grade_lesson(lesson, Path(tmp), opts)


def _zero(r: LessonResult) -> bool:
    return all(not t.passed for t in r.tests if t.max_points) and r.status != "grader-error"


def verify_lesson(lesson: Lesson, seed: int | None = None) -> Iterator[tuple[str, bool]]:
    """``(what, held)`` for each property of ``lesson``."""
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
