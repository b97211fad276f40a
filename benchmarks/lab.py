"""The course graded: the reference submission (diagnosis answers for one student's
instances), every lesson with its hidden tests,
sandboxed and replayed, against a bare ``python -c "import minikern"`` of the same run.

Target (issue 7): the whole course in under 10 s on 2 cores, every lesson at full marks
(a reference short of them is a broken bench, not a fast one).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lessons.lab import source, workspace
from lessons.lab.grader import Options, grade_lesson
from lessons.lab.lessons import all_lessons

__all__ = ["run"]

TARGET_S = 10.0
STUDENT = "bench@example.edu"
"""The identity whose diagnosis instances the reference answers (and is graded on)."""


def _import_baseline(repeat: int = 5) -> float:
    """Median seconds of a fresh interpreter importing minikern."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import minikern"], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run() -> list[dict[str, Any]]:
    base = _import_baseline()
    lessons = all_lessons()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        workspace.solutions(folder, student=STUDENT)
        for lesson in lessons:
            source.child_tree(lesson)  # built once per source version; not what is measured
        total = 0.0
        full = True
        for lesson in lessons:
            start = time.perf_counter()
            r = grade_lesson(lesson, folder, Options(hidden_seed=1, student=STUDENT))
            spent = time.perf_counter() - start
            total += spent
            full = full and r.score == r.max_score
            rows.append(
                {
                    "lesson": lesson.id,
                    "score": f"{r.score}/{r.max_score}",
                    "seconds": spent,
                    "x_import_minikern": spent / base,
                }
            )
    rows.append(
        {
            "lesson": f"whole course (target < {TARGET_S:g} s)",
            "score": "ok" if total < TARGET_S and full else "MISSED",
            "seconds": total,
            "x_import_minikern": total / base,
        }
    )
    rows.append(
        {
            "lesson": "baseline: python -c 'import minikern'",
            "score": "",
            "seconds": base,
            "x_import_minikern": 1.0,
        }
    )
    return rows
