"""Lesson functions as source: stripped, as starters, as solutions, and the child's copy.

- :func:`strip_source` rewrites a module so the named functions keep their signature and
  docstring but their body only raises ``NotImplementedError`` (the AST is rewritten and
  unparsed, so not even a comment of the reference survives).
- :func:`starter_source` / :func:`solution_source` write a lesson's submission file: each
  lesson function as a real ``def`` (a starter's body raises; a solution's is the
  reference's), with the imports its annotations and body need.
- :func:`child_tree` builds, once per lesson and source version, the package tree the
  child process runs on: ``hypervisor``, ``minikern`` (the lesson's functions stripped),
  ``attrs``, the child's part of the lab, and the lesson's tests.
"""

from __future__ import annotations

import ast
import builtins
import compileall
import contextlib
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from lessons.lab import seam
from lessons.lab.lessons import Lesson

__all__ = [
    "child_tree",
    "noop_source",
    "private_helpers",
    "solution_source",
    "starter_source",
    "strip_source",
]

NOT_DONE = "NotImplementedError"
CHILD_RUNTIME = ("__init__.py", "seam.py", "testing.py", "child.py", "jail.py")
"""The files of ``lessons/lab`` the child runs with (nothing that draws or grades)."""


def module_path(module: str) -> Path:
    """The source file of ``module`` (in the grader's own, trusted, packages)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise LookupError(f"no module {module}")
    return Path(spec.origin)


def _by_module(functions: tuple[str, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for name in functions:
        module, function = seam.split(name)
        out[module].append(function)
    return out


def _defs(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def _raise_body(node: ast.FunctionDef, message: str) -> list[ast.stmt]:
    body: list[ast.stmt] = []
    first = node.body[0] if node.body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        body.append(first)
    call = ast.Call(ast.Name(NOT_DONE, ast.Load()), [ast.Constant(message)], [])
    body.append(ast.Raise(call, None))
    return body


def _refs(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def also_stripped(module: str, functions: list[str]) -> list[str]:
    """Other module-level names the seam says go with ``functions`` when they are
    stripped (``hypervisor.steps``: a lesson function's plain variant)."""
    out: list[str] = []
    for function in functions:
        record = seam.record(f"{module}:{function}")
        out += [n for n in getattr(record, "strip", ()) if n not in out and n not in functions]
    return out


def private_helpers(tree: ast.Module, functions: list[str]) -> list[str]:
    """The module's private functions (``_name``) that only ``functions`` use, directly
    or through each other: the rest of the reference (e.g. ``get_page_from_l1e``'s
    ``_get_page_from_l1e_checked``). Stripped with the lesson functions; a solution
    carries them as its own ``def``\\ s."""
    defs = _defs(tree)
    allowed = {name for name in defs if name.startswith("_")} - set(functions)
    while True:
        closure: set[str] = set()
        frontier = [f for f in functions if f in defs]
        while frontier:
            for name in _refs(defs[frontier.pop()]) & allowed - closure:
                closure.add(name)
                frontier.append(name)
        inside = set(functions) | closure
        shared = {  # used by anything else too: not the lesson's own
            name
            for node in tree.body
            if not (isinstance(node, ast.FunctionDef) and node.name in inside)
            for name in _refs(node) & closure
        }
        if not shared:
            return sorted(closure)
        allowed -= shared


def strip_source(source: str, functions: list[str], module: str) -> str:
    """``source`` with each module-level function in ``functions`` reduced to its
    signature, docstring and ``raise NotImplementedError`` -- and so is every private
    helper only they use (:func:`private_helpers`)."""
    tree = ast.parse(source)
    defs = _defs(tree)
    functions = [*functions, *also_stripped(module, functions)]
    for function in functions:
        node = defs.get(function)
        if node is None:
            raise LookupError(f"{module}:{function} is not a module-level function")
    for function in [*functions, *private_helpers(tree, functions)]:
        node = defs[function]
        node.body = _raise_body(node, f"{module}:{function} is yours to write")
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


# -- submission files -------------------------------------------------------------------


def _module_names(tree: ast.Module) -> dict[str, ast.stmt | None]:
    """Top-level name -> the import statement that binds it (None: defined here)."""
    out: dict[str, ast.stmt | None] = {}
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                out[bound] = (
                    ast.ImportFrom(node.module, [alias], node.level)
                    if isinstance(node, ast.ImportFrom)
                    else ast.Import([alias])
                )
        elif isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef):
            out[node.name] = None
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Name):
                        out[sub.id] = None
    return out


def _names_in(nodes: list[ast.AST]) -> list[str]:
    seen: dict[str, None] = {}
    for node in nodes:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name):
                seen[sub.id] = None
            elif isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                # string annotations ("KernelMemory") name things too
                with contextlib.suppress(SyntaxError):
                    seen.update(dict.fromkeys(_names_in([ast.parse(sub.value, mode="eval")])))
    return list(seen)


def _signature_parts(node: ast.FunctionDef) -> list[ast.AST]:
    a = node.args
    parts: list[ast.AST] = [*a.defaults, *(d for d in a.kw_defaults if d is not None)]
    for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
        if arg is not None and arg.annotation is not None:
            parts.append(arg.annotation)
    if node.returns is not None:
        parts.append(node.returns)
    return parts


def _imports_for(names: list[str], module: str, tree: ast.Module, skip: set[str]) -> list[str]:
    table = _module_names(tree)
    lines: list[str] = []
    for name in names:
        if name in skip or name not in table or name == "annotations":
            continue
        stmt = table[name]
        line = f"from {module} import {name}" if stmt is None else _absolute(stmt, module)
        if line not in lines:
            lines.append(line)
    return lines


def _absolute(stmt: ast.stmt, module: str) -> str:
    if isinstance(stmt, ast.ImportFrom) and stmt.level:
        base = module.split(".")[: -stmt.level]
        stmt = ast.ImportFrom(".".join([*base, stmt.module or ""]).strip("."), stmt.names, 0)
    return ast.unparse(stmt)


def _node_imports(
    node: ast.FunctionDef, parts: list[ast.AST], module: str, tree: ast.Module, own: set[str]
) -> list[str]:
    params = {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)}
    local = {
        n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }
    skip = own | params | local | set(dir(builtins))
    return _imports_for(_names_in(parts), module, tree, skip)


def _zero_return(node: ast.FunctionDef) -> ast.stmt:
    """``return 0`` / ``return False`` / ``return None``: a do-nothing answer of the
    reference's return type."""
    ann = ast.unparse(node.returns) if node.returns is not None else ""
    value: int | bool | None = None
    if ann.split(".")[-1] in ("int", "Mfn", "Pfn", "VAddr", "MAddr"):
        value = 0
    elif ann == "bool":
        value = False
    return ast.Return(ast.Constant(value))


def _submission(lesson: Lesson, mode: str) -> str:
    """``mode``: ``starter`` (bodies raise), ``noop`` (bodies return at once) or
    ``solution`` (the reference's bodies, with the private helpers only they use)."""
    body = mode == "solution"
    imports: list[str] = []
    defs: list[str] = []
    own = {seam.bare_name(n) for n in lesson.functions}
    by_module = _by_module(lesson.functions)
    helpers: dict[str, list[str]] = {}
    for name in lesson.functions:
        module, function = seam.split(name)
        tree = ast.parse(module_path(module).read_text(encoding="utf-8"))
        nodes = [_defs(tree)[function]]
        if body and module not in helpers:
            helpers[module] = _solution_helpers(tree, module, by_module[module])
            nodes += [_defs(tree)[h] for h in helpers[module]]
        for node in nodes:
            node.decorator_list = []
            parts: list[ast.AST] = [node] if body else _signature_parts(node)
            skip = own | set(helpers.get(module, ()))
            for line in _node_imports(node, parts, module, tree, skip):
                if line not in imports:
                    imports.append(line)
            if mode == "starter":
                node.body = _raise_body(node, "write me")
            elif mode == "noop":
                node.body = [*_raise_body(node, "")[:-1], _zero_return(node)]
            defs.append(ast.unparse(ast.fix_missing_locations(node)))
    kind = "The reference answers" if body else "Your answers"
    head = f'"""{lesson.id}: {lesson.title}. {kind} (see `minikern lab check {lesson.id}`)."""'
    return "\n\n".join([head, "\n".join(["from __future__ import annotations", *imports]), *defs])


def _solution_helpers(tree: ast.Module, module: str, functions: list[str]) -> list[str]:
    """The stripped private helpers a solution needs: those the lesson functions reach."""
    stripped = set(private_helpers(tree, [*functions, *also_stripped(module, functions)]))
    defs = _defs(tree)
    reach: list[str] = []
    frontier = list(functions)
    while frontier:
        for name in sorted(_refs(defs[frontier.pop()]) & stripped - set(reach)):
            reach.append(name)
            frontier.append(name)
    return sorted(reach)


def starter_source(lesson: Lesson) -> str:
    """The starter file ``<id>.py``: every lesson function with its signature and
    docstring, raising ``NotImplementedError``."""
    return _submission(lesson, "starter") + "\n"


def noop_source(lesson: Lesson) -> str:
    """A submission whose lesson functions do nothing and return at once (``return 0``
    where the reference returns an int, ``False`` for a bool, else ``None``)."""
    return _submission(lesson, "noop") + "\n"


def solution_source(lesson: Lesson) -> str:
    """The reference as a submission file (self-contained source, real ``def``\\ s)."""
    return _submission(lesson, "solution") + "\n"


# -- the child's package tree ---------------------------------------------------------------


def _package_dir(name: str) -> Path:
    return module_path(name).parent


def _source_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _fingerprint(lesson: Lesson, packages: dict[str, Path]) -> str:
    h = hashlib.sha256(f"{sys.version}|{lesson.functions}|{CHILD_RUNTIME}".encode())
    here = Path(__file__).resolve().parent
    files = [here / f for f in CHILD_RUNTIME] + _source_files(lesson.path / "tests")
    for root in packages.values():
        files += _source_files(root)
    for f in files:
        h.update(str(f).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:20]


def cache_dir() -> Path:
    """Where child trees are kept (``$MINIKERN_LAB_CACHE``, else the temp dir)."""
    env = os.environ.get("MINIKERN_LAB_CACHE")
    return Path(env) if env else Path(tempfile.gettempdir()) / f"minikern-lab-{os.getuid()}"


def child_tree(lesson: Lesson) -> Path:
    """The child's package tree for ``lesson`` (built on first use, then reused)."""
    packages = {name: _package_dir(name) for name in ("hypervisor", "minikern", "attr", "attrs")}
    base = cache_dir()
    dest = base / f"{lesson.id}-{_fingerprint(lesson, packages)}"
    if dest.is_dir():
        return dest
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o755)
    tmp = Path(tempfile.mkdtemp(prefix=f".{lesson.id}-", dir=base))
    for name, src in packages.items():
        shutil.copytree(src, tmp / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for module, functions in _by_module(lesson.functions).items():
        target = tmp / Path(*module.split(".")).with_suffix(".py")
        if not target.is_file():
            target = tmp / Path(*module.split(".")) / "__init__.py"
        target.write_text(strip_source(target.read_text("utf-8"), functions, module), "utf-8")
    lab = tmp / "lessons" / "lab"
    lab.mkdir(parents=True)
    (tmp / "lessons" / "__init__.py").write_text("", "utf-8")
    here = Path(__file__).resolve().parent
    for f in CHILD_RUNTIME:
        shutil.copy2(here / f, lab / f)
    tests = lesson.path / "tests"
    if tests.is_dir():
        shutil.copytree(
            tests, tmp / "lesson" / "tests", ignore=shutil.ignore_patterns("__pycache__")
        )
    compileall.compile_dir(str(tmp), quiet=1, workers=1)
    for path in [tmp, *tmp.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    try:
        tmp.rename(dest)
    except OSError:  # another grader built it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    _prune(base, lesson.id, keep=dest)
    return dest


STALE_S = 24 * 3600
"""Trees of older source versions are removed once unused this long."""


def _prune(base: Path, lesson_id: str, keep: Path) -> None:
    now = time.time()
    for old in base.glob(f"{lesson_id}-*"):
        with contextlib.suppress(OSError):
            if old != keep and now - old.stat().st_mtime > STALE_S:
                shutil.rmtree(old, ignore_errors=True)
