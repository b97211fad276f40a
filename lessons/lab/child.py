"""The child process: import the submission, install its functions, run the workloads.

Runs inside the jail (``jail.py``) on the lesson's package tree, in which the lesson's own
reference bodies are stripped. It reads its job (JSON) from stdin and writes, on the
record channel (a pipe the grader reads, capped in size), one JSON object per line:

- ``{"kind": "lab.submission", "error": ...}`` when the submission cannot be used;
- per workload: ``{"kind": "lab.workload", "key": ...}``, the machine's trace
  (``Tracer.to_jsonl``: a header, then every record), then ``{"kind": "lab.end", ...}`` with
  the processes' trees, whether it completed, and which lesson function raised.

Nothing here is trusted by the grader: it replays the records on its own machine and
computes every verdict there. A child that lies, stops or floods only loses points.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lessons.lab import seam

INT_TYPES = {"int", "Mfn", "Pfn", "VAddr", "MAddr", "abi.Mfn", "abi.Pfn", "abi.VAddr"}


class Channel:
    """The record channel: whole lines, written with ``os.write``."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, obj: dict[str, Any]) -> None:
        self.raw(json.dumps(obj) + "\n")

    def raw(self, text: str) -> None:
        data = text.encode()
        while data:
            n = os.write(self.fd, data)
            data = data[n:]


def _returns(name: str) -> str:
    """What the reference's return annotation asks for: ``none``, ``int``, ``bool`` or ``any``."""
    try:
        ann = seam.signature(name).return_annotation
    except (LookupError, ValueError, TypeError):
        return "any"
    text = ann if isinstance(ann, str) else getattr(ann, "__name__", str(ann))
    if text == "None":
        return "none"
    if text in INT_TYPES:
        return "int"
    return "bool" if text == "bool" else "any"


def _bad_return(kind: str, value: object) -> bool:
    if kind == "none":
        return value is not None
    if kind == "int":
        return type(value) is not int
    return kind == "bool" and type(value) is not bool


def _refusal_type(name: str) -> type[BaseException] | None:
    """What a lesson function may raise as its normal answer: Xen's ``GuestError`` for
    the hypervisor's functions (a refusal), nothing for the kernel's."""
    if not name.startswith("hypervisor."):
        return None
    from hypervisor.errors import GuestError

    return GuestError


def wrap(name: str, fn: Callable[..., Any], raised: dict[str, str]) -> Callable[..., Any]:
    """``fn`` as the kernel (or Xen) will call it: an exception escaping it (other than a
    hypervisor function's ``GuestError``, its refusal), or a return value of the wrong
    type, is remembered under ``name`` (and raised on)."""
    kind = _returns(name)
    refusal = _refusal_type(name)

    def student(*args: Any, **kwargs: Any) -> Any:
        try:
            value = fn(*args, **kwargs)
        except BaseException as exc:
            if refusal is not None and isinstance(exc, refusal):
                raise
            raised.setdefault(name, f"{type(exc).__name__}: {exc}"[:2000])
            _blame(name)
            raise
        if _bad_return(kind, value):
            want = {"none": "None", "int": "an int", "bool": "a bool"}[kind]
            msg = f"returned {type(value).__name__} {value!r:.80}, but it must return {want}"
            raised.setdefault(name, msg)
            _blame(name)
            raise TypeError(f"{name} {msg}")
        return value

    return student


def _blame(name: str) -> None:
    """Tell a battery's host which lesson function its operation crashed in."""
    testing = sys.modules.get("lessons.lab.testing")
    if testing is not None:
        testing.BLAME.append(seam.bare_name(name))


def load_submission(
    path: str, functions: list[str], name: str = "lab_submission"
) -> dict[str, Callable[..., Any]]:
    """Import the submission file (as module ``name``) and take each lesson function."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    out: dict[str, Callable[..., Any]] = {}
    for function in functions:
        fn = getattr(module, seam.bare_name(function), None)
        if not inspect.isfunction(fn) or fn.__module__ != name:
            raise AttributeError(
                f"{seam.bare_name(function)} is not a function written in the submission"
            )
        out[function] = fn
    return out


def load_workload(tree: str, rel: str, attr: str) -> Any:
    path = Path(tree) / "lesson" / rel
    spec = importlib.util.spec_from_file_location("lab_tests_" + path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {rel}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, attr)


def _install(installed: list[tuple[str, Callable[..., Any]]]) -> None:
    for name, fn in installed:
        seam.install(name, fn)


def run_battery(
    chan: Channel,
    b: Any,
    item: dict[str, Any],
    raised: dict[str, str],
    installed: list[tuple[str, Callable[..., Any]]],
) -> None:
    """One battery (hypervisor track): run it on a fresh host with the student's functions
    installed, send every operation's outcome (the grader compares them with its own)."""
    from lessons.lab.testing import run_battery as run

    chan.send({"kind": "lab.battery", "key": item["key"]})
    ops: list[dict[str, Any]] = []
    seam.reset()  # the start-of-day machine is built by the reference ...
    try:
        try:
            host, error = run(b, item["plan"], lambda: _install(installed))
        except NotImplementedError:
            # ... where this stripped copy has one: the domain builder validates the boot
            # tables through get_page_type and promote_l2_table (h02, h03), so there it
            # is built with the student's functions, as Xen builds dom0 with its own.
            _install(installed)
            host, error = run(b, item["plan"])
        ops = host.ops
    except BaseException as exc:  # the machine could not even be built
        error = f"{type(exc).__name__}: {exc}"[:4000]
    for op in ops:
        chan.send({"kind": "lab.op", "op": op})
    chan.send(
        {
            "kind": "lab.end",
            "key": item["key"],
            "completed": not error,
            "error": error,
            "raised": dict(raised),
            "processes": {},
        }
    )


def run_workload(
    chan: Channel,
    tree: str,
    item: dict[str, Any],
    raised: dict[str, str],
    installed: list[tuple[str, Callable[..., Any]]],
) -> None:
    """One workload: run it on a fresh machine, send what replay needs."""
    from lessons.lab.testing import Battery, Guest

    w = load_workload(tree, item["file"], item["attr"])
    if isinstance(w, Battery):
        run_battery(chan, w, item, raised, installed)
        return
    guest = Guest(w)
    chan.send({"kind": "lab.workload", "key": item["key"]})
    error = ""
    completed = False
    try:
        w.run(guest, item["plan"])
        completed = True
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"[:4000]
    if guest.xen is not None:
        chan.raw(guest.xen.trace.to_jsonl())
    try:
        processes = guest.processes()
    except Exception:
        processes = {}
    chan.send(
        {
            "kind": "lab.end",
            "key": item["key"],
            "completed": completed,
            "error": error,
            "raised": dict(raised),
            "processes": {str(k): v for k, v in processes.items()},
        }
    )


def main(tree: str, submission: str, mode: str, fd: int) -> None:
    job = json.loads(sys.stdin.read())
    chan = Channel(fd)
    chan.send({"kind": "lab.start", "mode": mode})
    raised: dict[str, str] = {}
    installed: list[tuple[str, Callable[..., Any]]] = []
    if job.get("file"):
        try:
            fns = load_submission(os.path.join(submission, job["file"]), job["functions"])
        except BaseException as exc:
            chan.send({"kind": "lab.submission", "error": f"{type(exc).__name__}: {exc}"[:4000]})
            return
        installed += [(name, wrap(name, fn, raised)) for name, fn in fns.items()]
    for i, extra in enumerate(job.get("also", [])):
        # a handout's other lessons: the student's own answers stand in for the reference
        try:
            path = os.path.join(submission, extra["file"])
            fns = load_submission(path, extra["functions"], f"lab_also_{i}")
        except BaseException:
            continue
        installed += [(name, wrap(name, fn, raised)) for name, fn in fns.items()]
    _install(installed)
    for item in job["workloads"]:
        run_workload(chan, tree, item, raised, installed)
    chan.send({"kind": "lab.done"})
