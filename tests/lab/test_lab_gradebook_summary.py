"""The gradebook's class summary says what each lesson's points were lost on."""

from __future__ import annotations

from lessons.lab.gradebook import summary
from lessons.lab.lessons import all_lessons
from lessons.lab.results import GRADED, TIMEOUT, LessonResult
from lessons.lab.results import TestResult as Verdict  # not a pytest class


def _failed(lesson: str, rule: str = "", output: str = "") -> Verdict:
    return Verdict("1", "t", "t", lesson, 5, passed=False, rule=rule, output=output)


def _line(result: LessonResult) -> str:
    lesson = next(x for x in all_lessons() if x.id == result.id)
    return summary([lesson], {"alice": [result]})[0]


def test_summary_names_the_rule_a_failed_test_broke() -> None:
    result = LessonResult("04_pin_and_load", "", GRADED, tests=[_failed("04", "unpin.not-pinned")])
    assert _line(result).endswith("points lost on: unpin.not-pinned x1")


def test_summary_names_the_exception_of_an_unwritten_function() -> None:
    output = "minikern.build:pin_tree raised: NotImplementedError: write me"
    result = LessonResult("04_pin_and_load", "", GRADED, tests=[_failed("04", output=output)])
    assert _line(result).endswith("points lost on: raised NotImplementedError x1")


def test_summary_names_a_timeout_as_a_timeout() -> None:
    result = LessonResult("04_pin_and_load", "", TIMEOUT, tests=[_failed("04")])
    assert _line(result).endswith("points lost on: timeout x1")
