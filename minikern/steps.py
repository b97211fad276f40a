"""The seam: every kernel function a lesson asks a student to write, by ONE name.

A **lesson function** is a module-level function of minikern, declared where it
belongs in the kernel with its reference body right there, and marked with
:func:`swappable`. Its one name is ``module:function`` (``minikern.build:pin_tree``),
exactly as a lesson's ``lesson.toml`` lists it. The kernel calls the
module-level name, so a swap takes effect everywhere::

    with steps.override(build.pin_tree, my_pin_tree):   # typed: mypy checks the signature
        k.spawn()

    steps.install("minikern.build:pin_tree", fn)          # by name (the grader's child)
    steps.reset()                                         # every function back to the reference

The kernel calls every lesson function with all its arguments, positionally;
none has defaults. Functions marked *queue* only queue their request on
``km.hc`` (the caller decides where the lazy-MMU batch ends); *now* ones issue
it at once. When Xen refuses a request, the :class:`~minikern.KernelPanic`
names the lesson function that queued it (``KernelPanic.step``).

The lesson functions
--------------------

Types: ``km`` is a :class:`minikern.kmem.KernelMemory`; ``Pfn``, ``Mfn``,
``VAddr`` are ``hypervisor.abi``'s; ``Tables`` is
``Sequence[tuple[int, Pfn]]``, ``(level, pfn)`` of tables below the L4s,
top-down; ``mm`` a :class:`minikern.pgtable.AddressSpace`.

01_map_a_page
  - ``minikern.kmem:pfn_to_mfn(km, pfn: Pfn) -> Mfn`` -- the P2M lookup.
  - ``minikern.kmem:pfn_pte(km, pfn: Pfn, flags: int) -> int`` -- an entry
    mapping ``pfn``'s machine frame with ``flags``.
  - ``minikern.kmem:map_page(km, va: VAddr, pfn: Pfn, flags: int, uvmf: int) -> None``
    -- queue: ``update_va_mapping`` of ``va`` to ``pfn`` (``uvmf``: UVMF_* flush flags).
02_readonly_l1
  - ``minikern.recipe:fill_table(km, pfn: Pfn, entries: Mapping[int, int]) -> None``
    -- plain stores while the frame is still plain data.
  - ``minikern.recipe:make_readonly(km, pfn: Pfn, uvmf: int) -> None`` -- queue:
    the frame's own direct-map entry loses RW.
  - ``minikern.recipe:pin_table(km, pfn: Pfn, level: int) -> None`` -- queue:
    ``MMUEXT_PIN_Ln_TABLE``.
03_build_tree
  - ``minikern.build:write_tables(km, images: Mapping[Pfn, Mapping[int, int]]) -> None``
    -- zero and fill every table of a new tree while it is plain data.
  - ``minikern.build:protect_tables(km, tables: Tables) -> None`` -- queue: every
    table read-only, top-down, each L1 pinned right after.
04_pin_and_load
  - ``minikern.build:pin_tree(km, kernel_l4: Pfn, user_l4: Pfn) -> None`` -- queue:
    each L4 read-only (with a TLB flush), then ``PIN_L4``.
  - ``minikern.recipe:load_base(km, kernel_l4: Pfn, user_l4: Pfn | None) -> None``
    -- now: ``NEW_BASEPTR`` + ``NEW_USER_BASEPTR`` (0 for none), one ``mmuext_op``.
05_update_mappings
  - ``minikern.pgtable:set_pte(km, l1: Pfn, slot: int, pte: int, cmd: int) -> None``
    -- queue: ``mmu_update`` of a live L1 entry (``cmd``: ``MMU_NORMAL_PT_UPDATE``
    or ``MMU_PT_UPDATE_PRESERVE_AD``).
  - ``minikern.vm:flush_tlb(km, vpns: Sequence[int]) -> None`` -- queue: INVLPG per
    page up to ``vm.FLUSH_CEILING`` pages, one full flush beyond.
06_trapped_writes
  - ``minikern.pgtable:store_pte(km, l1: Pfn, slot: int, pte: int) -> None`` -- now:
    a plain store into a live L1 (Xen traps and emulates it).
07_grow_live_tree
  - ``minikern.pgtable:add_table(km, pfn: Pfn, level: int, parents: Sequence[tuple[Pfn, int]])
    -> None`` -- queue: the newly allocated ``pfn`` becomes a table of a live tree:
    zero, read-only, pin (L1), link into each ``(parent, slot)``.
  - ``minikern.recipe:zero_frame(km, pfn: Pfn) -> None``,
    ``minikern.recipe:link_table(km, parent: Pfn, slot: int, child: Pfn) -> None``.
08_fork_cow
  - ``minikern.fork:wrprotect_parent(km, mm) -> None`` -- queue: every writable
    leaf of ``mm`` rewritten without RW (``MMU_PT_UPDATE_PRESERVE_AD``: Accessed/Dirty
    kept), through ``mm.set_leaf``.
  - ``minikern.fork:fork_mm(km, parent: mm, strategy: str, style: str) -> mm``
    -- the whole fork: write-protect, share, build and pin the child, flush.
09_cow_fault
  - ``minikern.vm:copy_on_write(km, mm, vpn: int) -> None`` -- copy (or reuse when
    last), remap writable, INVLPG, reference counts.
10_teardown
  - ``minikern.build:release_tree(km, kernel_l4: Pfn, user_l4: Pfn, tables: Tables,
    loaded: bool) -> None`` -- switch away (if loaded), unpin, make writable, free.
  - ``minikern.recipe:unpin_table(km, pfn: Pfn) -> None``,
    ``minikern.recipe:make_writable(km, pfn: Pfn, uvmf: int) -> None``,
    ``minikern.recipe:free_frame(km, pfn: Pfn) -> None``.
11_batching
  - ``minikern.hypercall:issue_multicall(vcpu, calls: Sequence[abi.MulticallEntry])
    -> list[tuple[int, int]]`` -- one ``HYPERVISOR_multicall``; returns ``(index,
    result)`` of every entry that failed.
12_pae_guest
  The same recipe for a 32-bit PAE guest (``Kernel.boot(guest_width=32)``):
  the L3 on top, pinned with ``MMUEXT_PIN_L3_TABLE``; each tree owns its
  kernel L2 (L3 slot 3: an L2 there belongs to one L3 only); one base per
  vCPU (``load_base`` sends no NEW_USER_BASEPTR on a PAE guest). The lesson's
  break: ``MMUEXT_PIN_L4_TABLE`` on a PAE guest is a silent no-op in Xen
  (success, nothing pinned), so the tree is unpinned -- unprotected whenever
  it is not loaded, and refused at exit (``UNPIN`` of a frame not pinned).

  - ``minikern.build:pae_pgd_images(km, l3: Pfn, kernel_l2: Pfn, kernel_pmd:
    Mapping[int, int]) -> dict[Pfn, dict[int, int]]`` -- the first contents of
    a new tree's L3 (slot 3 -> ``kernel_l2``) and kernel L2 (a copy of
    ``kernel_pmd``, the boot kernel L2's guest slots).
  - ``minikern.build:pin_tree_pae(km, l3: Pfn, kernel_l2: Pfn) -> None`` --
    queue: the kernel L2, then the L3 (with a TLB flush) read-only, then
    ``PIN_L3`` of the L3.
  - ``minikern.build:release_tree_pae(km, l3: Pfn, kernel_l2: Pfn, tables:
    Tables, loaded: bool) -> None`` -- switch away (NEW_BASEPTR of the boot L3
    alone, if loaded), unpin the L3, make everything writable (the L3 last,
    with a TLB flush), free.

Also swappable, in no lesson yet: ``minikern.recipe:unlink_table(km, parent: Pfn,
slot: int) -> None``. :data:`REGISTRY` is the authority: ``sorted(REGISTRY)``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import linecache
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar, cast

import attrs

from minikern.errors import KernelPanic

__all__ = [
    "REGISTRY",
    "LessonFunction",
    "install",
    "lesson_function",
    "override",
    "queued_by",
    "reset",
    "swappable",
]

Params = ParamSpec("Params")
R = TypeVar("R")


@attrs.define(eq=False)
class LessonFunction:
    """The record of one lesson function: its one ``name`` (``module:function``),
    the kernel's ``reference``, the implementation in use (``impl``), the
    ``signature`` and ``doc`` a starter is made from, and the module-level
    ``wrapper`` the kernel calls."""

    name: str
    reference: Callable[..., Any]
    impl: Callable[..., Any]
    signature: inspect.Signature
    doc: str
    wrapper: Callable[..., Any] = attrs.field(default=None, repr=False)

    @property
    def swapped(self) -> bool:
        return self.impl is not self.reference


REGISTRY: dict[str, LessonFunction] = {}
"""``module:function`` -> its record, for every lesson function."""
_BY_WRAPPER: dict[Callable[..., Any], LessonFunction] = {}
_RUNNING: list[str] = []
"""The lesson functions running now, outermost first."""


def swappable(fn: Callable[Params, R]) -> Callable[Params, R]:
    """Register ``fn`` as the reference of lesson function ``module:function``
    and return the typed wrapper the kernel calls (same signature)."""
    name = f"{fn.__module__}:{fn.__name__}"
    push, pop = _RUNNING.append, _RUNNING.pop
    if name in REGISTRY:
        raise ValueError(f"lesson function {name} is declared twice")
    rec = LessonFunction(name, fn, fn, inspect.signature(fn), inspect.getdoc(fn) or "")

    def wrapper(*args: Params.args, **kwargs: Params.kwargs) -> R:
        push(name)
        try:
            result: R = rec.impl(*args, **kwargs)
            return result
        except BaseException as exc:
            _blame(exc, tuple(_RUNNING))
            raise
        finally:
            pop()

    wrapper = _same_parameters(fn, rec, name) or wrapper
    functools.update_wrapper(wrapper, fn)
    rec.wrapper = wrapper
    REGISTRY[name] = rec
    _BY_WRAPPER[wrapper] = rec
    return wrapper


_WRAPPER = """\
def {fn}({params}):
    _seam_push(_seam_name)
    try:
        return _seam_rec.impl({params})
    except BaseException as _seam_exc:
        _seam_blame(_seam_exc, tuple(_seam_running))
        raise
    finally:
        _seam_pop()
"""
"""The wrapper of a lesson function whose parameters are all plain: the same
work as ``swappable``'s own, without packing the arguments into a tuple and a
dict on every call (a kernel makes about a thousand such calls a lifecycle)."""


def _same_parameters(fn: Callable[..., Any], rec: LessonFunction, name: str) -> Any:
    """``_WRAPPER`` made for ``fn`` (None if a parameter has a default or is
    not positional-or-keyword). Its source goes into ``linecache``, so a
    traceback through it reads like one through ``swappable``'s wrapper."""
    params = list(inspect.signature(fn).parameters.values())
    plain = inspect.Parameter.POSITIONAL_OR_KEYWORD
    if not all(p.kind is plain and p.default is p.empty for p in params):
        return None
    src = _WRAPPER.format(fn=fn.__name__, params=", ".join(p.name for p in params))
    filename = f"<lesson function {name}>"
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    namespace: dict[str, Any] = {
        "_seam_push": _RUNNING.append,
        "_seam_pop": _RUNNING.pop,
        "_seam_name": name,
        "_seam_rec": rec,
        "_seam_blame": _blame,
        "_seam_running": _RUNNING,
    }
    exec(compile(src, filename, "exec"), namespace)  # our own template, names checked above
    return namespace[fn.__name__]


def _blame(exc: BaseException, chain: tuple[str, ...]) -> None:
    """Remember on ``exc`` the innermost lesson functions it went through."""
    if getattr(exc, "minikern_steps", None) is None:
        with contextlib.suppress(AttributeError):
            exc.minikern_steps = chain  # type: ignore[attr-defined]


def queued_by() -> tuple[str, ...]:
    """The lesson functions running now, outermost first (empty: none)."""
    return tuple(_RUNNING)


def lesson_function(fn: Callable[..., Any] | str) -> LessonFunction:
    """The record of ``fn`` (a lesson function, or its ``module:function`` name).
    Raises: KeyError naming the known functions if there is no such one."""
    rec = REGISTRY.get(fn) if isinstance(fn, str) else _BY_WRAPPER.get(fn)
    if rec is None:
        what = fn if isinstance(fn, str) else getattr(fn, "__qualname__", repr(fn))
        raise KeyError(f"{what!r} is not a lesson function; they are {sorted(REGISTRY)}")
    return rec


@contextmanager
def override(fn: Callable[Params, R], impl: Callable[Params, R]) -> Iterator[Callable[Params, R]]:
    """Run lesson function ``fn`` as ``impl`` inside the block (mypy checks that
    the signatures agree); yields the implementation it replaced."""
    rec = lesson_function(fn)
    _check_callable(rec, impl)
    old = rec.impl
    rec.impl = _checked(rec, impl)
    try:
        yield cast(Callable[Params, R], old)
    finally:
        rec.impl = old


def install(name: str, impl: Callable[..., Any]) -> None:
    """Make ``impl`` the implementation of lesson function ``name`` until
    :func:`reset`. Raises: KeyError (no such function), TypeError (``impl`` is
    not callable with the reference's positional arguments)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a 'module:function' str, not {type(name).__name__}")
    rec = lesson_function(name)
    _check_callable(rec, impl)
    rec.impl = _checked(rec, impl)


def reset() -> None:
    """Every lesson function back to its reference."""
    for rec in REGISTRY.values():
        rec.impl = rec.reference


def _check_callable(rec: LessonFunction, impl: object) -> None:
    """``impl`` must accept the reference's arguments, positionally."""
    if not callable(impl):
        raise TypeError(f"{rec.name}: the implementation must be callable, not {impl!r}")
    try:
        sig = inspect.signature(impl)
    except (TypeError, ValueError):
        return
    n = len(rec.signature.parameters)
    try:
        sig.bind(*range(n))
    except TypeError as exc:
        raise TypeError(
            f"{rec.name}: the implementation must take {n} arguments {rec.signature}, "
            f"but {sig} cannot: {exc}"
        ) from None


def _return_class(rec: LessonFunction) -> type | None:
    """The class the reference's return annotation names at run time (``Mfn``
    -> int, ``list[...]`` -> list); None when it returns None or cannot be told."""
    try:
        hint: Any = typing.get_type_hints(rec.reference).get("return")
    except Exception:  # an annotation that cannot be evaluated: leave it unchecked
        return None
    while hasattr(hint, "__supertype__"):
        hint = hint.__supertype__
    origin = typing.get_origin(hint) or hint
    if not isinstance(origin, type) or origin is type(None):
        return None
    return origin


def _checked(rec: LessonFunction, impl: Callable[..., Any]) -> Callable[..., Any]:
    """``impl``, with what it returns checked against the reference's return
    type: a wrong one is a :class:`KernelPanic` naming the lesson function."""
    kind = _return_class(rec)
    if kind is None:
        return impl

    def checked(*args: Any, **kwargs: Any) -> Any:
        result = impl(*args, **kwargs)
        if not isinstance(result, kind) or (kind is int and type(result) is bool):
            raise KernelPanic(
                f"panic: {rec.name} returned {result!r:.80} ({type(result).__name__}), "
                f"not {kind.__name__}",
                step=rec.name,
            )
        return result

    checked.__wrapped__ = impl  # type: ignore[attr-defined]
    return checked
