"""Grade one lesson: run the child, replay what it did on a trusted machine, check it.

The verdict is computed here, never reported by the child: every record it sent is
validated and replayed (``hypervisor.replay``) on a fresh hypervisor built from the
workload's own declaration; a divergence, a malformed record or a record channel with
anything else on it scores zero. Each check then looks at the replayed machine.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import inspect
import json
import time
import traceback
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from lessons.lab import seam, source, submission
from lessons.lab.lessons import Lesson, TestCase, all_lessons, load_file, workloads_in
from lessons.lab.results import (
    BAD_SUBMISSION,
    GRADER_ERROR,
    TIMEOUT,
    LessonResult,
    TestResult,
)
from lessons.lab.sandbox import ChildRun, run_child
from lessons.lab.testing import (
    Battery,
    Comparison,
    Fail,
    Guest,
    Host,
    Machine,
    Plan,
    ProcessView,
    Workload,
    compare,
    plan_rng,
    run_battery,
)

__all__ = ["Options", "grade_lesson", "select"]

TRACE_KINDS = {"header", "hypercall", "store", "load", "trapped_write", "page_fault", "tlb_flush"}
MAX_RECORDS = 200_000
KEEP: list[Any] | None = None
"""When a list, every (run, replayed machine) is appended to it (``lab run`` draws them)."""


@attrs.frozen
class Options:
    """How to grade: the public seed, the hidden seed (None: no hidden tests), a ``-k``
    pattern, and whether to lock the child in (tests may turn the jail off)."""

    seed: int = 0
    hidden_seed: int | None = None
    pattern: str | None = None
    jail: bool = True
    explain: bool = True
    """Compute each failure's first divergence from the reference run (verify does not)."""
    student: str | None = None
    """Diagnosis track: the identity whose instance is graded (else the submission's
    engine metadata says; see ``lessons.lab.diagnosis.identity_of``)."""
    show_instance: bool = False
    """Diagnosis track: put the student's instance, drawn, in the results of a lesson
    short of full marks (grading a submission for an engine, where the student may have
    no other way to see it)."""


def select(lesson: Lesson, opts: Options) -> list[TestCase]:
    tests = lesson.tests(hidden=opts.hidden_seed is not None)
    if opts.pattern:
        pat = opts.pattern.lower()
        tests = [
            t
            for t in tests
            if pat in t.check.key.lower()
            or pat in t.name.lower()
            or fnmatch.fnmatch(t.name.lower(), pat)
        ]
    return tests


def _reproduce(lesson: Lesson, t: TestCase, opts: Options) -> str:
    if t.hidden:
        return f"minikern lab check {lesson.id} -k {t.check.key} --hidden --seed {opts.hidden_seed}"
    return f"minikern lab check {lesson.id} -k {t.check.key} --seed {opts.seed}"


def _fail_all(
    lesson: Lesson, tests: list[TestCase], status: str, msg: str, opts: Options
) -> LessonResult:
    out = LessonResult(lesson.id, lesson.title, status=status, message=msg)
    out.tests = [_result(lesson, t, False, msg, "", opts) for t in tests]
    return out


def _result(
    lesson: Lesson,
    t: TestCase,
    passed: bool,
    output: str,
    rule: str,
    opts: Options,
    seconds: float = 0.0,
) -> TestResult:
    return TestResult(
        t.number,
        t.name,
        t.check.key,
        lesson.id,
        t.points,
        passed,
        t.hidden,
        rule,
        output,
        seconds,
        "" if passed else _reproduce(lesson, t, opts),
    )


# -- the job ----------------------------------------------------------------------------


@attrs.frozen
class Run:
    """One workload run: where it lives, its plan, the tests that look at it."""

    key: str
    file: str
    attr: str
    workload: Workload | Battery
    plan: Plan
    tests: list[TestCase]
    seed: int | None = None


def _runs(lesson: Lesson, tests: list[TestCase], opts: Options) -> list[Run]:
    runs: dict[str, Run] = {}
    for t in tests:
        module = load_file(t.file)
        attr = next(k for k, v in workloads_in(module).items() if v is t.workload)
        rel = str(t.file.relative_to(lesson.path / "tests"))
        seeds = [opts.hidden_seed if t.hidden else opts.seed]
        if isinstance(t.workload, Battery) and not t.hidden and opts.hidden_seed is not None:
            # A battery's outcomes are the student's own report: at the public seed alone
            # they could be a table of Xen's answers. The grader's runs redraw it too.
            seeds.append(opts.hidden_seed)
        for seed in dict.fromkeys(seeds):
            key = f"{rel}:{attr}:{seed}"
            if key not in runs:
                plan = t.workload.plan(plan_rng(int(seed or 0), lesson.id, f"{rel}:{attr}"))
                runs[key] = Run(key, f"tests/{rel}", attr, t.workload, plan, [], seed)
            runs[key].tests.append(t)
    return list(runs.values())


# -- reading the record channel ------------------------------------------------------------


class Tampered(Exception):  # noqa: N818
    """The record channel holds something the child's own code would never send."""


@attrs.define
class Sent:
    """What the child sent for one workload."""

    lines: list[str] = attrs.Factory(list)
    end: dict[str, Any] | None = None


def parse_channel(data: bytes) -> tuple[str, str, dict[str, Sent]]:
    """``(sandbox mode, submission error, key -> Sent)``; :class:`Tampered` if malformed."""
    mode, error = "", ""
    sent: dict[str, Sent] = {}
    current: Sent | None = None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Tampered("the record channel is not UTF-8") from exc
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise Tampered("the record channel holds a line that is not JSON") from exc
        if not isinstance(obj, dict):
            raise Tampered("the record channel holds a line that is not a record")
        kind = obj.get("kind")
        if kind == "lab.start":
            mode = str(obj.get("mode", ""))
        elif kind == "lab.submission":
            error = str(obj.get("error", ""))[:4000] or "the submission could not be used"
        elif kind in ("lab.workload", "lab.battery"):
            current = sent.setdefault(str(obj.get("key")), Sent())
        elif kind == "lab.end":
            if current is None or current.end is not None:
                raise Tampered("the record channel's workloads are out of order")
            current.end = obj
            current = None
        elif kind in TRACE_KINDS or kind == "lab.op":
            if current is None:
                raise Tampered("a trace record outside any workload")
            current.lines.append(line)
        elif kind != "lab.done":
            raise Tampered(f"an unknown record kind {kind!r}")
    return mode, error, sent


def _parsed(run: Run, lines: list[str], xen: Any) -> Any:
    """The child's trace, parsed; its header must describe the workload's own machine."""
    from hypervisor import replay
    from hypervisor.trace import DomainSpec

    if len(lines) > MAX_RECORDS:
        raise Tampered(f"more than {MAX_RECORDS} records")
    try:
        trace = replay.parse("\n".join(lines) + "\n")
    except (ValueError, TypeError) as exc:
        raise Tampered(f"the trace does not parse: {exc}") from exc
    h = trace.header
    w = run.workload
    assert isinstance(w, Workload)
    config = dict(xen.trace.config)
    if h is None or h.total_frames != w.frames or dict(h.config) != config or len(h.domains) != 1:
        raise Tampered("the trace's header is not the workload's machine")
    spec = h.domains[0]
    if spec != DomainSpec(w.nr_pages, False, w.guest_width, 1, spec.at) or spec.at != 0:
        raise Tampered("the trace's domain is not the workload's domain")
    return trace


def replay_run(run: Run, sent: Sent) -> Machine:
    """The trusted machine after replaying ``sent`` on a machine the grader builds from
    the workload's own declaration; Tampered if anything diverges."""
    from hypervisor import Hypervisor, replay

    assert isinstance(run.workload, Workload)
    xen = Hypervisor(total_frames=run.workload.frames)
    trace = _parsed(run, sent.lines, xen)
    xen.create_domain(nr_pages=run.workload.nr_pages, guest_width=run.workload.guest_width)
    try:
        result = replay.run(trace, xen=xen)
    except Exception as exc:
        raise Tampered(f"the trace does not replay: {type(exc).__name__}: {exc}") from exc
    if result.divergences:
        raise Tampered(f"the trace does not replay: {result.divergences[0]}"[:600])
    end = sent.end or {}
    procs: dict[int, ProcessView] = {}
    raw = end.get("processes")
    if isinstance(raw, dict):
        for pid, view in raw.items():
            if isinstance(view, dict) and str(pid).isdigit():
                l4, user = view.get("l4"), view.get("user_l4")
                if type(l4) is int and type(user) is int:
                    procs[int(pid)] = ProcessView(int(pid), l4, user)
    return Machine(xen, procs, end.get("completed") is True)


# -- explaining a failure ---------------------------------------------------------------


def refusal_text(m: Machine) -> tuple[str, str]:
    """``(rule, explanation)`` of the first refusal on the trusted machine, if any."""
    from hypervisor.rules import RULES

    for c in m.refusals:
        if c.rule:
            rule = RULES.get(c.rule)
            why = f"{rule.principle} — {rule.fix}" if rule is not None else ""
            return c.rule, f"Xen refused {c.op} ({c.rule}): {why}"
    return "", ""


def _call_text(c: Any) -> str:
    text = f"{c.op}{c.args!r}"
    return text if len(text) < 200 else text[:197] + "..."


def first_divergence(run: Run, m: Machine) -> str:
    """Where the student's hypercalls first differ from the reference's (same plan)."""
    assert isinstance(run.workload, Workload)
    guest = Guest(run.workload)
    reference_seam()
    with contextlib.suppress(Exception):  # the reference run is only a guide
        run.workload.run(guest, run.plan)
    if guest.xen is None:
        return ""
    ref = [c for c in guest.xen.trace.hypercalls() if c.depth == 0]
    got = [c for c in m.calls if c.depth == 0]
    for i, (a, b) in enumerate(zip(got, ref, strict=False)):
        if (a.op, _norm(a.args)) != (b.op, _norm(b.args)):
            return (
                f"hypercall {i + 1}: you made {_call_text(a)}; the reference made {_call_text(b)}"
            )
    if len(got) != len(ref):
        side = "you made" if len(got) > len(ref) else "the reference made"
        return f"after {min(len(got), len(ref))} identical hypercalls {side} more"
    return ""


def _norm(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_norm(v) for v in value)
    if attrs.has(type(value)):
        return tuple(_norm(getattr(value, f.name)) for f in attrs.fields(type(value)))
    return value


def _hint_pointer(lesson: Lesson, rule: str) -> str:
    return f"hint: minikern lab hint {lesson.id}" if rule in lesson.hints else ""


def _evaluate(
    lesson: Lesson, run: Run, sent: Sent | None, raised: dict[str, str], opts: Options
) -> list[TestResult]:
    if sent is None or sent.end is None:
        msg = "the child stopped before this workload finished (it exited or crashed)"
        return [_result(lesson, t, False, msg, "", opts) for t in run.tests]
    if isinstance(run.workload, Battery):
        return _evaluate_battery(lesson, run, sent, opts)
    t0 = time.monotonic()
    try:
        m = replay_run(run, sent)
    except Tampered as exc:
        msg = f"{exc} (tampering, or a bug: scored zero)"
        return [_result(lesson, t, False, msg, "lab.tampered", opts) for t in run.tests]
    if KEEP is not None:
        KEEP.append((run, m))
    rule0, why0 = refusal_text(m)
    div: str | None = None
    out = []
    for t in run.tests:
        start = time.monotonic()
        passed, rule, lines = True, "", []
        if raised:
            passed = False
            lines += [f"{name} raised: {what}" for name, what in raised.items()]
        elif not m.completed:
            passed = False
            lines.append(f"the workload stopped: {str((sent.end or {}).get('error', ''))[:2000]}")
        else:
            try:
                t.check.fn(m, run.plan)
            except Fail as exc:
                passed, rule = False, exc.rule
                lines.append(exc.message)
        if not passed:
            rule = rule or rule0
            if why0:
                lines.append(why0)
            if div is None:
                div = first_divergence(run, m) if opts.explain else ""
            if div:
                lines.append(f"first divergence from the reference run: {div}")
            pointer = _hint_pointer(lesson, rule)
            if pointer:
                lines.append(pointer)
        spent = time.monotonic() - start + (t0 - t0)
        out.append(_result(lesson, t, passed, "\n".join(lines), rule, opts, spent))
    return out


# -- batteries (hypervisor track) -----------------------------------------------------------

OP_STATUSES = {"ok", "refused", "fault", "crashed"}
_SCALAR = (int, str, type(None))


def _scalar(value: Any) -> bool:
    return isinstance(value, _SCALAR) and type(value) is not bool


def parse_ops(lines: list[str], xen_ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The child's operations, each checked to be well-formed and to be the battery's own
    operation at its index (the battery is open-loop: the calls cannot differ);
    :class:`Tampered` otherwise."""
    if len(lines) > len(xen_ops):
        raise Tampered(
            f"the child reported {len(lines)} operations, the battery has {len(xen_ops)}"
        )
    out = []
    for i, line in enumerate(lines):
        op = json.loads(line).get("op")
        if not isinstance(op, dict) or op.get("i") != i or op.get("call") != xen_ops[i]["call"]:
            raise Tampered(f"operation {i} the child reported is not the battery's operation {i}")
        res, digest = op.get("out"), op.get("digest")
        if not isinstance(res, dict) or res.get("status") not in OP_STATUSES:
            raise Tampered(f"operation {i}: a malformed outcome")
        if not all(isinstance(k, str) and _scalar(v) for k, v in res.items()):
            raise Tampered(f"operation {i}: a malformed outcome")
        if not isinstance(digest, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and all(map(_scalar_or_bool, v))
            for k, v in digest.items()
        ):
            raise Tampered(f"operation {i}: a malformed frame digest")
        out.append({"i": i, "call": op["call"], "out": res, "digest": digest})
    return out


def _scalar_or_bool(value: Any) -> bool:
    return isinstance(value, _SCALAR) or type(value) is bool


EXPECTED = "expected.json"
"""In a handout, ``lessons/<id>/tests/expected.json``: Xen's outcomes of each public battery
at seed 0 (the handout has no trusted Xen for the lesson's own functions)."""


class NoTrustedXen(Exception):  # noqa: N818
    """This copy of the course cannot judge a battery (a handout, another seed)."""


def expected_ops(lesson: Lesson, run: Run) -> list[dict[str, Any]]:
    """Xen's outcomes of ``run`` as the handout shipped them."""
    try:
        data = json.loads((lesson.path / "tests" / EXPECTED).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    ops = data.get(run.key) if isinstance(data, dict) else None
    if not isinstance(ops, list):
        names = ", ".join(lesson.functions)
        raise NoTrustedXen(
            f"this copy of the course has no trusted Xen for {names} (yours to write): it "
            f"ships Xen's outcomes of the public tests at seed 0 only; the course's grader "
            f"runs the rest"
        )
    return ops


def trusted_run(lesson: Lesson, run: Run) -> Any:
    """The battery run by the grader on its own hypervisor with every lesson function the
    reference; a battery that fails there is the lesson's bug (a grader error). In a
    handout (the lesson's own functions stripped), Xen's outcomes shipped with it."""
    assert isinstance(run.workload, Battery)
    if any(stripped(f) for f in lesson.functions):
        host = Host(run.workload)
        host.ops = expected_ops(lesson, run)
        return host
    reference_seam()
    host, error = run_battery(run.workload, run.plan)
    if error:
        raise RuntimeError(f"battery {run.attr} fails on the reference: {error}")
    crashed = [op for op in host.ops if op["out"]["status"] == "crashed"]
    if crashed:
        raise RuntimeError(f"battery {run.attr} crashes the reference: {crashed[0]}")
    return host


def _who(lesson: Lesson) -> str:
    if len(lesson.functions) == 1:
        return f"your {seam.bare_name(lesson.functions[0])}"
    return "your code"


def _evaluate_battery(lesson: Lesson, run: Run, sent: Sent, opts: Options) -> list[TestResult]:
    try:
        host = trusted_run(lesson, run)
    except NoTrustedXen as exc:
        return [_result(lesson, t, False, str(exc), "", opts) for t in run.tests]
    try:
        yours = parse_ops(sent.lines, host.ops)
    except (Tampered, ValueError, AttributeError) as exc:
        msg = f"{exc} (tampering, or a bug: scored zero)"
        return [
            _redrawn(lesson, run, _result(lesson, t, False, msg, "lab.tampered", opts), opts)
            for t in run.tests
        ]
    c = Comparison(host, run.plan, compare(host.ops, yours), _who(lesson))
    c.yours = yours
    end = sent.end or {}
    if end.get("completed") is not True:
        c.stopped = str(end.get("error", "") or "it stopped")[:2000]
    if KEEP is not None:
        KEEP.append((run, c))
    out = []
    for t in run.tests:
        start = time.monotonic()
        passed, rule, lines = True, "", []
        try:
            t.check.fn(c, run.plan)
        except Fail as exc:
            passed, rule = False, exc.rule
            lines.append(exc.message)
        if not passed:
            if c.stopped:
                lines.append(f"the battery stopped in your run: {c.stopped}")
            pointer = _hint_pointer(lesson, rule)
            if pointer:
                lines.append(pointer)
        spent = time.monotonic() - start
        out.append(
            _redrawn(
                lesson, run, _result(lesson, t, passed, "\n".join(lines), rule, opts, spent), opts
            )
        )
    return out


def _redrawn(lesson: Lesson, run: Run, r: TestResult, opts: Options) -> TestResult:
    """A public test's failure on the battery redrawn from the grader's seed says so."""
    if r.passed or r.hidden or run.seed == opts.seed:
        return r
    r.output = f"with the plan drawn from the grader's seed {run.seed}:\n{r.output}"
    r.reproduce = f"minikern lab check {lesson.id} -k {r.key} --seed {run.seed}"
    return r


# -- one lesson ---------------------------------------------------------------------------


def grade_lesson(lesson: Lesson, folder: Path, opts: Options) -> LessonResult:
    """Grade ``folder``'s answer to ``lesson``. Never raises for anything a submission
    does; a fault of the grader itself is a ``grader-error`` result."""
    start = time.monotonic()
    tests = select(lesson, opts)
    try:
        if lesson.track == "diagnosis":
            from lessons.lab import diagnosis

            result = diagnosis.grade(lesson, folder, tests, opts)
        else:
            result = _grade(lesson, folder, tests, opts)
    except Exception:
        result = _fail_all(
            lesson,
            tests,
            GRADER_ERROR,
            "grader error (not your fault):\n" + traceback.format_exc(limit=8),
            opts,
        )
    result.seconds = time.monotonic() - start
    return result


@functools.cache
def stripped(name: str) -> bool:
    """Is lesson function ``name``'s reference missing from this package (a handout)?"""
    try:
        text = inspect.getsource(seam.reference(name))
    except (OSError, TypeError, LookupError):
        return False
    return "NotImplementedError(" in text and "is yours to write" in text


def _stand_ins(lesson: Lesson, folder: Path) -> list[tuple[Lesson, str]]:
    """In a handout, other lessons' references are gone: the student's own answers to
    them (when they pass the static checks) stand in, so lesson N can run."""
    out = []
    for other in all_lessons(lesson.path.parent):
        if other.id != lesson.id and any(stripped(f) for f in other.functions):
            try:
                out.append((other, submission.check_file(other, folder)))
            except submission.SubmissionError:
                continue
    return out


STAND_INS: list[tuple[str, Any]] = []
"""In a handout: the student's own versions of Xen's stripped functions, installed in the
grader's hypervisor for its replays (a handout's grader is the student's own tool; the
course's grader is never stripped and never runs student code)."""


def reference_seam() -> None:
    """Every lesson function back to the package's own (in a handout: and the student's
    own Xen functions, where the package has none)."""
    seam.reset()
    for name, fn in STAND_INS:
        seam.install(name, fn)


def _handout_xen(lesson: Lesson, folder: Path) -> None:
    """In a handout, install the student's answers to the hypervisor track's stripped
    functions (other lessons than ``lesson``) in this process's hypervisor."""
    STAND_INS.clear()
    for other in all_lessons(lesson.path.parent):
        names = [f for f in other.functions if f.startswith("hypervisor.") and stripped(f)]
        if not names or other.id == lesson.id:
            continue
        try:
            text = submission.check_file(other, folder)
            module = types.ModuleType(f"lab_handout_{other.id}")
            exec(compile(text, f"{other.id}.py", "exec"), module.__dict__)
        except Exception:  # not answered yet, or not usable: the replays will say so
            continue
        for name in names:
            fn = getattr(module, seam.bare_name(name), None)
            if callable(fn):
                STAND_INS.append((name, fn))
    reference_seam()


def _grade(lesson: Lesson, folder: Path, tests: list[TestCase], opts: Options) -> LessonResult:
    _handout_xen(lesson, folder)
    try:
        return _grade_now(lesson, folder, tests, opts)
    finally:
        STAND_INS.clear()
        seam.reset()


def _grade_now(lesson: Lesson, folder: Path, tests: list[TestCase], opts: Options) -> LessonResult:
    try:
        text = submission.check_file(lesson, folder)
    except submission.SubmissionError as exc:
        return _fail_all(lesson, tests, BAD_SUBMISSION, str(exc), opts)
    runs = _runs(lesson, tests, opts)
    tree = source.child_tree(lesson)
    others = _stand_ins(lesson, folder)
    staged = submission.stage(lesson, text, {o.id: t for o, t in others})
    job = {
        "also": [{"file": f"{o.id}.py", "functions": list(o.functions)} for o, _ in others],
        "lesson": lesson.id,
        "functions": list(lesson.functions),
        "file": f"{lesson.id}.py",
        "workloads": [{"key": r.key, "file": r.file, "attr": r.attr, "plan": r.plan} for r in runs],
    }
    try:
        child = run_child(tree, staged, job, lesson.timeout_s, jail=opts.jail)
    finally:
        submission.unstage(staged)
    return _judge(lesson, tests, runs, child, opts)


def _judge(
    lesson: Lesson, tests: list[TestCase], runs: list[Run], child: ChildRun, opts: Options
) -> LessonResult:
    if child.timed_out:
        res = _fail_all(
            lesson,
            tests,
            TIMEOUT,
            f"timeout: the lesson ran longer than {lesson.timeout_s:g} s",
            opts,
        )
        res.output = child.output
        return res
    if child.overflow:
        res = _fail_all(
            lesson,
            tests,
            BAD_SUBMISSION,
            "the record channel went over its size cap (scored zero)",
            opts,
        )
        res.output = child.output
        return res
    try:
        mode, error, sent = parse_channel(child.records)
    except Tampered as exc:
        res = _fail_all(lesson, tests, BAD_SUBMISSION, f"{exc} (tampering: scored zero)", opts)
        res.output = child.output
        return res
    if error:
        res = _fail_all(
            lesson, tests, BAD_SUBMISSION, f"{lesson.id}.py cannot be used: {error}", opts
        )
        res.output = child.output
        return res
    raised: dict[str, str] = {}
    for s in sent.values():
        if s.end and isinstance(s.end.get("raised"), dict):
            raised.update({str(k): str(v)[:2000] for k, v in s.end["raised"].items()})
    by_test: dict[str, TestResult] = {}
    for run in runs:
        for r in _evaluate(lesson, run, sent.get(run.key), raised, opts):
            if r.number not in by_test or by_test[r.number].passed:
                by_test[r.number] = r  # a test run on two seeds passes only on both
    res = LessonResult(
        lesson.id,
        lesson.title,
        tests=[by_test[t.number] for t in tests],
        output=child.output,
        sandbox=mode,
    )
    if raised:
        res.message = "; ".join(f"{k} raised: {v}" for k, v in raised.items())
    elif not any(s.end for s in sent.values()) and runs:
        res.message = f"the child exited (status {child.exit_code}) before any workload ended"
    return res


def grade_many(lessons: Iterable[Lesson], folder: Path, opts: Options) -> list[LessonResult]:
    return [grade_lesson(lesson, folder, opts) for lesson in lessons]
