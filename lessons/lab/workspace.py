"""Folders the lab writes: a student's workspace of starters, the reference as a
submission, a handout, and the small state file behind ``list`` and ``hint``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from lessons.lab import seam, source
from lessons.lab.lessons import LESSONS_DIR, Lesson, all_lessons

__all__ = ["State", "handout", "noop_source", "solutions", "start"]

README = """# Your minikern lab workspace

One file per lesson, `<id>.py`, each defining that lesson's functions. Replace every
`raise NotImplementedError` with your code, then:

    minikern lab list                 # the lessons, their points, your status
    minikern lab check 01_map_a_page  # the public tests of one lesson
    minikern lab hint 01_map_a_page   # the next hint for what failed last
    minikern lab run 01_map_a_page    # your version's hypercalls, drawn
    minikern lab grade                # every lesson: Score: X/Y

Read each lesson's page (`lessons/<id>/index.md`) first.
"""


def start(folder: Path, lessons: list[Lesson] | None = None) -> list[str]:
    """Write starters into ``folder`` (never over an existing file); what was written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for lesson in lessons if lessons is not None else all_lessons():
        if lesson.track == "diagnosis":
            from lessons.lab import diagnosis

            path, text = folder / f"{lesson.id}.toml", diagnosis.template_text(lesson)
        else:
            path, text = folder / f"{lesson.id}.py", source.starter_source(lesson)
        if not path.exists():
            path.write_text(text, encoding="utf-8")
            written.append(path.name)
    readme = folder / "README.md"
    if not readme.exists():
        readme.write_text(README, encoding="utf-8")
    return written


def solutions(folder: Path, student: str | None = None) -> list[str]:
    """The reference as a submission folder (every lesson); a diagnosis lesson's answers
    are those of ``student``'s instance (left out without one)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for lesson in all_lessons():
        if lesson.track == "diagnosis":
            if student is None:
                continue
            from lessons.lab import diagnosis

            text = diagnosis.solution_text(lesson, student)
            (folder / f"{lesson.id}.toml").write_text(text, encoding="utf-8")
            out.append(f"{lesson.id}.toml")
            continue
        (folder / f"{lesson.id}.py").write_text(source.solution_source(lesson), encoding="utf-8")
        out.append(f"{lesson.id}.py")
    return out


def noop_source(lesson: Lesson) -> str:
    """A submission whose lesson functions do nothing and return at once."""
    return source.noop_source(lesson)


def break_source(lesson: Lesson, path: Path) -> str:
    """A break as a whole submission file: the break's functions, and the reference for
    any lesson function the break does not redefine."""
    text = path.read_text(encoding="utf-8")
    defined = {seam.bare_name(f) for f in lesson.functions if f"def {seam.bare_name(f)}(" in text}
    missing = [f for f in lesson.functions if seam.bare_name(f) not in defined]
    if not missing:
        return text
    ref = source.solution_source(lesson)
    body = "\n".join(
        line for line in text.splitlines() if line.strip() != "from __future__ import annotations"
    )
    return ref + "\n\n# -- the break --\n\n" + body + "\n"


IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache")


def handout(
    out: Path, release: list[str] | None = None, root: Path = LESSONS_DIR.parent
) -> list[str]:
    """A student copy of the project in ``out``: the released lessons (default: all) with
    their functions' bodies replaced by starters, no hidden tests, no other lesson."""
    lessons = [lesson for lesson in all_lessons() if release is None or lesson.id in release]
    out.mkdir(parents=True, exist_ok=True)
    for name in ("pyproject.toml", "README.md", "Makefile"):
        if (root / name).is_file():
            shutil.copy2(root / name, out / name)
    for pkg in ("hypervisor", "minikern"):
        shutil.copytree(root / pkg, out / pkg, ignore=IGNORE, dirs_exist_ok=True)
    by_file: dict[Path, tuple[str, list[str]]] = {}
    for lesson in lessons:
        for name in lesson.functions:
            module, function = seam.split(name)
            rel = source.module_path(module).relative_to(root)
            by_file.setdefault(rel, (module, []))[1].append(function)
    for rel, (module, functions) in by_file.items():
        text = (out / rel).read_text(encoding="utf-8")
        (out / rel).write_text(source.strip_source(text, functions, module), encoding="utf-8")
    lab_out = out / "lessons"
    shutil.copytree(LESSONS_DIR / "lab", lab_out / "lab", ignore=IGNORE, dirs_exist_ok=True)
    shutil.copy2(LESSONS_DIR / "__init__.py", lab_out / "__init__.py")
    if (LESSONS_DIR / "course.toml").is_file():  # the salt: students' instances are the grader's
        shutil.copy2(LESSONS_DIR / "course.toml", lab_out / "course.toml")
    for lesson in lessons:
        shutil.copytree(
            lesson.path,
            lab_out / lesson.id,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("__pycache__", "hidden", "breaks"),
        )
        _copy_guest_breaks(lesson, lab_out)
    for lesson in lessons:
        if lesson.track == "hypervisor":
            expected = lab_out / lesson.id / "tests" / "expected.json"
            expected.write_text(json.dumps(expected_outcomes(lesson)), encoding="utf-8")
    start(out / "lab", lessons)
    return [lesson.id for lesson in lessons]


def _copy_guest_breaks(lesson: Lesson, lab_out: Path) -> None:
    """The guest lessons' breaks a diagnosis lesson's incident reuses (``guest_breaks``
    in its lesson.toml), so that the handout can make the student's instance."""
    import tomllib

    data = tomllib.loads((lesson.path / "lesson.toml").read_text(encoding="utf-8"))
    for name in data.get("guest_breaks", []) if lesson.track == "diagnosis" else []:
        guest, _, stem = str(name).partition("/")
        src = LESSONS_DIR / guest / "breaks" / f"{stem}.py"
        (lab_out / guest / "breaks").mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, lab_out / guest / "breaks" / src.name)


def expected_outcomes(lesson: Lesson) -> dict[str, Any]:
    """Xen's outcomes of each public battery of ``lesson`` at seed 0, by run key: what a
    handout's grader compares with, having no trusted Xen for the lesson's functions."""
    from lessons.lab import grader

    runs = grader._runs(lesson, lesson.tests(hidden=False), grader.Options(seed=0))
    return {run.key: grader.trusted_run(lesson, run).ops for run in runs}


class State:
    """``<work>/.lab/state.json``: per lesson the last score, the rule last failed on,
    and how many hints of each rule were shown."""

    def __init__(self, work: Path) -> None:
        self.path = work / ".lab" / "state.json"
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self.data: dict[str, Any] = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            self.data = {}

    def lesson(self, lesson_id: str) -> dict[str, Any]:
        entry = self.data.setdefault(lesson_id, {})
        return entry if isinstance(entry, dict) else {}

    def save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.data, indent=1), encoding="utf-8")
        except OSError:
            pass

    def hints_used(self) -> dict[str, Any]:
        return {
            k: v.get("hints", {})
            for k, v in self.data.items()
            if isinstance(v, dict) and v.get("hints")
        }
