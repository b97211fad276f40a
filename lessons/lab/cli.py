"""``minikern lab …``: every verb of ``shared/design/lessons.md``.

The cli layer: it may print, draw and write files. Grading itself happens in
``lessons.lab.grader`` (child process, trusted replay).
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from lessons.lab import report, workspace
from lessons.lab.grader import Options, grade_lesson
from lessons.lab.lessons import Lesson, all_lessons, load
from lessons.lab.results import GradeResult, LessonResult
from lessons.lab.testing import Comparison

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="minikern lab", description="The graded course.")
    sub = top.add_subparsers(dest="verb", required=True, metavar="VERB")
    sub.add_parser("list", help="the lessons, their points, and your status").add_argument(
        "--work", default="lab", help="your workspace (default ./lab)"
    )
    p = sub.add_parser("start", help="a workspace of starters")
    p.add_argument("dir", nargs="?", default="lab")
    p = sub.add_parser("check", help="the public tests of one lesson")
    p.add_argument("id")
    p.add_argument("-k", dest="pattern", default=None, help="only tests matching PAT")
    p.add_argument("--work", default="lab")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hidden", action="store_true", help="also the hidden tests, if present")
    p.add_argument("--student", default=None, help="diagnosis lessons: whose instance")
    p = sub.add_parser("grade", help="every lesson; Score: X/Y")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--work", default=None)
    where.add_argument("--submission", default=None)
    p.add_argument("--lesson", action="append", default=None, metavar="ID")
    p.add_argument("--results", default=None, metavar="FILE")
    p.add_argument("--format", choices=("gradescope", "prairielearn", "json"), default="json")
    p.add_argument("--hidden", action="store_true", help="also the hidden tests")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--student", default=None, help="diagnosis lessons: whose instance")
    p = sub.add_parser("diagnose", help="your instance of a diagnosis lesson: the broken run")
    p.add_argument("id")
    p.add_argument("--student", default=None, help="your identity (default: the one last used)")
    p.add_argument("--work", default="lab")
    p.add_argument("--out", default=None, metavar="FILE", help="write it as text to FILE")
    p = sub.add_parser("hint", help="the next hint for the rule this lesson last failed on")
    p.add_argument("id")
    p.add_argument("--work", default="lab")
    p = sub.add_parser("run", help="the lesson's workload with your version, drawn")
    p.add_argument("id")
    p.add_argument("--work", default="lab")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("break", help="the lesson's workload with a broken version, drawn")
    p.add_argument("id")
    p.add_argument("name", nargs="?")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--student", default=None, help="diagnosis lessons: whose instance")
    p = sub.add_parser("verify", help="reference full marks, starter zero, every break caught")
    p.add_argument("ids", nargs="*")
    p = sub.add_parser("solutions", help="the reference as a submission folder")
    p.add_argument("out")
    p.add_argument("--student", default=None, help="diagnosis lessons: whose answers")
    p = sub.add_parser("handout", help="a student copy of the project")
    p.add_argument("out")
    p.add_argument("--release", action="append", default=None, metavar="ID")
    p = sub.add_parser("bundle", help="the grader packed for a course engine")
    p.add_argument("engine", choices=("gradescope", "prairielearn", "github"))
    p.add_argument("out")
    p = sub.add_parser("gradebook", help="grade a folder of submissions into a CSV")
    p.add_argument("submissions")
    p.add_argument("--out", required=True)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--hidden", action="store_true")
    return top


def _lessons(ids: Sequence[str] | None) -> list[Lesson]:
    return [load(i) for i in ids] if ids else all_lessons()


def _colour() -> bool:
    return sys.stdout.isatty()


def _record(work: Path, results: list[LessonResult]) -> None:
    state = workspace.State(work)
    for r in results:
        entry = state.lesson(r.id)
        entry["score"], entry["max"] = r.score, r.max_score
        failed = next((t.rule for t in r.tests if not t.passed and t.rule), "")
        entry["rule"] = failed
    state.save()


def cmd_list(args: argparse.Namespace) -> int:
    state = workspace.State(Path(args.work))
    for lesson in all_lessons():
        public, total = lesson.max_points(False), lesson.max_points(True)
        entry = state.lesson(lesson.id)
        status = f"{entry['score']}/{entry['max']}" if "score" in entry else "not checked yet"
        print(f"{lesson.id:24} {public:3} points ({total} with hidden)  {status:16} {lesson.title}")
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    written = workspace.start(Path(args.dir))
    print(
        f"{args.dir}: {len(written)} starter files written"
        + (f" ({', '.join(written)})" if written else " (existing files kept)")
    )
    return 0


def grade(lessons: list[Lesson], folder: Path, opts: Options, jobs: int = 1) -> GradeResult:
    start = time.monotonic()
    result = GradeResult(seed=opts.seed, hidden_seed=opts.hidden_seed, version=report.version())
    if jobs > 1 and len(lessons) > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            result.lessons = list(
                pool.map(grade_lesson, lessons, [folder] * len(lessons), [opts] * len(lessons))
            )
    else:
        result.lessons = [grade_lesson(lesson, folder, opts) for lesson in lessons]
    result.execution_time = time.monotonic() - start
    return result


def _print(result: GradeResult) -> None:
    for line in report.console_lines(result, _colour()):
        print(line)


def cmd_check(args: argparse.Namespace) -> int:
    lesson = load(args.id)
    work = Path(args.work)
    hidden = args.seed if args.hidden else None
    opts = Options(
        seed=args.seed, hidden_seed=hidden, pattern=args.pattern, student=_student(args, work)
    )
    result = grade([lesson], work, opts)
    _print(result)
    _record(work, result.lessons)
    return 0 if result.score == result.max_score and result.tests else 1


def cmd_grade(args: argparse.Namespace) -> int:
    folder = Path(args.submission or args.work or "lab")
    seed = args.seed if args.seed is not None else 0
    hidden_seed = (
        (args.seed if args.seed is not None else secrets.randbelow(2**31)) if args.hidden else None
    )
    results = Path(args.results) if args.results else None
    if results:
        report.write_results(results, report.zero_results(hidden_seed))
    lessons = _lessons(args.lesson)
    student = args.student if args.submission else _student(args, folder)
    opts = Options(
        seed=seed, hidden_seed=hidden_seed, student=student, show_instance=bool(args.submission)
    )
    result = grade(lessons, folder, opts, args.jobs)
    result.hints = workspace.State(folder).hints_used()
    if results:
        report.write_results(results, report.shape(result, args.format))
    _print(result)
    if args.submission is None:
        _record(folder, result.lessons)
    return 0 if result.score == result.max_score and not result.grader_error else 1


def _student(args: argparse.Namespace, work: Path) -> str | None:
    """``--student``, else the identity last used in the workspace ``work`` (a student's
    own folder; a submission's identity comes from its engine's metadata instead)."""
    if getattr(args, "student", None):
        return str(args.student)
    saved = workspace.State(work).data.get("student")
    return saved if isinstance(saved, str) and saved.strip() else None


def cmd_diagnose(args: argparse.Namespace) -> int:
    from rich.console import Console

    from lessons.lab import diagnosis

    lesson = load(args.id)
    if lesson.track != "diagnosis":
        print(f"{lesson.id} is a {lesson.track}-track lesson: `minikern lab run {lesson.id}`")
        return 2
    work = Path(args.work)
    student = _student(args, work)
    if student is None:
        print(f"whose instance? `minikern lab diagnose {lesson.id} --student YOUR-IDENTITY`")
        return 2
    state = workspace.State(work)
    if work.is_dir():
        state.data["student"] = student
        state.save()
    try:
        inst = diagnosis.generate(lesson, student)
    except diagnosis.InstanceError as exc:
        print(f"minikern lab diagnose: {exc}")
        return 1
    if args.out:
        Path(args.out).write_text(diagnosis.instance_text(lesson, inst), encoding="utf-8")
        print(f"the instance of {inst.identity} written to {args.out}")
        return 0
    console = Console(highlight=False)
    for item in diagnosis.renderables(lesson, inst):
        console.print(item)
    return 0


def cmd_hint(args: argparse.Namespace) -> int:
    lesson = load(args.id)
    state = workspace.State(Path(args.work))
    entry = state.lesson(lesson.id)
    rule = entry.get("rule", "")
    if not rule or rule not in lesson.hints:
        known = ", ".join(lesson.hints) or "none"
        print(
            f"{lesson.id}: no failed rule with hints recorded (run `minikern lab check "
            f"{lesson.id}` first). This lesson has hints for: {known}"
        )
        return 1
    used = entry.setdefault("hints", {})
    n = int(used.get(rule, 0))
    hints = lesson.hints[rule]
    i = min(n, len(hints) - 1)
    print(f"hint {i + 1}/{len(hints)} for {rule}: {hints[i]}")
    used[rule] = n + 1
    state.save()
    return 0


def _draw(lesson: Lesson, folder: Path, seed: int) -> int:
    from rich.console import Console

    from hypervisor import render

    kept: list[Any] = []
    result = grade_lesson_keep(lesson, folder, Options(seed=seed), kept)
    console = Console(highlight=False)
    for run, machine in kept:
        if isinstance(machine, Comparison):
            console.rule(f"{lesson.id}: battery {run.attr}")
            console.print(report.battery_table(machine))
            continue
        console.rule(f"{lesson.id}: workload {run.attr}")
        console.print(
            render.hypercall_log([c for c in machine.calls if c.depth == 0], xen=machine.xen)
        )
        console.print(render.memory_map(machine.xen))
        console.print(render.audit_verdict(machine.xen))
    for line in report.lesson_lines(result, _colour()):
        print(line)
    return 0 if result.score == result.max_score else 1


def grade_lesson_keep(lesson: Lesson, folder: Path, opts: Options, kept: list[Any]) -> LessonResult:
    from lessons.lab import grader

    grader.KEEP = kept
    try:
        return grade_lesson(lesson, folder, opts)
    finally:
        grader.KEEP = None


def cmd_run(args: argparse.Namespace) -> int:
    lesson = load(args.id)
    if lesson.track == "diagnosis":
        print(f"{lesson.id} is a diagnosis lesson: `minikern lab diagnose {lesson.id}`")
        return 2
    return _draw(lesson, Path(args.work), args.seed)


def _break_doc(path: Path) -> str:
    """What a break says it does: a ``.py`` break's docstring, a ``.toml`` one's ``doc``."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        from lessons.lab.diagnosis import break_doc

        return break_doc(text)
    return " ".join([*text.split('"""'), "", ""][1].split())


def _diagnosis_break(lesson: Lesson, path: Path, student: str | None) -> int:
    """Grade a diagnosis lesson's wrong answer for ``student`` (a sample student by
    default) and print the verdicts."""
    from lessons.lab import diagnosis
    from lessons.lab.verify import STUDENTS

    who = student or STUDENTS[0]
    with tempfile.TemporaryDirectory() as tmp:
        text = diagnosis.apply_break(lesson, who, path)
        (Path(tmp) / f"{lesson.id}.toml").write_text(text, encoding="utf-8")
        print(f"{path.stem}, as {who} would answer it:\n{text}")
        result = grade_lesson(lesson, Path(tmp), Options(student=who))
    for line in report.lesson_lines(result, _colour()):
        print(line)
    return 0 if result.score == result.max_score else 1


def cmd_break(args: argparse.Namespace) -> int:
    lesson = load(args.id)
    breaks = lesson.breaks()
    if not args.name:
        for name, path in breaks.items():
            print(f"{name:20} {_break_doc(path)}")
        return 0
    if args.name not in breaks:
        print(f"{lesson.id} has no break {args.name!r}; it has: {', '.join(breaks)}")
        return 2
    if lesson.track == "diagnosis":
        return _diagnosis_break(lesson, breaks[args.name], args.student)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{lesson.id}.py"
        path.write_text(workspace.break_source(lesson, breaks[args.name]), encoding="utf-8")
        return _draw(lesson, Path(tmp), args.seed)


def cmd_verify(args: argparse.Namespace) -> int:
    from lessons.lab.verify import verify_lesson

    ok = True
    for lesson in _lessons(args.ids):
        for line, good in verify_lesson(lesson):
            ok &= good
            print(("ok   " if good else "FAIL ") + line)
    return 0 if ok else 1


def cmd_solutions(args: argparse.Namespace) -> int:
    files = workspace.solutions(Path(args.out), args.student)
    print(f"{args.out}: {len(files)} reference files written")
    if args.student is None:
        print("(no diagnosis answers: they differ per student; give --student NAME)")
    return 0


def cmd_handout(args: argparse.Namespace) -> int:
    ids = workspace.handout(Path(args.out), args.release)
    print(f"{args.out}: handout with {', '.join(ids)}")
    return 0


def cmd_bundle(args: argparse.Namespace) -> int:
    from lessons.lab import bundle

    path = bundle.build(args.engine, Path(args.out))
    print(f"{args.engine} bundle written to {path}")
    return 0


def cmd_gradebook(args: argparse.Namespace) -> int:
    from lessons.lab import gradebook

    code: int = gradebook.run(Path(args.submissions), Path(args.out), args.jobs, args.hidden)
    return code


VERBS = {
    "list": cmd_list,
    "start": cmd_start,
    "check": cmd_check,
    "grade": cmd_grade,
    "diagnose": cmd_diagnose,
    "hint": cmd_hint,
    "run": cmd_run,
    "break": cmd_break,
    "verify": cmd_verify,
    "solutions": cmd_solutions,
    "handout": cmd_handout,
    "bundle": cmd_bundle,
    "gradebook": cmd_gradebook,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return VERBS[args.verb](args)
    except LookupError as exc:
        print(f"minikern lab: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
