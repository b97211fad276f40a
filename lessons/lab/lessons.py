"""Lessons as data: ``lessons/<id>/lesson.toml`` and the test files beside it.

A lesson folder's name is its id: ``NN_slug`` (guest track), ``hNN_slug`` (hypervisor
track), ``dNN_slug`` (diagnosis). Tests are numbered ``NN.k`` in order: the public test
files (sorted), then the hidden ones.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs

from lessons.lab.testing import Battery, Check, Workload

__all__ = ["LESSONS_DIR", "Lesson", "LessonError", "TestCase", "all_lessons", "load", "load_file"]

LESSONS_DIR = Path(__file__).resolve().parent.parent
ID_PATTERN = re.compile(r"^[hd]?\d\d_[a-z0-9_]+$")
TRACKS = ("guest", "hypervisor", "diagnosis")


class LessonError(Exception):
    """A lesson folder that does not follow the format (the course's bug, not a student's)."""


@attrs.frozen
class TestCase:
    """One numbered test of a lesson: a check and the file it came from."""

    number: str
    check: Check
    hidden: bool
    file: Path

    @property
    def points(self) -> int:
        return self.check.points

    @property
    def name(self) -> str:
        return self.check.name

    @property
    def workload(self) -> Workload | Battery:
        return self.check.workload


@attrs.frozen
class Lesson:
    """A lesson read from its ``lesson.toml``."""

    id: str
    title: str
    track: str
    functions: tuple[str, ...]
    timeout_s: float
    hints: dict[str, tuple[str, ...]]
    path: Path
    answer: dict[str, dict[str, str]] = attrs.Factory(dict)
    """Diagnosis track: answer key -> ``{"type": "int"|"str", "help": ..., "example": ...}``."""

    @property
    def number(self) -> str:
        """``"04"`` for ``04_pin_and_load`` (the prefix of its test numbers)."""
        return self.id.split("_", 1)[0]

    def test_files(self, hidden: bool) -> list[Path]:
        """The public test files, then (with ``hidden``) the hidden ones."""
        files = sorted((self.path / "tests").glob("test_*.py"))
        if hidden:
            files += sorted((self.path / "tests" / "hidden").glob("test_*.py"))
        return files

    def breaks(self) -> dict[str, Path]:
        """Break name -> its file (``breaks/<name>.py``; a diagnosis lesson's wrong
        answers are ``breaks/<name>.toml``)."""
        suffix = "*.toml" if self.track == "diagnosis" else "*.py"
        return {p.stem: p for p in sorted((self.path / "breaks").glob(suffix))}

    def tests(self, hidden: bool) -> list[TestCase]:
        """Every test, numbered."""
        out: list[TestCase] = []
        for file in self.test_files(hidden):
            is_hidden = file.parent.name == "hidden"
            for chk in checks_in(load_file(file)):
                out.append(TestCase(f"{self.number}.{len(out) + 1}", chk, is_hidden, file))
        return out

    def max_points(self, hidden: bool) -> int:
        return sum(t.points for t in self.tests(hidden))


def _str_list(data: dict[str, Any], key: str, where: Path) -> tuple[str, ...]:
    value = data.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LessonError(f"{where}: {key} must be a list of strings")
    return tuple(value)


def read_toml(folder: Path) -> Lesson:
    """Parse ``folder/lesson.toml``; :class:`LessonError` says what is wrong."""
    where = folder / "lesson.toml"
    try:
        data = tomllib.loads(where.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise LessonError(f"{where}: {exc}") from exc
    if data.get("id") != folder.name:
        raise LessonError(f"{where}: id must be the folder's name {folder.name!r}")
    track = data.get("track", "guest")
    if track not in TRACKS:
        raise LessonError(f"{where}: track must be one of {TRACKS}")
    timeout = data.get("timeout_s", 20)
    if not isinstance(timeout, int | float) or timeout <= 0:
        raise LessonError(f"{where}: timeout_s must be a positive number")
    hints = data.get("hints", {})
    if not isinstance(hints, dict):
        raise LessonError(f"{where}: [hints] must be a table")
    if track == "diagnosis":
        data.setdefault("functions", [])
    return Lesson(
        id=folder.name,
        title=str(data.get("title", folder.name)),
        track=track,
        functions=_str_list(data, "functions", where),
        timeout_s=float(timeout),
        hints={str(k): _str_list(hints, k, where) for k in hints},
        path=folder,
        answer=_answer_spec(data, track, where),
    )


def _answer_spec(data: dict[str, Any], track: str, where: Path) -> dict[str, dict[str, str]]:
    """The ``[answer]`` table of a diagnosis lesson: each key's type, help and example."""
    table = data.get("answer", {})
    if track != "diagnosis":
        return {}
    if not isinstance(table, dict) or not table:
        raise LessonError(f"{where}: a diagnosis lesson needs an [answer] table")
    out = {}
    for key, spec in table.items():
        if not isinstance(spec, dict) or spec.get("type") not in ("int", "str"):
            raise LessonError(f'{where}: [answer.{key}] needs type = "int" or "str"')
        out[str(key)] = {
            "type": str(spec["type"]),
            "help": str(spec.get("help", key)),
            "example": str(spec.get("example", "")),
        }
    return out


def all_lessons(root: Path = LESSONS_DIR) -> list[Lesson]:
    """Every lesson under ``root``, in id order."""
    return [
        read_toml(p)
        for p in sorted(root.iterdir())
        if p.is_dir() and ID_PATTERN.match(p.name) and (p / "lesson.toml").is_file()
    ]


def load(lesson_id: str, root: Path = LESSONS_DIR) -> Lesson:
    """The lesson ``lesson_id``; LookupError naming the lessons there are."""
    folder = root / lesson_id
    if not ID_PATTERN.match(lesson_id) or not (folder / "lesson.toml").is_file():
        known = ", ".join(lesson.id for lesson in all_lessons(root))
        raise LookupError(f"no lesson {lesson_id!r}; the lessons are: {known}")
    return read_toml(folder)


_loaded: dict[Path, ModuleType] = {}


def load_file(path: Path) -> ModuleType:
    """Import a test file by path (lesson folders are not packages), once per process."""
    path = path.resolve()
    if path in _loaded:
        return _loaded[path]
    name = "lab_tests_" + re.sub(r"\W", "_", f"{path.parent.parent.name}_{path.parent.name}")
    name += "_" + path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LessonError(f"{path}: cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    _loaded[path] = module
    return module


def checks_in(module: ModuleType) -> list[Check]:
    """The checks a test file defines, in order."""
    return [v for v in vars(module).values() if isinstance(v, Check)]


def workloads_in(module: ModuleType) -> dict[str, Workload | Battery]:
    """Workload (or battery) attribute name -> workload."""
    return {k: v for k, v in vars(module).items() if isinstance(v, Workload | Battery)}
