"""The import arrows of ``/work/shared/design/architecture.md``, kept true.

Every ``.py`` file of ``hypervisor/`` and ``minikern/`` is parsed with
:mod:`ast`; its imports (module level and inside functions, ``import x`` and
``from x import y``, relative ones resolved) are checked against the arrows.
Imports under ``if TYPE_CHECKING:`` are for the type checker only and are
skipped. Each test names the offending file, line and import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE_PACKAGES = ("hypervisor", "minikern")
CLI_PACKAGE = "minikern/cli"
"""The cli layer of architecture.md, a subpackage of minikern: it may import the
whole hypervisor, draw with rich, print and seed a random workload."""
CLI_ENTRY = "minikern/__main__.py"
CLI_MODULES = ("minikern.cli", "minikern.__main__")


@attrs.frozen
class Import:
    """One imported name: ``target`` is the dotted name it reaches, e.g.
    ``hypervisor.abi.MmuUpdate`` for ``from hypervisor.abi import MmuUpdate``."""

    file: str
    line: int
    target: str
    text: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"


def package_files(package: str) -> list[Path]:
    """Every ``.py`` file of ``package`` (empty if the package does not exist yet)."""
    base = ROOT / package
    if not base.is_dir():
        return []
    return sorted(p for p in base.rglob("*.py") if ".venv" not in p.parts)


def module_name(path: Path) -> str:
    """``hypervisor/mm/refs.py`` -> ``hypervisor.mm.refs``; ``__init__`` names the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk_runtime(node: ast.AST) -> Iterator[ast.AST]:
    """Every node below ``node`` except the bodies of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield other
                yield from _walk_runtime(other)
            continue
        yield child
        yield from _walk_runtime(child)


def _resolve(path: Path, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names (relative ones resolved)."""
    if not node.level:
        return node.module or ""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package.pop()
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(path: Path) -> list[Import]:
    """Every runtime import in ``path``, one :class:`Import` per imported name."""
    return imports_in(path.read_text(encoding="utf-8"), path)


def imports_in(source: str, path: Path) -> list[Import]:
    """Every runtime import in ``source``, resolved as if it lived at ``path``."""
    tree = ast.parse(source, filename=str(path))
    rel = str(path.relative_to(ROOT))
    found: list[Import] = []
    for node in _walk_runtime(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(rel, node.lineno, alias.name, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(path, node)
            for alias in node.names:
                target = module if alias.name == "*" else f"{module}.{alias.name}"
                found.append(Import(rel, node.lineno, target, f"from {module} import {alias.name}"))
    return found


def reaches(target: str, module: str) -> bool:
    """Does an import of ``target`` reach ``module`` (the module itself or inside it)?"""
    return target == module or target.startswith(module + ".")


def reaches_any(target: str, modules: tuple[str, ...]) -> bool:
    return any(reaches(target, m) for m in modules)


def violations(files: list[Path], forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> str:
    """The imports in ``files`` reaching a ``forbidden`` module and no ``allowed`` one."""
    bad = [
        str(imp)
        for path in files
        for imp in imports_of(path)
        if reaches_any(imp.target, forbidden) and not reaches_any(imp.target, allowed)
    ]
    return "\n".join(bad)


def in_cli_layer(path: Path) -> bool:
    """Is ``path`` part of the cli layer (``minikern/cli/`` or ``python -m minikern``)?"""
    rel = path.relative_to(ROOT).as_posix()
    return rel == CLI_ENTRY or rel.startswith(CLI_PACKAGE + "/")


def core_files(package: str) -> list[Path]:
    """The files of ``package`` without the cli layer."""
    return [p for p in package_files(package) if not in_cli_layer(p)]


def assert_inspected(package: str, files: list[Path]) -> None:
    """A test governing an existing package must have looked at some of its files."""
    if (ROOT / package).is_dir():
        assert files, f"{package}/ exists but no file of it was inspected"


def under(package: str, sub: str) -> list[Path]:
    return [p for p in package_files(package) if p.relative_to(ROOT / package).parts[0] == sub]


# -- the arrows ---------------------------------------------------------------------


def test_minikern_sees_only_the_abi_of_the_hypervisor() -> None:
    files = [p for p in core_files("minikern") if p.name != "toolstack.py"]
    assert_inspected("minikern", package_files("minikern"))
    bad = violations(files, forbidden=("hypervisor",), allowed=("hypervisor.abi",))
    assert not bad, f"minikern may import only hypervisor.abi from the hypervisor:\n{bad}"


def test_hardware_knows_nothing_of_xen() -> None:
    files = under("hypervisor", "hw")
    assert files, "hypervisor/hw/ has no files to inspect"
    bad = violations(files, forbidden=("hypervisor",), allowed=("hypervisor.hw", "hypervisor.abi"))
    assert not bad, f"hypervisor/hw may import only hypervisor.hw and hypervisor.abi:\n{bad}"


def test_mm_does_not_reach_up_into_hypercalls_or_the_machine() -> None:
    files = under("hypervisor", "mm")
    assert files, "hypervisor/mm/ has no files to inspect"
    upper = (
        "hypervisor.hypercalls",
        "hypervisor.vcpu",
        "hypervisor.machine",
        "hypervisor.builder",
        "hypervisor.render",
    )
    bad = violations(files, forbidden=upper)
    assert not bad, f"hypervisor/mm must not import the layers above it:\n{bad}"


def test_only_render_imports_rich() -> None:
    files = [
        p
        for p in package_files("hypervisor")
        if not p.relative_to(ROOT / "hypervisor").parts[0].startswith("render")
    ]
    assert files, "hypervisor/ has no files to inspect"
    bad = violations(files, forbidden=("rich", "hypervisor.render"))
    assert not bad, f"only hypervisor/render* may import rich or hypervisor.render:\n{bad}"


def test_minikern_core_does_not_draw() -> None:
    files = core_files("minikern")
    assert_inspected("minikern", files)
    bad = violations(files, forbidden=("rich",))
    assert not bad, f"only minikern's cli layer may import rich:\n{bad}"


def test_minikern_core_does_not_depend_on_the_cli_layer() -> None:
    files = core_files("minikern")
    assert_inspected("minikern", files)
    bad = violations(files, forbidden=CLI_MODULES)
    assert not bad, f"the cli layer sits on top of minikern; the core must not import it:\n{bad}"


def _all_imports(source: str, path: Path) -> set[str]:
    """Every module ``source`` (living at ``path``) imports, ``if TYPE_CHECKING:``
    blocks included."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(path, node)
            out.add(module)
            out.update(f"{module}.{alias.name}" for alias in node.names)
    return out


def import_cycle(imports: dict[str, set[str]]) -> list[str]:
    """One cycle among the modules of ``imports`` (module -> what it imports),
    as module names (empty: none)."""
    edges = {
        name: sorted(t for t in targets if t in imports and t != name)
        for name, targets in imports.items()
    }
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> list[str]:
        state[name] = 1
        stack.append(name)
        for nxt in edges[name]:
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[name] = 2
        return []

    for name in sorted(edges):
        if name not in state and (found := visit(name)):
            return found
    return []


def test_minikern_core_has_no_import_cycle() -> None:
    files = [p for p in core_files("minikern") if p.name != "__init__.py"]
    assert_inspected("minikern", files)
    graph = {module_name(p): _all_imports(p.read_text(encoding="utf-8"), p) for p in files}
    cycle = import_cycle(graph)
    assert not cycle, "minikern modules import each other in a cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_sees_a_cycle_through_type_checking_imports() -> None:
    a, b = ROOT / "minikern" / "probe_a.py", ROOT / "minikern" / "probe_b.py"
    graph = {
        "minikern.probe_a": _all_imports("from minikern.probe_b import x\n", a),
        "minikern.probe_b": _all_imports("if TYPE_CHECKING:\n    from .probe_a import y\n", b),
    }
    assert import_cycle(graph) == ["minikern.probe_a", "minikern.probe_b", "minikern.probe_a"]
    del graph["minikern.probe_b"]
    assert import_cycle(graph) == []


ENTRY_BIT_NAMES = {"P", "RW", "US", "A", "D", "NX", "G", "PRESENT", "USER", "ACCESSED", "DIRTY"}


def test_minikern_takes_entry_bits_from_the_abi_only() -> None:
    files = core_files("minikern")
    assert_inspected("minikern", files)
    bad = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            names = [
                n.id
                for t in targets
                for n in ast.walk(t)
                if isinstance(n, ast.Name)
                and (n.id in ENTRY_BIT_NAMES or n.id.startswith("_PAGE_"))
            ]
            bad += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names]
    assert not bad, "entry bits are defined once, in hypervisor.abi:\n" + "\n".join(bad)


@pytest.mark.parametrize("package", CORE_PACKAGES)
def test_core_does_not_import_lessons(package: str) -> None:
    files = core_files(package)
    assert_inspected(package, files)
    bad = violations(files, forbidden=("lessons",))
    assert not bad, f"{package} must not import lessons (the lab sits on top of it):\n{bad}"


def test_lab_does_not_reach_up_into_the_cli_layer() -> None:
    files = package_files("lessons")
    assert_inspected("lessons", files)
    bad = violations(files, forbidden=CLI_MODULES)
    assert not bad, f"the lab sits under the cli layer (cli -> lab -> minikern):\n{bad}"


def test_lab_child_runtime_imports_no_grader_module() -> None:
    """What the child process runs (``source.CHILD_RUNTIME``) imports nothing of the lab
    beyond itself: no grader, report or student-facing module ends up in the jail."""
    runtime = ("__init__", "seam", "testing", "child", "jail")
    files = [ROOT / "lessons" / "lab" / f"{name}.py" for name in runtime]
    allowed = tuple(f"lessons.lab.{name}" for name in runtime)
    bad = violations(files, forbidden=("lessons",), allowed=(*allowed, "lessons.lab"))
    bad += violations(files, forbidden=("rich",))
    assert not bad, f"the child's runtime must stay self-contained:\n{bad}"


def _print_calls(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    rel = str(path.relative_to(ROOT))
    return [
        f"{rel}:{node.lineno}: print(...)"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "print"
    ]


@pytest.mark.parametrize("package", CORE_PACKAGES)
def test_core_never_prints(package: str) -> None:
    files = core_files(package)
    assert_inspected(package, files)
    bad = "\n".join(line for path in files for line in _print_calls(path))
    assert not bad, f"{package} must not print (everything leaves through the tracer):\n{bad}"


@pytest.mark.parametrize("package", CORE_PACKAGES)
def test_core_has_no_clock_or_unseeded_randomness(package: str) -> None:
    files = core_files(package)
    assert_inspected(package, files)
    bad = violations(files, forbidden=("time", "datetime", "random"))
    assert not bad, f"{package} must not read the clock or use unseeded randomness:\n{bad}"


# -- the checker itself ---------------------------------------------------------------


def test_checker_sees_function_level_and_relative_imports_but_not_type_checking() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from hypervisor.machine import Hypervisor\n"
        "def f():\n"
        "    from ..vcpu import VCpu\n"
        "    import time\n"
    )
    imps = imports_in(source, ROOT / "hypervisor" / "mm" / "probe.py")
    targets = {i.target for i in imps}
    assert "hypervisor.vcpu.VCpu" in targets
    assert "time" in targets
    assert "hypervisor.machine.Hypervisor" not in targets


def test_checker_reads_from_package_import_as_the_named_submodule() -> None:
    imps = imports_in("from hypervisor import abi, Hypervisor\n", ROOT / "minikern" / "probe.py")
    allowed = [i.target for i in imps if reaches(i.target, "hypervisor.abi")]
    assert [i.target for i in imps] == ["hypervisor.abi", "hypervisor.Hypervisor"]
    assert allowed == ["hypervisor.abi"]
