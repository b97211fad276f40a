"""Shared helpers of the lab's tests: lesson 04, its reference and starter files."""

from __future__ import annotations

from pathlib import Path

import pytest

from lessons.lab import source
from lessons.lab.grader import Options, grade_lesson
from lessons.lab.lessons import Lesson, load
from lessons.lab.results import LessonResult

LESSON = "04_pin_and_load"


@pytest.fixture(scope="session")
def lesson() -> Lesson:
    return load(LESSON)


def write(folder: Path, lesson: Lesson, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{lesson.id}.py").write_text(text, encoding="utf-8")
    return folder


def grade_text(tmp: Path, lesson: Lesson, text: str, **opts: object) -> LessonResult:
    return grade_lesson(lesson, write(tmp / "sub", lesson, text), Options(**opts))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def reference_text(lesson: Lesson) -> str:
    return source.solution_source(lesson)


@pytest.fixture(scope="session")
def starter_text(lesson: Lesson) -> str:
    return source.starter_source(lesson)
