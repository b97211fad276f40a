"""The diagnosis track: a broken run shown to a student, who says what went wrong.

A diagnosis lesson (``track = "diagnosis"``) has no lesson functions. Its test files hold

- an **incident**: ``@incident(plan=...)`` -- a function that drives minikern with one of
  the course's breaks installed through the kernel seam (``Scene.broken``) and says what
  the truth is (``Scene.answer``). It runs in the grader's own process: nothing in it is
  student code.
- **questions**: ``ask(incident, key, points=N, name=...)`` -- one test per answer key.

Each student gets an **instance**: the incident run with a plan drawn from a seed derived
from the student's identity (:func:`seed_of`: a hash of the course salt, the lesson id
and the identity), so two students' answers differ and cannot be copied. The student
answers in ``<id>.toml`` (keys declared in ``lesson.toml``'s ``[answer]`` table); the
grader regenerates the instance from the submission's identity (:func:`identity_of`) and
compares. Grading parses TOML only: it never runs anything the student wrote.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import shlex
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from lessons.lab.results import BAD_SUBMISSION, GRADER_ERROR, LessonResult
from lessons.lab.testing import Check, Guest, Machine, Plan, Workload

__all__ = [
    "MAX_ANSWER",
    "MAX_IDENTITY",
    "AnswerError",
    "InstanceError",
    "Instance",
    "Question",
    "Row",
    "Scene",
    "apply_break",
    "break_doc",
    "ask",
    "course_salt",
    "generate",
    "guest_break",
    "identity_of",
    "incident",
    "judge",
    "normal_identity",
    "read_answer",
    "seed_of",
    "solution_text",
    "template_text",
]

MAX_ANSWER = 64 * 1024
"""An answer file larger than this is refused unread."""
ANSWER_TYPES = {"int": int, "str": str}
DEFAULT_SALT = "minikern"


class AnswerError(Exception):
    """What is wrong with an answer file (or the identity), in words for the student."""


class InstanceError(Exception):
    """The incident cannot be run in this copy of the course (a handout's kernel lacks
    the references), or it failed: never the student's fault."""


def _unavailable(lesson_id: str, exc: Exception) -> InstanceError:
    from lessons.lab.grader import stripped
    from minikern import steps

    gone = sorted(n for n in steps.REGISTRY if stripped(n))
    if gone:
        more = f" and {len(gone) - 2} more" if len(gone) > 2 else ""
        return InstanceError(
            f"this copy of the course is a handout: its kernel lacks the reference of "
            f"{', '.join(gone[:2])}{more}, so it cannot make your instance of {lesson_id}. "
            "Your instance is the one the course's grader makes: submit the answer template "
            "and the results show it drawn, or ask your course for it (an instructor runs "
            f"`minikern lab diagnose {lesson_id} --student YOU --out FILE`)."
        )
    return InstanceError(f"the incident of {lesson_id} failed: {type(exc).__name__}: {exc}")


# -- identity and seeds -----------------------------------------------------------------


MAX_IDENTITY = 256
"""Characters of an identity that count (an e-mail address is far shorter)."""
MAX_METADATA = 4 << 20
"""An engine's metadata file larger than this names no identity."""


def normal_identity(identity: str) -> str:
    """An identity as the seed sees it: blanks collapsed, lower case, at most
    :data:`MAX_IDENTITY` characters."""
    return " ".join(identity.split()).lower()[:MAX_IDENTITY]


def course_salt(root: Path | None = None) -> str:
    """The course's salt: ``$MINIKERN_COURSE_SALT``, else ``salt`` in
    ``lessons/course.toml``, else ``"minikern"``."""
    env = os.environ.get("MINIKERN_COURSE_SALT")
    if env:
        return env
    from lessons.lab.lessons import LESSONS_DIR

    path = (root or LESSONS_DIR) / "course.toml"
    try:
        salt = tomllib.loads(path.read_text(encoding="utf-8")).get("salt")
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return DEFAULT_SALT
    return salt if isinstance(salt, str) and salt else DEFAULT_SALT


def seed_of(lesson_id: str, identity: str, salt: str) -> int:
    """The instance seed of ``identity`` for ``lesson_id``: 63 bits of
    SHA-256(salt, lesson id, identity)."""
    text = "\0".join((salt, lesson_id, normal_identity(identity)))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def _read_json(path: Path) -> Any:
    try:
        if not path.is_file() or path.stat().st_size > MAX_METADATA:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


def _gradescope(data: Any) -> str | None:
    """``users[].email`` (else ``id``) of Gradescope's submission_metadata.json, sorted
    and joined with ``,`` (a group shares one instance)."""
    users = data.get("users") if isinstance(data, dict) else None
    if not isinstance(users, list) or not users:
        return None
    names = []
    for u in users:
        if not isinstance(u, dict):
            return None
        who = u.get("email") or u.get("id")
        if not isinstance(who, str | int) or isinstance(who, bool) or who == "":
            return None
        names.append(normal_identity(str(who)))
    return ",".join(sorted(names))


def _prairielearn(data: Any) -> str | None:
    """``params.student`` of PrairieLearn's data.json (the question's ``server.py``
    sets it), else its ``variant_seed`` (one variant per student)."""
    if not isinstance(data, dict):
        return None
    params = data.get("params")
    student = params.get("student") if isinstance(params, dict) else None
    if isinstance(student, str) and student.strip():
        return student
    seed = data.get("variant_seed")
    if isinstance(seed, str | int) and not isinstance(seed, bool) and str(seed).strip():
        return f"pl-variant-{seed}"
    return None


def identity_of(folder: Path, student: str | None = None) -> tuple[str, str] | None:
    """``(identity, where it came from)`` for the submission in ``folder``: ``student``
    if given; else Gradescope's ``submission_metadata.json`` beside the submission folder
    (``/autograder/submission`` -> ``/autograder/submission_metadata.json``); else
    PrairieLearn's ``data/data.json`` beside it (``/grade/student`` ->
    ``/grade/data/data.json``). Nothing inside the submission folder is believed."""
    if student is not None and student.strip():
        return student, "--student"
    parent = folder.resolve().parent
    found = _gradescope(_read_json(parent / "submission_metadata.json"))
    if found:
        return found, "Gradescope submission_metadata.json"
    found = _prairielearn(_read_json(parent / "data" / "data.json"))
    if found:
        return found, "PrairieLearn data.json"
    return None


# -- declaring incidents and questions ---------------------------------------------------


@attrs.frozen
class Row:
    """One line of the shown trace: ``number`` (0: a note, not an operation), what
    happened and, for a hypercall, its verdict (hidden when it is the question)."""

    number: int
    clock: int
    call: str
    what: str
    verdict: str
    hidden: bool = False


class Scene(Guest):
    """What an incident drives: a :class:`Guest` (``boot``, ``kernel``, ``xen``) plus
    the break (``broken``), the kernel's panic (``attempt``), the story (``say``) and the
    truth (``answer``)."""

    def __init__(self, w: Workload) -> None:
        super().__init__(w)
        self.truth: dict[str, Any] = {}
        self.notes: list[tuple[int, str]] = []
        """(the emission index of the record the note follows, or -1; the text)"""
        self.hide_from: int | None = None
        self.panic: Any = None
        self.story: list[str] = []
        self.pictures: list[tuple[str, Any]] = []

    @contextmanager
    def broken(self, name: str, impl: Callable[..., Any]) -> Iterator[None]:
        """Run lesson function ``name`` as ``impl`` (a break) inside the block."""
        from minikern import steps

        with steps.override(steps.lesson_function(name).wrapper, impl):
            yield

    def scatter_free_frames(self, seed: int) -> None:
        """Shuffle the booted kernel's free list by ``seed``: a kernel that has run a
        while hands frames out in no particular order, so which mfns a run uses
        differs between instances (nothing else changes: no hypercall is made)."""
        random.Random(seed).shuffle(self.kernel.km.alloc.free_list)

    def attempt(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn``; a :class:`~minikern.KernelPanic` is kept (``panic``) and ends
        the story there. Returns what ``fn`` returned, or None after a panic."""
        from minikern import KernelPanic

        try:
            return fn()
        except KernelPanic as exc:
            self.panic = exc
            return None

    @property
    def records(self) -> list[Any]:
        return list(self.xen.trace.records) if self.xen is not None else []

    def say(self, text: str) -> None:
        """A line of narration at this point of the trace (not an operation)."""
        records = self.records
        anchor = max(range(len(records)), key=lambda i: (_order(records[i]), i), default=-1)
        self.notes.append((anchor, text))

    def tell(self, text: str) -> None:
        """A paragraph of the story shown above the trace."""
        self.story.append(text)

    def picture(self, title: str, renderable: Any) -> None:
        """A rich renderable shown below the trace (drawn from the machine now)."""
        self.pictures.append((title, renderable))

    def answer(self, **truth: Any) -> None:
        """The correct answers (JSON-able values)."""
        self.truth.update(truth)

    def ordered(self) -> list[Any]:
        """The trace as shown: in clock order (a multicall before its entries; a TLB
        flush after the hypercall that caused it)."""
        return _ordered(self.records)

    def number(self, record: Any) -> int:
        """The ``#`` of ``record`` in the shown trace (1-based)."""
        for i, r in enumerate(self.ordered(), 1):
            if r is record:
                return i
        raise LookupError("that record is not in the trace")

    def first_refusal(self) -> Any:
        """The first refused hypercall record (a multicall's entry, not the multicall)."""
        for r in self.xen.trace.hypercalls():
            if r.result != 0 and r.op != "multicall":
                return r
        raise LookupError("nothing was refused")

    def hide_batch_of(self, record: Any) -> None:
        """Hide the verdicts from the start of ``record``'s batch (its multicall, if it is
        an entry of one) onwards: the verdict is the question."""
        rows = self.ordered()
        n = self.number(record)
        while n > 1 and not (rows[n - 1].kind == "hypercall" and rows[n - 1].depth == 0):
            n -= 1
        self.hide_from = n


def _order(record: Any) -> tuple[int, bool]:
    return (record.clock, record.kind != "hypercall")


def _ordered(records: list[Any]) -> list[Any]:
    return sorted(records, key=_order)


def guest_break(lesson_id: str, name: str, function: str) -> Callable[..., Any]:
    """Function ``function`` of guest lesson ``lesson_id``'s ``breaks/<name>.py``: the
    course's own broken version, reused to make an incident."""
    from lessons.lab.lessons import LESSONS_DIR, load_file

    fn: Callable[..., Any] = getattr(
        load_file(LESSONS_DIR / lesson_id / "breaks" / f"{name}.py"), function
    )
    return fn


def incident(
    *,
    plan: Callable[[random.Random], Plan],
    nr_pages: int = 512,
    frames: int = 16384,
    guest_width: int = 64,
) -> Callable[[Callable[[Scene, Plan], None]], Workload]:
    """Declare a lesson's incident (decorator): ``fn(scene, plan)`` runs minikern with
    a break and calls ``scene.answer(...)``."""

    def deco(fn: Callable[[Scene, Plan], None]) -> Workload:
        doc = (fn.__doc__ or "").strip()

        def run(g: Guest, p: Plan) -> None:
            if not isinstance(g, Scene):
                raise TypeError("an incident runs on a Scene")
            fn(g, p)

        return Workload(fn.__name__, run, plan, nr_pages, frames, doc, guest_width)

    return deco


def _no_machine(m: Machine, plan: Plan) -> None:
    raise TypeError("a diagnosis question is judged on an answer, not on a machine")


@attrs.frozen
class Question(Check):
    """One test of a diagnosis lesson: the answer's ``answer_key`` against the truth."""

    answer_key: str = ""


def ask(on: Workload, key: str, *, points: int, name: str) -> Question:
    """One question: ``key`` of the answer file must equal the instance's truth."""
    if type(points) is not int or points < 0:
        raise ValueError(f"points must be an int >= 0, not {points!r}")
    return Question(f"{on.name}_{key}", name, points, on, _no_machine, key)


# -- instances ----------------------------------------------------------------------------


@attrs.frozen
class Instance:
    """One student's broken run: the rows shown, the truth, the story."""

    lesson: str
    identity: str
    seed: int
    plan: Plan
    rows: tuple[Row, ...]
    truth: dict[str, Any]
    story: tuple[str, ...]
    pictures: tuple[tuple[str, Any], ...]


def _data_text(data: bytes, user: bool) -> str:
    from hypervisor.render.common import entry_text

    if not any(data):
        return f"{len(data)} zero bytes"
    if len(data) > 16 and data == data[:1] * len(data):
        return f"{len(data)} bytes of {data[0]:#04x}"
    if user:
        return data.hex() if len(data) <= 32 else data[:32].hex() + f"… ({len(data)} bytes)"
    if len(data) == 8:
        return entry_text(int.from_bytes(data, "little"))
    if len(data) == 4096:
        slots = [(i // 8, int.from_bytes(data[i : i + 8], "little")) for i in range(0, 4096, 8)]
        used = [(n, e) for n, e in slots if e]
        if len(used) <= 64:
            shown = ", ".join(f"[{n}] {entry_text(e)}" for n, e in used[:6])
            more = f", … {len(used) - 6} more" if len(used) > 6 else ""
            return f"a page of {len(used)} entries: {shown}{more}"
    text = repr(data[:16])
    return text + ("…" if len(data) > 16 else "") + f" ({len(data)} bytes)"


def _row(n: int, rec: Any, xen: Any, hidden: bool) -> Row:
    from hypervisor import abi, render

    who = ("  └ " * getattr(rec, "depth", 0)) if rec.kind == "hypercall" else ""
    if rec.kind == "hypercall":
        verdict = "ok" if rec.result >= 0 else abi.errno_name(rec.result)
        if rec.result < 0 and rec.rule:
            verdict += f" [{rec.rule}]"
        return Row(n, rec.clock, who + rec.op, render.decode_args(rec, xen), verdict, hidden)
    mode = "user" if getattr(rec, "user", False) else "kernel"
    if rec.kind == "store":
        return Row(
            n, rec.clock, "store", f"{rec.va:#x} ({mode}) := {_data_text(rec.data, rec.user)}", ""
        )
    if rec.kind == "load":
        return Row(n, rec.clock, "load", f"{rec.length} bytes at {rec.va:#x} ({mode})", "")
    if rec.kind == "page_fault":
        return Row(n, rec.clock, "page fault", f"at {rec.va:#x}, error code {rec.error_code}", "")
    if rec.kind == "tlb_flush":
        target = f" {rec.target:#x}" if rec.target else ""
        return Row(n, rec.clock, "tlb flush", f"{rec.scope}{target} ({rec.reason})", "")
    if rec.kind == "trapped_write":
        text = f"L1 {rec.mfn:#x}[{rec.slot}] {rec.old:#x} -> {rec.new:#x}"
        verdict = "ok" if rec.result >= 0 else abi.errno_name(rec.result)
        return Row(n, rec.clock, "trapped write", text, verdict, hidden)
    return Row(n, getattr(rec, "clock", 0), rec.kind, "", "")


def _rows(scene: Scene) -> tuple[Row, ...]:
    after: dict[int, list[str]] = {}
    for anchor, text in scene.notes:
        after.setdefault(anchor, []).append(text)
    index = {id(r): i for i, r in enumerate(scene.records)}
    out = [Row(0, 0, "·", text, "") for text in after.get(-1, [])]
    for n, rec in enumerate(scene.ordered(), 1):
        hidden = scene.hide_from is not None and n >= scene.hide_from
        out.append(_row(n, rec, scene.xen, hidden))
        out.extend(Row(0, 0, "·", text, "") for text in after.get(index[id(rec)], []))
    return tuple(out)


def _incident_of(lesson: Any) -> Workload:
    questions = [t.check for t in lesson.tests(hidden=False) if isinstance(t.check, Question)]
    if not questions:
        raise LookupError(f"{lesson.id} has no questions")
    incident = questions[0].workload
    assert isinstance(incident, Workload)  # a Check's workload may also be a Battery
    return incident


@functools.lru_cache(maxsize=64)
def _generate(folder: str, identity: str, salt: str) -> Instance:
    from lessons.lab.lessons import read_toml
    from minikern import steps

    lesson = read_toml(Path(folder))
    lesson_id = lesson.id
    w = _incident_of(lesson)
    seed = seed_of(lesson_id, identity, salt)
    plan = w.plan(random.Random(seed))
    scene = Scene(w)
    steps.reset()
    try:
        w.run(scene, plan)
    except Exception as exc:
        raise _unavailable(lesson_id, exc) from exc
    finally:
        steps.reset()
    return Instance(
        lesson_id,
        normal_identity(identity),
        seed,
        plan,
        _rows(scene),
        dict(scene.truth),
        tuple(scene.story),
        tuple(scene.pictures),
    )


def generate(lesson: Any, identity: str, salt: str | None = None) -> Instance:
    """``identity``'s instance of diagnosis lesson ``lesson`` (cached per process)."""
    return _generate(str(lesson.path), normal_identity(identity), salt or course_salt())


# -- answers --------------------------------------------------------------------------------


def _spec(lesson: Any) -> dict[str, dict[str, Any]]:
    return dict(lesson.answer)


def read_answer(folder: Path, lesson: Any) -> dict[str, Any]:
    """The answers in ``folder/<id>.toml``, each of the type ``[answer]`` declares;
    :class:`AnswerError` says what is wrong (missing, a symlink out of the folder, too
    large, not UTF-8, not TOML, a key of the wrong type). Unknown keys are ignored."""
    name = f"{lesson.id}.toml"
    if not folder.is_dir():
        raise AnswerError(f"the submission folder {folder} does not exist")
    path = folder / name
    if not path.exists() and not path.is_symlink():
        raise AnswerError(
            f"{name} is missing from {folder} (`minikern lab start` writes a template; "
            f"`minikern lab diagnose {lesson.id} --student YOU` shows your instance)"
        )
    real = path.resolve()
    if path.is_symlink() and not real.is_relative_to(folder.resolve()):
        raise AnswerError(f"{name} is a symlink to {real}, outside the submission")
    if not real.is_file():
        raise AnswerError(f"{name} is not a regular file")
    with real.open("rb") as f:
        data = f.read(MAX_ANSWER + 1)
    if len(data) > MAX_ANSWER:
        raise AnswerError(f"{name} is larger than {MAX_ANSWER} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AnswerError(f"{name} is not UTF-8 text (byte {exc.start})") from exc
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AnswerError(f"{name} is not TOML: {exc}") from exc
    except RecursionError as exc:
        raise AnswerError(f"{name} nests too deeply to be an answer") from exc
    out: dict[str, Any] = {}
    for key, spec in _spec(lesson).items():
        if key not in parsed:
            continue
        value, want = parsed[key], ANSWER_TYPES[spec["type"]]
        if type(value) is not want:
            got = type(value).__name__
            raise AnswerError(
                f"{name}: {key} must be {spec['type']} (e.g. {spec['example']}), not {got}"
            )
        out[key] = value
    return out


def _same(key: str, got: Any, want: Any) -> bool:
    if isinstance(want, str) and isinstance(got, str):
        g, w = got.strip(), want.strip()
        return g.upper() == w.upper() if key in ("errno", "exit_errno", "command") else g == w
    return type(got) is type(want) and got == want


def judge(q: Question, inst: Instance, answer: dict[str, Any]) -> str | None:
    """None if ``answer`` gets question ``q`` right, else why not (never the truth)."""
    key = q.answer_key
    if key not in inst.truth:
        raise LookupError(f"the incident gives no truth for {key!r}")
    if key not in answer or answer[key] in ("", 0):
        return f"{key} is not answered"
    if _same(key, answer[key], inst.truth[key]):
        return None
    return f"{key} = {answer[key]!r} is not the answer for your instance"


HEX_KEYS = ("frame", "va", "mfn")
"""Answer keys written in hex (machine frames and addresses, as the trace shows them)."""


def _toml_value(key: str, value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:#x}" if key in HEX_KEYS else str(value)
    return json.dumps(value)


def template_text(lesson: Any) -> str:
    """The answer template ``<id>.toml``: every key, unanswered (scores zero)."""
    lines = [
        f"# {lesson.id}: {lesson.title}",
        f"# Your instance: minikern lab diagnose {lesson.id} --student YOUR-IDENTITY",
        "# (your identity is your Gradescope email, or what your course tells you).",
        "",
    ]
    for key, spec in _spec(lesson).items():
        lines.append(f"# {spec['help']} (e.g. {spec['example']})")
        empty = "0" if spec["type"] == "int" else '""'
        lines.append(f"{key} = {empty}")
    return "\n".join(lines) + "\n"


def solution_text(lesson: Any, identity: str) -> str:
    """The correct answers of ``identity``'s instance, as an answer file."""
    inst = generate(lesson, identity)
    lines = [f"# {lesson.id}: the answers of the instance of {inst.identity}", ""]
    for key in _spec(lesson):
        lines.append(f"{key} = {_toml_value(key, inst.truth[key])}")
    return "\n".join(lines) + "\n"


def break_doc(text: str) -> str:
    """The ``doc`` of a break's TOML text (empty if it has none or does not parse)."""
    try:
        doc = tomllib.loads(text).get("doc", "")
    except tomllib.TOMLDecodeError:
        return ""
    return " ".join(doc.split()) if isinstance(doc, str) else ""


def apply_break(lesson: Any, identity: str, break_path: Path) -> str:
    """A break (``breaks/<name>.toml``: a plausible wrong answer) made concrete for
    ``identity``: its keys replace the correct answers; ``[offset]`` adds to them."""
    inst = generate(lesson, identity)
    data = tomllib.loads(break_path.read_text(encoding="utf-8"))
    answers = {k: inst.truth[k] for k in _spec(lesson)}
    for key, delta in dict(data.pop("offset", {})).items():
        answers[key] = int(answers[key]) + int(delta)
    data.pop("doc", None)
    answers.update(data)
    return "\n".join(f"{k} = {_toml_value(k, v)}" for k, v in answers.items()) + "\n"


# -- grading ----------------------------------------------------------------------------------


def grade(lesson: Any, folder: Path, tests: list[Any], opts: Any) -> LessonResult:
    """Grade ``folder/<id>.toml`` against the instance of the submission's identity.
    A missing identity or a bad answer file scores zero with one clear message."""
    from lessons.lab.grader import _fail_all, _hint_pointer, _result

    found = identity_of(folder, opts.student)
    if found is None:
        msg = (
            "no identity to make your instance from: grade with --student NAME "
            "(on Gradescope it is read from submission_metadata.json)"
        )
        return _fail_all(lesson, tests, BAD_SUBMISSION, msg, opts)
    identity, source = found
    try:
        answer = read_answer(folder, lesson)
    except AnswerError as exc:
        return _fail_all(lesson, tests, BAD_SUBMISSION, str(exc), opts)
    try:
        inst = generate(lesson, identity)
    except InstanceError as exc:
        return _fail_all(lesson, tests, GRADER_ERROR, str(exc), opts)
    out = LessonResult(lesson.id, lesson.title, sandbox="none (answers are only parsed)")
    out.message = f"instance of {inst.identity!r} (identity from {source})"
    for t in tests:
        q = t.check
        why = judge(q, inst, answer) if isinstance(q, Question) else "not a question"
        rule = "" if why is None else f"diag.{q.answer_key if isinstance(q, Question) else '?'}"
        lines = [] if why is None else [why]
        pointer = _hint_pointer(lesson, rule) if rule else ""
        if pointer:
            lines.append(pointer)
        r = _result(lesson, t, why is None, "\n".join(lines), rule, opts)
        if r.reproduce:
            who = shlex.quote(inst.identity)
            r.reproduce = f"minikern lab diagnose {lesson.id} --student {who}"
        out.tests.append(r)
    if getattr(opts, "show_instance", False) and out.score < out.max_score:
        out.instance = instance_text(lesson, inst)
    return out


# -- showing an instance -------------------------------------------------------------------


def trace_table(inst: Instance, last: int | None = None) -> Any:
    """The instance's trace as a rich table: ``#`` (the operation number answers use),
    clock, call, what it did, and Xen's verdict (``?`` where it is the question);
    ``last``: only the last rows."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(title="the trace", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("#", justify="right")
    table.add_column("clock", justify="right", style="dim")
    table.add_column("call", no_wrap=True)
    table.add_column("what", ratio=3, overflow="fold")
    table.add_column("verdict", ratio=1, overflow="fold")
    for r in inst.rows[-last:] if last else inst.rows:
        if r.number == 0:
            table.add_row("", "", Text(r.call, style="cyan"), Text(r.what, style="cyan"), "")
            continue
        if r.hidden and r.verdict:
            verdict = Text("?", style="bold yellow")
        elif r.verdict == "ok":
            verdict = Text("ok", style="green")
        else:
            verdict = Text(r.verdict, style="bold red")
        table.add_row(str(r.number), str(r.clock), r.call, r.what, verdict)
    return table


def renderables(lesson: Any, inst: Instance) -> list[Any]:
    """Everything ``minikern lab diagnose`` draws: the story, the trace, the pictures
    and the answer template."""
    from rich.panel import Panel
    from rich.syntax import Syntax

    out: list[Any] = [
        Panel(
            "\n\n".join(inst.story) or lesson.title,
            title=f"{lesson.id}: the instance of {inst.identity!r}",
            border_style="cyan",
        ),
        trace_table(inst),
    ]
    for title, picture in inst.pictures:
        out += [title, picture]
    out.append(
        Panel(
            Syntax(template_text(lesson), "toml", theme="ansi_dark", background_color="default"),
            title=f"answer in {lesson.id}.toml",
        )
    )
    return out


def instance_text(lesson: Any, inst: Instance, width: int = 120) -> str:
    """The instance as plain text (no colour): for results files and ``--out``."""
    import io

    from rich.console import Console

    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    for item in renderables(lesson, inst):
        console.print(item)
    return console.export_text()
