"""A submission folder, checked without running any of it.

The grader reads a submission's ``<id>.py`` as text and parses it (never imports it):
a missing folder or file, a symlink that leads outside the folder, a file that is not
UTF-8 or does not parse, a missing lesson function or one whose parameters differ from
the lesson's each get one clear message. What passes is staged -- that one file, copied
into a fresh folder -- for the child to import.
"""

from __future__ import annotations

import ast
import inspect
import os
import shutil
import tempfile
from pathlib import Path

from lessons.lab import seam
from lessons.lab.lessons import Lesson

__all__ = ["SubmissionError", "check_file", "stage"]

MAX_SOURCE = 1 << 20


class SubmissionError(Exception):
    """What is wrong with a submission, in words for the student."""


def _read(folder: Path, name: str) -> str:
    if not folder.is_dir():
        raise SubmissionError(f"the submission folder {folder} does not exist")
    path = folder / name
    if not path.exists() and not path.is_symlink():
        raise SubmissionError(f"{name} is missing from {folder} (`minikern lab start` makes one)")
    real = path.resolve()
    if path.is_symlink() and not real.is_relative_to(folder.resolve()):
        raise SubmissionError(f"{name} is a symlink to {real}, outside the submission")
    if not real.is_file():
        raise SubmissionError(f"{name} is not a regular file")
    data = real.read_bytes()[: MAX_SOURCE + 1]
    if len(data) > MAX_SOURCE:
        raise SubmissionError(f"{name} is larger than {MAX_SOURCE} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SubmissionError(f"{name} is not UTF-8 text (byte {exc.start})") from exc


def _params(node: ast.FunctionDef) -> tuple[list[str], bool]:
    a = node.args
    names = [x.arg for x in [*a.posonlyargs, *a.args]]
    return names, a.vararg is not None


def _check_signature(name: str, node: ast.FunctionDef) -> None:
    want = [
        p.name
        for p in seam.signature(name).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    got, star = _params(node)
    if got == want or (star and got == want[: len(got)]):
        return
    raise SubmissionError(
        f"{node.name}({', '.join(got)}) must take the lesson's parameters ({', '.join(want)})"
    )


def check_file(lesson: Lesson, folder: Path) -> str:
    """The submission's ``<id>.py`` source, checked; :class:`SubmissionError` otherwise."""
    name = f"{lesson.id}.py"
    source = _read(folder, name)
    try:
        tree = ast.parse(source, filename=name)
    except SyntaxError as exc:
        raise SubmissionError(f"{name} line {exc.lineno}: syntax error: {exc.msg}") from exc
    top: dict[str, ast.stmt] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            top[node.name] = node
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.Import | ast.ImportFrom):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Name):
                    top.setdefault(sub.id, node)
                elif isinstance(sub, ast.alias):
                    top.setdefault(sub.asname or sub.name.split(".")[0], node)
    for fn in lesson.functions:
        bare = seam.bare_name(fn)
        found = top.get(bare)
        if found is None:
            raise SubmissionError(f"{name} does not define {bare} (lesson function {fn})")
        if isinstance(found, ast.Import | ast.ImportFrom):
            raise SubmissionError(f"{name} imports {bare}: write it yourself (def {bare}(...))")
        if isinstance(found, ast.AsyncFunctionDef | ast.ClassDef):
            raise SubmissionError(f"{bare} in {name} must be a plain function (def)")
        if isinstance(found, ast.FunctionDef):
            _check_signature(fn, found)
    return source


def stage(lesson: Lesson, source: str, others: dict[str, str] | None = None) -> Path:
    """A fresh folder holding only ``<id>.py`` (and the checked ``others``, id -> source):
    what the child sees of the submission."""
    folder = Path(tempfile.mkdtemp(prefix="minikern-sub-"))
    os.chmod(folder, 0o755)
    for lesson_id, text in {**(others or {}), lesson.id: source}.items():
        path = folder / f"{lesson_id}.py"
        path.write_text(text, encoding="utf-8")
        os.chmod(path, 0o644)
    return folder


def unstage(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def signature_text(name: str) -> str:
    """``pin_table(km, pfn, level)`` for messages."""
    return f"{seam.bare_name(name)}{inspect.signature(seam.reference(name))}"
