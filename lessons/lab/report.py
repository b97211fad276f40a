"""The results, written out: console lines (xv6 ``make grade`` style), Gradescope's
``results.json``, PrairieLearn's ``results.json`` and the grader's own JSON."""

from __future__ import annotations

import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any

from lessons.lab.results import GradeResult, LessonResult, TestResult
from lessons.lab.testing import Comparison

__all__ = [
    "console_lines",
    "gradescope",
    "prairielearn",
    "version",
    "write_results",
    "zero_results",
]

GREEN, RED, YELLOW, RESET = "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[0m"


def version() -> str:
    try:
        return metadata.version("minikern")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _paint(text: str, colour: str, on: bool) -> str:
    return f"{colour}{text}{RESET}" if on else text


def verdict_lines(t: TestResult, colour: bool = False) -> list[str]:
    verdict = _paint("OK", GREEN, colour) if t.passed else _paint("FAIL", RED, colour)
    lines = [f"== Test {t.number} {t.name} == {verdict} ({t.seconds:.2f}s)"]
    if not t.passed:
        if t.rule:
            lines.append(f"    rule: {t.rule}")
        lines += ["    " + line for line in t.output.splitlines() if line.strip()]
        if t.reproduce:
            lines.append(f"    reproduce: {t.reproduce}")
    return lines


SHOW_ALL_OPS = 12
"""A battery with more operations shows only the diverging ones."""


def battery_table(c: Comparison) -> Any:
    """A battery's operations side by side (a rich Table): what the student's version
    did, what Xen does; the diverging rows in red."""
    from rich.table import Table

    from lessons.lab.testing import describe

    diverged = {d.index: d for d in c.divergences}
    shown = c.ops if len(c.ops) <= SHOW_ALL_OPS else [op for op in c.ops if op["i"] in diverged]
    title = f"{len(diverged)} of {len(c.ops)} operations diverge"
    if len(shown) < len(c.ops):
        title += f" (the {len(c.ops) - len(shown)} that agree are not shown)"
    table = Table(show_lines=False, title=title)
    for col in ("op", "case", "call", "yours", "Xen"):
        table.add_column(col, overflow="fold")
    for op in shown:
        i = int(op["i"])
        mine = c.yours[i]["out"] if i < len(c.yours) else None
        kind = str(op.get("kind", "call"))
        style = "red" if i in diverged else ""
        table.add_row(
            str(i),
            ",".join(op["labels"]),
            op["call"],
            describe(mine, kind, True),
            describe(op["out"], kind, False),
            style=style,
        )
    return table


def lesson_lines(lesson: LessonResult, colour: bool = False) -> list[str]:
    lines = [f"-- {lesson.id}: {lesson.title}"]
    if lesson.status != "graded" or lesson.message:
        status = lesson.status if lesson.status != "graded" else "note"
        lines.append(
            _paint(f"   [{status}] ", YELLOW, colour) + lesson.message.splitlines()[0]
            if lesson.message
            else f"   [{status}]"
        )
    for t in lesson.tests:
        lines += verdict_lines(t, colour)
    if lesson.instance:
        lines.append(f"   your instance of {lesson.id} (the broken run your answers are about):")
        lines += ["   | " + line for line in lesson.instance.splitlines()]
    if lesson.output.strip():
        lines.append(f"   output of your code ({lesson.id}):")
        lines += ["   | " + line for line in lesson.output.splitlines()[:200]]
    return lines


def console_lines(result: GradeResult, colour: bool = False) -> list[str]:
    """Every lesson's lines, then ``Score: X/Y`` and ``N passed, M failed``."""
    lines: list[str] = []
    for lesson in result.lessons:
        lines += lesson_lines(lesson, colour)
    passed = sum(t.passed for t in result.tests)
    lines.append(f"Score: {result.score}/{result.max_score}")
    lines.append(f"{passed} passed, {len(result.tests) - passed} failed")
    return lines


def _extra(result: GradeResult) -> dict[str, Any]:
    return {
        "seed": result.hidden_seed if result.hidden_seed is not None else result.seed,
        "public_seed": result.seed,
        "version": result.version,
        "hints": result.hints,
        "sandbox": {lesson.id: lesson.sandbox for lesson in result.lessons},
    }


def gradescope(result: GradeResult) -> dict[str, Any]:
    """Gradescope's results.json."""
    tests = []
    for t in result.tests:
        tags = [f"lesson:{t.lesson}"] + ([f"rule:{t.rule}"] if t.rule else [])
        out = "\n".join(verdict_lines(t)[1:]) or "OK"
        tests.append(
            {
                "name": f"{t.number} {t.name}",
                "number": t.number,
                "score": t.points,
                "max_score": t.max_points,
                "status": "passed" if t.passed else "failed",
                "output": out,
                "tags": tags,
                "visibility": "after_published" if t.hidden else "visible",
            }
        )
    return {
        "score": sum(t["score"] for t in tests),
        "execution_time": round(result.execution_time, 3),
        "output": _cap("\n".join(console_lines(result))),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "extra_data": _extra(result),
        "tests": tests,
    }


def zero_results(seed: int | None = None) -> dict[str, Any]:
    """The Gradescope file written before any student code runs."""
    return {
        "score": 0,
        "execution_time": 0,
        "output": "grading did not finish: this is the placeholder written before it started",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "extra_data": {"seed": seed, "version": version()},
        "tests": [],
    }


def prairielearn(result: GradeResult) -> dict[str, Any]:
    """PrairieLearn's results.json (``gradable`` false on a fault of the grader)."""
    tests = [
        {
            "name": f"{t.number} {t.name}",
            "description": f"lesson {t.lesson}",
            "points": t.points,
            "max_points": t.max_points,
            "message": "OK" if t.passed else (t.output.splitlines() or ["failed"])[0],
            "output": "\n".join(verdict_lines(t)),
        }
        for t in result.tests
    ]
    total = result.max_score
    message = f"Score: {result.score}/{total}"
    if result.grader_error:
        message = "The grader failed (not your fault): please resubmit or tell the staff."
    return {
        "gradable": not result.grader_error,
        "score": (result.score / total) if total else 0.0,
        "message": message,
        "output": _cap("\n".join(console_lines(result))),
        "tests": tests,
    }


def _cap(text: str, limit: int = 400_000) -> str:
    return text if len(text) <= limit else text[:limit] + "\n[... output truncated]"


def shape(result: GradeResult, fmt: str) -> dict[str, Any]:
    if fmt == "gradescope":
        return gradescope(result)
    if fmt == "prairielearn":
        return prairielearn(result)
    return result.to_json()


def write_results(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON atomically (a reader never sees half a file), under 1 MiB:
    outputs are cut down first if it would be larger."""
    text = json.dumps(data, indent=1)
    if len(text) > 1_000_000:
        for t in data.get("tests", []):
            t["output"] = str(t.get("output", ""))[:2000]
        data["output"] = str(data.get("output", ""))[:100_000]
        text = json.dumps(data, indent=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def markdown(data: dict[str, Any]) -> str:
    """A per-test table (GitHub's job summary) from the grader's JSON results."""
    rows = ["| test | result | points |", "|---|---|---|"]
    for lesson in data.get("lessons", []):
        for t in lesson.get("tests", []):
            ok = "pass" if t.get("passed") else "FAIL"
            rows.append(f"| {t['number']} {t['name']} | {ok} | {t['points']}/{t['max_points']} |")
    rows.append(f"\n**Score: {data.get('score', 0)}/{data.get('max_score', 0)}**")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m lessons.lab.report results.json``: the Markdown table of a JSON result."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    try:
        data = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    except (IndexError, OSError, ValueError) as exc:
        print(f"no results to summarise: {exc}")
        return 1
    print(markdown(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
