"""The grader's own result model (the JSON format), from which the Gradescope and
PrairieLearn forms are made (``report``)."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["GradeResult", "LessonResult", "TestResult"]

GRADED, TIMEOUT, BAD_SUBMISSION, GRADER_ERROR = (
    "graded",
    "timeout",
    "bad-submission",
    "grader-error",
)


@attrs.define
class TestResult:
    """One test's verdict."""

    number: str
    name: str
    key: str
    lesson: str
    max_points: int
    passed: bool
    hidden: bool = False
    rule: str = ""
    output: str = ""
    seconds: float = 0.0
    reproduce: str = ""

    @property
    def points(self) -> int:
        return self.max_points if self.passed else 0


@attrs.define
class LessonResult:
    """One lesson's verdict: ``status`` is ``graded``, ``timeout``, ``bad-submission`` or
    ``grader-error`` (never charged to the student)."""

    id: str
    title: str
    status: str = GRADED
    message: str = ""
    tests: list[TestResult] = attrs.Factory(list)
    output: str = ""
    """What the student's code printed (capped)."""
    seconds: float = 0.0
    sandbox: str = ""
    instance: str = ""
    """Diagnosis track, graded from an engine and not full marks: the student's instance
    drawn as text (the broken run the answers are about)."""

    @property
    def score(self) -> int:
        return sum(t.points for t in self.tests)

    @property
    def max_score(self) -> int:
        return sum(t.max_points for t in self.tests)


@attrs.define
class GradeResult:
    """A whole grading run."""

    lessons: list[LessonResult] = attrs.Factory(list)
    seed: int = 0
    """The public tests' seed."""
    hidden_seed: int | None = None
    """The per-run seed of the hidden tests (None: hidden tests not run)."""
    version: str = ""
    execution_time: float = 0.0
    hints: dict[str, Any] = attrs.Factory(dict)

    @property
    def tests(self) -> list[TestResult]:
        return [t for lesson in self.lessons for t in lesson.tests]

    @property
    def score(self) -> int:
        return sum(t.points for t in self.tests)

    @property
    def max_score(self) -> int:
        return sum(t.max_points for t in self.tests)

    @property
    def grader_error(self) -> bool:
        return any(lesson.status == GRADER_ERROR for lesson in self.lessons)

    def to_json(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["score"], data["max_score"] = self.score, self.max_score
        for lesson, out in zip(self.lessons, data["lessons"], strict=True):
            out["score"], out["max_score"] = lesson.score, lesson.max_score
            for t, t_out in zip(lesson.tests, out["tests"], strict=True):
                t_out["points"] = t.points
        return data
