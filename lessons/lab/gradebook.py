"""``minikern lab gradebook``: a class's submissions graded in parallel into one CSV.

Every subfolder of the submissions folder is one submission. Each is graded in a worker
process (every lesson in its own sandboxed child with its own timeout), so one
submission that hangs or crashes costs only its own row. The CSV has one row per
submission and one column per lesson; at the end a per-lesson summary says how many lost
points on which rule -- what to teach again.
"""

from __future__ import annotations

import csv
import re
import secrets
import sys
from collections import Counter
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from pathlib import Path

import attrs

from lessons.lab.grader import Options, grade_lesson
from lessons.lab.lessons import Lesson, all_lessons
from lessons.lab.results import GRADED, LessonResult, TestResult

__all__ = ["grade_submission", "run", "summary"]


def grade_submission(folder: Path, lessons: list[Lesson], opts: Options) -> list[LessonResult]:
    """Every lesson of one submission; its diagnosis instances are those of the
    subfolder's name (the student's identity)."""
    opts = attrs.evolve(opts, student=folder.name)
    return [grade_lesson(lesson, folder, opts) for lesson in lessons]


def _progress(done: int, total: int) -> None:
    if sys.stderr.isatty():
        width = 30
        filled = width * done // max(total, 1)
        bar = "#" * filled + "-" * (width - filled)
        sys.stderr.write(f"\r[{bar}] {done}/{total}")
        sys.stderr.flush()
        if done == total:
            sys.stderr.write("\n")


_RAISED = re.compile(r"raised: (\w+)")
"""How a lesson function's exception shows in a test's output."""


def _why(result: LessonResult, test: TestResult) -> str:
    """What a failed test lost its points on, for the class summary: the rule id, or
    else the exception a lesson function raised, or else the lesson's status."""
    if test.rule:
        return test.rule
    raised = _RAISED.search(test.output)
    if raised:
        return f"raised {raised.group(1)}"
    return result.status if result.status != GRADED else "a check without a rule id"


def summary(lessons: list[Lesson], rows: dict[str, list[LessonResult] | None]) -> list[str]:
    """Per lesson: how many scored full marks, and the rules points were lost on."""
    out = []
    for i, lesson in enumerate(lessons):
        graded = [r[i] for r in rows.values() if r is not None]
        full = sum(r.score == r.max_score for r in graded)
        lost: Counter[str] = Counter()
        for r in graded:
            lost.update({_why(r, t) for t in r.tests if not t.passed})
        why = ", ".join(f"{rule} x{n}" for rule, n in lost.most_common(5)) or "nothing"
        out.append(f"{lesson.id}: {full}/{len(graded)} full marks; points lost on: {why}")
    return out


def run(submissions: Path, out: Path, jobs: int = 1, hidden: bool = False) -> int:
    """Grade every subfolder of ``submissions`` into ``out`` (CSV); print the summary."""
    if not submissions.is_dir():
        print(f"minikern lab gradebook: {submissions} is not a folder", file=sys.stderr)
        return 2
    lessons = all_lessons()
    folders = sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith("."))
    opts = Options(seed=0, hidden_seed=secrets.randbelow(2**31) if hidden else None)
    rows: dict[str, list[LessonResult] | None] = {}
    with ProcessPoolExecutor(max_workers=max(jobs, 1)) as pool:
        futures: dict[Future[list[LessonResult]], str] = {
            pool.submit(grade_submission, f, lessons, opts): f.name for f in folders
        }
        _progress(0, len(folders))
        for n, fut in enumerate(as_completed(futures), 1):
            try:
                rows[futures[fut]] = fut.result()
            except Exception:
                rows[futures[fut]] = None
            _progress(n, len(folders))
    with out.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["submission", *[lesson.id for lesson in lessons], "total", "max", "status"])
        for name in sorted(rows):
            results = rows[name]
            if results is None:
                w.writerow([name, *[""] * len(lessons), 0, "", "grader-error"])
                continue
            status = sorted({r.status for r in results} - {"graded"})
            total = sum(r.score for r in results)
            most = sum(r.max_score for r in results)
            w.writerow([name, *[r.score for r in results], total, most, ";".join(status) or "ok"])
    for line in summary(lessons, rows):
        print(line)
    print(f"{len(rows)} submissions graded into {out}")
    return 0
