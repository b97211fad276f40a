"""The seam: every hypervisor function a lesson asks a student to write, by ONE name.

A **lesson function** is a module-level function of the hypervisor, declared
where Xen has it with its reference body right there, and marked with
:func:`swappable`. Its one name is ``module:function``
(``hypervisor.mm.l1:get_page_from_l1e``), exactly as a hypervisor-track
lesson's ``lesson.toml`` lists it. This is the mirror of :mod:`minikern.steps`,
with one difference: the hypervisor's hot paths (``mmu_update``, pinning) must
not pay for the seam, so :func:`swappable` returns the function UNCHANGED and
a swap works by **rebinding**::

    with steps.override(l1.get_page_from_l1e, mine):   # typed (ParamSpec), as minikern's
        vcpu.mmu_update(reqs)

    steps.install("hypervisor.mm.l1:get_page_from_l1e", fn)   # by name (the lab's child)
    steps.reset()                                              # every function back

Installing rebinds the name in the defining module, in every ``hypervisor.*``
module that bound the same object (``from hypervisor.mm.refs import
get_page_type``), and in the dispatch tables ``refs.PROMOTE``/``refs.DEMOTE``.
So a lesson function must only ever be reached through a module global or
those tables -- never kept in a default argument, a closure or another
container (``tests/hypervisor/test_hv_steps.py`` checks this).

**Inlined fast paths.** A few hot functions inline the common case of a lesson
function (``get_page_from_l1e`` takes the writable type itself when
``get_page_type`` would do nothing more). Each has a PLAIN variant declared
next to it with :func:`plain_variant`: the same behaviour, calling the lesson
functions instead. While any lesson function a fast function inlines is
swapped (or is itself replaced by its plain variant), the fast function is
rebound to its plain variant, so the student's function sees every call.

**Installed implementations are wrapped** (the references never are):

- arguments are passed positionally, all of them (a reference's defaults,
  ``xen_l2=False`` and ``container=None``, are filled in);
- a :class:`~hypervisor.errors.GuestError` it raises is a refusal like any
  other; ``err.step`` (then ``HypercallError.step``) names the innermost
  swapped lesson function it came out of;
- anything else it raises, or a return value its contract does not allow, is a
  :class:`~hypervisor.errors.LessonFunctionError` naming it. That propagates
  out of the hypercall or the store unchanged (no trace record), and the
  machine may be half-updated: the caller treats it as broken.

The hypervisor track's lesson functions
---------------------------------------

Types: ``xen`` is the machine's :class:`~hypervisor.mm.state.XenState`;
``pg``/``c_pg`` a :class:`~hypervisor.mm.frames.PageInfo`; ``d``/``l1_owner``/
``pg_owner`` a :class:`~hypervisor.mm.domain.PvDomain`, ``v`` a
:class:`~hypervisor.mm.domain.PvVcpu`; ``t`` a
:class:`~hypervisor.mm.frames.PageType`. A refusal is ``raise GuestError(rule,
detail)`` with the rule of :mod:`hypervisor.rules` Xen breaks.

h01_l1_entry_rules
  - ``hypervisor.mm.l1:get_page_from_l1e(xen, e: int, l1_owner, pg_owner) -> int``
    -- the references a present L1 entry needs (flags, I/O memory, owner, the
    writable type); returns the cache bits to flip (Xen's positive return:
    0, or bits of PCD|PWT|PAT).
h02_page_types
  - ``hypervisor.mm.refs:get_page_type(xen, mfn: Mfn, pg, t, xen_l2: bool) -> None``
    -- take a type reference; a type changes only at count 0 (flush, validate
    through ``PROMOTE[t]``).
  - ``hypervisor.mm.refs:put_page_type(xen, mfn: Mfn, pg, container: PageInfo |
    None) -> None`` -- drop one; the last of a page table devalidates it
    (``DEMOTE[t]``).
h03_validate_l2
  - ``hypervisor.mm.upper:promote_l2_table(xen, mfn: Mfn, pg) -> None`` -- validate
    an L2, rolling back the references already taken on a failure
    (``PROMOTE[PageType.L2]``).
h04_linear_tables
  - ``hypervisor.mm.upper:get_linear_pagetable(xen, e: int, level: int, t_mfn: Mfn,
    pg, c_mfn: Mfn, c_pg, d) -> None`` -- the linear (same-level) page-table rule.
h05_trapped_writes
  - ``hypervisor.mm.ptwr:ptwr_emulated_update(xen, v, va: int, l1mfn: Mfn, slot:
    int, old: int, new: int, size: int) -> str | None`` -- the checked update of
    a trapped store into a live L1; None when emulated, else why not.

:data:`REGISTRY` is the authority: ``sorted(REGISTRY)``. :data:`PLAIN` lists the
fast paths that inline some of them (``promote_l1_table``, ``get_page_from_l1e``
itself, ``put_page_from_l1e``, ``mmu_update``'s run of L1 updates, ...) with their
plain variants and what each inlines.
"""

from __future__ import annotations

import inspect
import sys
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar, cast, overload

import attrs

from hypervisor.errors import GuestError, LessonFunctionError

__all__ = [
    "REGISTRY",
    "LessonFunction",
    "LessonFunctionError",
    "PlainVariant",
    "install",
    "lesson_function",
    "override",
    "plain_variant",
    "reset",
    "swappable",
]

Params = ParamSpec("Params")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])
ResultCheck = Callable[[Any], str | None]
"""Given a returned value: why the contract does not allow it, or None."""


@attrs.define(eq=False)
class LessonFunction:
    """The record of one lesson function: its one ``name`` (``module:function``),
    the hypervisor's ``reference`` (the raw function, never wrapped), the
    ``signature`` and ``doc`` a starter is made from, the implementation in use
    (``impl``: the reference unless one was installed), and ``strip``: other
    module-level names of the same module a stripped copy must lose with it
    (its plain variant, a complete reference the lesson function does not call)."""

    name: str
    reference: Callable[..., Any]
    signature: inspect.Signature
    doc: str
    check: ResultCheck | None = attrs.field(default=None, repr=False)
    strip: tuple[str, ...] = ()
    impl: Callable[..., Any] = attrs.field(default=None, repr=False)
    swapped: bool = False
    """An implementation was installed (even the reference itself): the
    hypervisor calls it through the wrapper, and the inliners' plain variants."""
    wrapper: Callable[..., Any] | None = attrs.field(default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.impl is None:
            self.impl = self.reference


@attrs.define(eq=False)
class PlainVariant:
    """``plain`` stands in for ``fast`` while any lesson function in
    ``inlines`` (names) is swapped or replaced by its own plain variant."""

    fast: Callable[..., Any]
    plain: Callable[..., Any]
    inlines: tuple[str, ...]


REGISTRY: dict[str, LessonFunction] = {}
"""``module:function`` -> its record, for every lesson function."""
PLAIN: dict[Callable[..., Any], PlainVariant] = {}
"""Fast function (raw) -> its plain variant."""
_BY_FUNCTION: dict[Callable[..., Any], LessonFunction] = {}
"""Reference, or its plain variant -> the record."""
_BOUND: dict[Callable[..., Any], Callable[..., Any]] = {}
"""Raw function -> the object bound in its place now (absent: itself)."""


def _name(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}:{fn.__name__}"


@overload
def swappable(fn: Callable[Params, R], /) -> Callable[Params, R]: ...
@overload
def swappable(
    *, check: ResultCheck | None = None
) -> Callable[[Callable[Params, R]], Callable[Params, R]]: ...
def swappable(fn: Any = None, /, *, check: ResultCheck | None = None) -> Any:
    """Register ``fn`` as the reference of lesson function ``module:function``
    and return it unchanged. ``check``: a contract on the returned value beyond
    its annotated type (why a value is not allowed, or None)."""

    def register(fn: Callable[Params, R]) -> Callable[Params, R]:
        name = _name(fn)
        if name in REGISTRY:
            raise ValueError(f"lesson function {name} is declared twice")
        rec = LessonFunction(name, fn, inspect.signature(fn), inspect.getdoc(fn) or "", check)
        REGISTRY[name] = rec
        _BY_FUNCTION[fn] = rec
        return fn

    return register if fn is None else register(fn)


def plain_variant(
    fast: Callable[..., Any], inlines: Iterable[Callable[..., Any]]
) -> Callable[[F], F]:
    """Decorator: the decorated function is the plain variant of ``fast`` (same
    signature and behaviour), which inlines the lesson functions ``inlines``.
    When ``fast`` is a lesson function, the plain variant's name joins its
    record's ``strip``."""
    names = tuple(lesson_function(f).name for f in inlines)

    def deco(plain: F) -> F:
        if fast in PLAIN:
            raise ValueError(f"{_name(fast)} has two plain variants")
        if plain.__module__ != fast.__module__:
            raise ValueError(f"the plain variant of {_name(fast)} must live beside it")
        PLAIN[fast] = PlainVariant(fast, plain, names)
        rec = _BY_FUNCTION.get(fast)
        if rec is not None:
            rec.strip = (*rec.strip, plain.__name__)
            _BY_FUNCTION[plain] = rec
        return plain

    return deco


def lesson_function(fn: Callable[..., Any] | str) -> LessonFunction:
    """The record of ``fn`` (a lesson function as the hypervisor binds it now:
    the reference, its plain variant or an installed one's wrapper; or its
    ``module:function`` name).
    Raises: KeyError naming the known functions if there is no such one."""
    if isinstance(fn, str):
        rec = REGISTRY.get(fn)
    else:
        rec = _BY_FUNCTION.get(fn) or next(
            (r for r in REGISTRY.values() if fn is r.wrapper and fn is not None), None
        )
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
    old, was = rec.impl, rec.swapped
    _set(rec, impl, True)
    try:
        yield cast(Callable[Params, R], old)
    finally:
        _set(rec, old, was)


def install(name: str, impl: Callable[..., Any]) -> None:
    """Make ``impl`` the implementation of lesson function ``name`` until
    :func:`reset`. Raises: KeyError (no such function), TypeError (``impl`` is
    not callable with the reference's positional arguments)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a 'module:function' str, not {type(name).__name__}")
    rec = lesson_function(name)
    _check_callable(rec, impl)
    _set(rec, impl, True)


def reset() -> None:
    """Every lesson function back to its reference, every fast path back."""
    for rec in REGISTRY.values():
        rec.impl, rec.swapped, rec.wrapper = rec.reference, False, None
    _rebind()


def _set(rec: LessonFunction, impl: Callable[..., Any], swapped: bool) -> None:
    rec.impl, rec.swapped = impl, swapped
    rec.wrapper = _wrap(rec, impl) if swapped else None
    _rebind()


# -- rebinding ------------------------------------------------------------------------------


def _targets() -> dict[Callable[..., Any], Callable[..., Any]]:
    """Raw function -> what must be bound in its place now."""
    changed: set[str] = {name for name, rec in REGISTRY.items() if rec.swapped}
    plain: set[Callable[..., Any]] = set()
    grew = True
    while grew:  # an inliner of an inliner follows (fixed point of a tiny graph)
        grew = False
        for fast, variant in PLAIN.items():
            if fast not in plain and changed.intersection(variant.inlines):
                plain.add(fast)
                rec = _BY_FUNCTION.get(fast)
                if rec is not None:
                    changed.add(rec.name)
                grew = True
    out: dict[Callable[..., Any], Callable[..., Any]] = {}
    for rec in REGISTRY.values():
        if rec.wrapper is not None:
            out[rec.reference] = rec.wrapper
    for fast in plain:
        out.setdefault(fast, PLAIN[fast].plain)
    return out


def _tables() -> list[dict[Any, Any]]:
    """The dispatch tables that hold lesson functions or their inliners."""
    refs = sys.modules.get("hypervisor.mm.refs")
    return [] if refs is None else [refs.PROMOTE, refs.DEMOTE]


def _rebind() -> None:
    """Bind every raw function's target in place of what is bound now, in every
    loaded ``hypervisor.*`` module and dispatch table."""
    targets = _targets()
    moves: dict[int, Callable[..., Any]] = {}
    for raw in {*_BOUND, *targets}:
        now, want = _BOUND.get(raw, raw), targets.get(raw, raw)
        if now is not want:
            moves[id(now)] = want
    if not moves:
        return
    spaces = [
        (key, vars(module))
        for key, module in list(sys.modules.items())
        if (key == "hypervisor" or key.startswith("hypervisor.")) and key != __name__
    ]
    own = {(v.plain.__module__, v.plain.__name__) for v in PLAIN.values()}
    for where, space in [*spaces, *(("", table) for table in _tables())]:
        for key, value in list(space.items()):
            new = moves.get(id(value))
            if new is not None and (where, key) not in own:  # a plain variant keeps its name
                space[key] = new
    _BOUND.clear()
    _BOUND.update((raw, want) for raw, want in targets.items() if want is not raw)


# -- the wrapper of an installed implementation -----------------------------------------------


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


def _return_check(rec: LessonFunction) -> Callable[[Any], bool]:
    """Does a value match the reference's return annotation (``int``, ``None``,
    ``str | None``; ``bool`` is not an ``int`` here)?"""
    try:
        hint: Any = typing.get_type_hints(rec.reference).get("return", Any)
    except Exception:  # an annotation that cannot be evaluated: leave it unchecked
        return lambda value: True
    kinds: list[type] = []
    for arm in (
        typing.get_args(hint)
        if typing.get_origin(hint) in (typing.Union, types.UnionType)
        else (hint,)
    ):
        while hasattr(arm, "__supertype__"):  # NewType (Mfn) -> int
            arm = arm.__supertype__
        if arm is None or arm is type(None):
            kinds.append(type(None))
        elif isinstance(arm, type):
            kinds.append(arm)
        else:
            return lambda value: True
    allowed = tuple(kinds)
    return lambda value: type(value) in allowed


def _describe(value: object) -> str:
    return f"{type(value).__name__} {value!r:.80}"


def _wrap(rec: LessonFunction, impl: Callable[..., Any]) -> Callable[..., Any]:
    """``impl`` as the hypervisor calls it: all arguments positionally; a
    refusal names the lesson function; any other failure is a
    :class:`LessonFunctionError`."""
    name, sig = rec.name, rec.signature
    n = len(sig.parameters)
    type_ok, check = _return_check(rec), rec.check
    want = sig.return_annotation

    def lesson(*args: Any, **kwargs: Any) -> Any:
        if kwargs or len(args) != n:
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            args = bound.args
        try:
            result = impl(*args)
        except GuestError as err:
            if not err.step:
                err.step = name
            raise
        except LessonFunctionError:
            raise
        except Exception as exc:
            raise LessonFunctionError(name, f"{type(exc).__name__}: {exc}"[:2000]) from exc
        if not type_ok(result):
            raise LessonFunctionError(name, f"returned {_describe(result)}, not {want}")
        why = None if check is None else check(result)
        if why is not None:
            raise LessonFunctionError(name, f"returned {_describe(result)}: {why}")
        return result

    lesson.__name__ = lesson.__qualname__ = rec.reference.__name__
    lesson.__module__ = rec.reference.__module__
    lesson.__doc__ = rec.reference.__doc__
    lesson.__wrapped__ = impl  # type: ignore[attr-defined]
    return lesson
