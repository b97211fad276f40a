"""The hypervisor's seam (``hypervisor.steps``): the lesson functions of the
hypervisor track are registered unchanged, swapped by rebinding everywhere the
hypervisor reaches them, their inliners replaced by plain variants while they
are swapped, and an installed function is wrapped (blame, return contract,
LessonFunctionError)."""

from __future__ import annotations

import functools
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hvworld import A_, RW, TOTAL_FRAMES, Pr, World, audit_clean, pte
from rule_scenarios import SCENARIOS

from hypervisor import Hypervisor, PageFault, PageType, abi, steps
from hypervisor.errors import LessonFunctionError
from hypervisor.mm import l1, refs, upper
from hypervisor.mm.frames import FrameInfo, PageInfo
from hypervisor.mm.state import XenState

NAMES = (
    "hypervisor.mm.l1:get_page_from_l1e",
    "hypervisor.mm.ptwr:ptwr_emulated_update",
    "hypervisor.mm.refs:get_page_type",
    "hypervisor.mm.refs:put_page_type",
    "hypervisor.mm.upper:get_linear_pagetable",
    "hypervisor.mm.upper:promote_l2_table",
)
REFERENCES = {name: steps.lesson_function(name).reference for name in NAMES}


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    steps.reset()


def hypervisor_spaces() -> list[tuple[str, dict[str, Any]]]:
    return [
        (key, vars(m))
        for key, m in sys.modules.items()
        if key.startswith("hypervisor") and key != "hypervisor.steps"
    ]


def bindings(obj: object) -> list[str]:
    """Every ``module.name`` of the hypervisor (and dispatch-table slot) bound to ``obj``."""
    out = [f"{key}.{n}" for key, space in hypervisor_spaces() for n, v in space.items() if v is obj]
    for table_name in ("PROMOTE", "DEMOTE"):
        table = getattr(refs, table_name)
        out += [f"refs.{table_name}[{t.name}]" for t, v in table.items() if v is obj]
    return out


# -- the registry ---------------------------------------------------------------------------


def test_the_registry_names_the_six_lesson_functions_of_issue_10() -> None:
    assert tuple(sorted(steps.REGISTRY)) == NAMES


def test_unswapped_module_globals_are_the_raw_reference_functions() -> None:
    for name, ref in REFERENCES.items():
        module, function = name.split(":")
        assert getattr(sys.modules[module], function) is ref
        assert not hasattr(ref, "__wrapped__"), name
    assert refs.PROMOTE[PageType.L1] is l1.promote_l1_table
    assert refs.PROMOTE[PageType.L2] is REFERENCES["hypervisor.mm.upper:promote_l2_table"]
    assert type(l1.get_page_from_l1e) is types.FunctionType


def test_swappable_returns_the_function_it_registers() -> None:
    def f(xen: XenState) -> None:
        """A function of no lesson."""

    try:
        assert steps.swappable(f) is f
        assert steps.lesson_function(f).name == f"{__name__}:f"
    finally:
        del steps.REGISTRY[f"{__name__}:f"]
        steps._BY_FUNCTION.pop(f)


def test_a_plain_variant_is_stripped_with_its_lesson_function() -> None:
    assert steps.lesson_function(l1.get_page_from_l1e).strip == ("_get_page_from_l1e_plain",)


def test_lesson_function_refuses_an_unknown_name() -> None:
    with pytest.raises(KeyError, match="not a lesson function"):
        steps.lesson_function("hypervisor.mm.l1:put_page_from_l1e")


# -- rebinding ------------------------------------------------------------------------------


def test_install_rebinds_every_hypervisor_module_that_imported_the_function() -> None:
    ref = REFERENCES["hypervisor.mm.refs:get_page_type"]
    before = bindings(ref)
    assert {"hypervisor.mm.refs.get_page_type", "hypervisor.mm.upper.get_page_type"} <= set(before)
    assert "hypervisor.hypercalls.mmu_update.get_page_type" in before
    steps.install("hypervisor.mm.refs:get_page_type", ref)
    wrapper = refs.get_page_type
    assert wrapper is not ref
    assert bindings(ref) == []
    assert sorted(bindings(wrapper)) == sorted(before)


def test_install_rebinds_the_promote_dispatch_table() -> None:
    name = "hypervisor.mm.upper:promote_l2_table"
    steps.install(name, REFERENCES[name])
    assert refs.PROMOTE[PageType.L2] is upper.promote_l2_table is not REFERENCES[name]


def test_reset_restores_every_binding_to_the_raw_functions() -> None:
    before = {name: bindings(ref) for name, ref in REFERENCES.items()}
    fast = {fn: bindings(fn) for fn in steps.PLAIN}
    for name, ref in REFERENCES.items():
        steps.install(name, ref)
    steps.reset()
    assert {name: bindings(ref) for name, ref in REFERENCES.items()} == before
    assert {fn: bindings(fn) for fn in steps.PLAIN} == fast


def test_override_restores_the_previous_implementation_on_exit() -> None:
    ref = REFERENCES["hypervisor.mm.refs:put_page_type"]
    with steps.override(refs.put_page_type, ref) as old:
        assert old is ref
        assert refs.put_page_type is not ref
    assert refs.put_page_type is ref
    assert l1.put_page_from_l1e is not l1._put_page_from_l1e_plain


def test_swapping_get_page_type_binds_the_plain_variants_of_its_inliners() -> None:
    steps.install(
        "hypervisor.mm.refs:get_page_type", REFERENCES["hypervisor.mm.refs:get_page_type"]
    )
    assert l1.get_page_from_l1e is l1._get_page_from_l1e_plain
    assert refs.PROMOTE[PageType.L1] is l1._promote_l1_table_plain
    from hypervisor.mm import entries

    assert entries.get_page_from_l1e is l1._get_page_from_l1e_plain


def test_swapping_get_page_from_l1e_keeps_the_fast_get_page_type_callers() -> None:
    name = "hypervisor.mm.l1:get_page_from_l1e"
    steps.install(name, REFERENCES[name])
    assert refs.PROMOTE[PageType.L1] is l1._promote_l1_table_plain
    assert l1.put_page_from_l1e is not l1._put_page_from_l1e_plain
    assert l1.get_page_from_l1e.__wrapped__ is REFERENCES[name]  # type: ignore[attr-defined]


def test_swapping_put_page_type_binds_the_plain_put_page_from_l1e() -> None:
    name = "hypervisor.mm.refs:put_page_type"
    steps.install(name, REFERENCES[name])
    from hypervisor.mm import entries

    assert l1.put_page_from_l1e is entries.put_page_from_l1e is l1._put_page_from_l1e_plain


def test_no_hypervisor_function_keeps_a_lesson_function_out_of_the_seams_reach() -> None:
    """Default arguments and closures are not rebound: none may hold one."""
    watched = {id(f) for f in [*REFERENCES.values(), *steps.PLAIN]}
    for key, space in hypervisor_spaces():
        for name, value in space.items():
            if not isinstance(value, types.FunctionType):
                continue
            held = [*(value.__defaults__ or ()), *(value.__kwdefaults__ or {}).values()]
            held += [c.cell_contents for c in value.__closure__ or () if _filled(c)]
            assert not [h for h in held if id(h) in watched], f"{key}.{name} keeps one"


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018 -- an empty cell raises
    except ValueError:
        return False
    return True


# -- the wrapper ----------------------------------------------------------------------------


def test_install_refuses_an_implementation_of_the_wrong_arity() -> None:
    with pytest.raises(TypeError, match="must take 5 arguments"):
        steps.install("hypervisor.mm.refs:get_page_type", lambda xen, mfn: None)


def test_install_refuses_something_not_callable() -> None:
    with pytest.raises(TypeError, match="must be callable"):
        steps.install("hypervisor.mm.refs:put_page_type", 42)  # type: ignore[arg-type]


def test_an_installed_function_gets_every_argument_positionally() -> None:
    seen: list[tuple[Any, ...]] = []
    ref = REFERENCES["hypervisor.mm.refs:put_page_type"]

    def mine(*args: Any) -> None:
        seen.append(args)
        ref(*args)

    w = World(Hypervisor(total_frames=TOTAL_FRAMES))
    steps.install("hypervisor.mm.refs:put_page_type", mine)
    w.a.unpin(w.M)
    assert seen
    assert all(len(args) == 4 for args in seen)
    audit_clean(w.xen)


def test_a_refusal_raised_by_an_installed_function_names_it() -> None:
    ref = REFERENCES["hypervisor.mm.l1:get_page_from_l1e"]
    w = World(Hypervisor(total_frames=TOTAL_FRAMES))
    steps.install("hypervisor.mm.l1:get_page_from_l1e", ref)
    err = w.refused(lambda: w.a.map_at(w.w(0), w.M, Pr | RW), abi.EBUSY)
    assert err.step == "hypervisor.mm.l1:get_page_from_l1e"


def test_an_unswapped_refusal_names_no_lesson_function() -> None:
    w = World(Hypervisor(total_frames=TOTAL_FRAMES))
    assert w.refused(lambda: w.a.map_at(w.w(0), w.M, Pr | RW), abi.EBUSY).step == ""


def test_an_exception_from_an_installed_function_is_a_lesson_function_error() -> None:
    def broken(xen: XenState, mfn: Any, pg: PageInfo, t: PageType, xen_l2: bool) -> None:
        raise NotImplementedError("write me")

    w = World(Hypervisor(total_frames=TOTAL_FRAMES))
    steps.install("hypervisor.mm.refs:get_page_type", broken)
    with pytest.raises(LessonFunctionError) as info:
        w.a.vcpu.mmuext_op([abi.MmuExtOp(abi.MMUEXT_PIN_L1_TABLE, w.P)])
    assert info.value.step == "hypervisor.mm.refs:get_page_type"
    assert info.value.cause == "NotImplementedError: write me"


@pytest.mark.parametrize("value", [None, True, -22, 1, "0"])
def test_get_page_from_l1e_returning_outside_its_contract_is_a_lesson_function_error(
    value: object,
) -> None:
    w = World(Hypervisor(total_frames=TOTAL_FRAMES))
    steps.install("hypervisor.mm.l1:get_page_from_l1e", lambda xen, e, a, b: value)
    with pytest.raises(LessonFunctionError, match="get_page_from_l1e"):
        w.a.vcpu.mmu_update([(w.a.slot_ptr(w.w(0)), pte(w.P, Pr | A_))])


def test_ptwr_emulated_update_may_return_a_reason() -> None:
    w = World(Hypervisor(total_frames=TOTAL_FRAMES))
    steps.install("hypervisor.mm.ptwr:ptwr_emulated_update", lambda *args: "no")
    l1mfn, slot = w.a.l1_slot(w.w(0))
    pfn = w.a.dom.initial_p2m.index(l1mfn)
    with pytest.raises(PageFault, match="no"):
        w.a.vcpu.store(w.a.va_of_pfn(pfn) + slot * 8, pte(w.P, Pr))


# -- every path calls the swapped function --------------------------------------------------


@contextmanager
def counting(name: str) -> Iterator[list[int]]:
    """Install the reference of ``name`` behind a call counter."""
    calls = [0]
    ref = REFERENCES[name]

    def counted(*args: Any) -> Any:
        calls[0] += 1
        return ref(*args)

    steps.install(name, counted)
    yield calls
    steps.reset()


def _filled_l1(w: World, n: int, flags: int) -> int:
    """A fresh frame of A holding ``n`` present entries (A's frames P.. T are
    unmapped, so no RW target is a page table), written as plain data."""
    mfn = w.a.fresh()
    targets = [w.P, w.Q, w.R, w.S, w.T][:n]
    w.a.mmu_update(
        [(abi.MmuUpdate(mfn << 12 | i * 8, pte(t, flags))) for i, t in enumerate(targets)]
    )
    return mfn


def _trapped_store(w: World, value: int) -> None:
    l1mfn, slot = w.a.l1_slot(w.w(0))
    pfn = w.a.dom.initial_p2m.index(l1mfn)
    w.a.vcpu.store(w.a.va_of_pfn(pfn) + slot * 8, value)


def _l2_over(w: World, l1mfn: int) -> int:
    l2 = w.a.fresh()
    w.a.mmu_update([(l2 << 12, pte(l1mfn, Pr | A_))])
    return l2


PATHS: dict[str, Callable[[World], Callable[[], object]]] = {
    "mmu_update": lambda w: lambda: w.a.map_at(w.w(0), w.P, Pr | RW | A_),
    "update_va_mapping": lambda w: lambda: w.a.update_va_mapping(w.w(1), pte(w.Q, Pr | RW | A_)),
    "trapped write": lambda w: lambda: _trapped_store(w, pte(w.R, Pr | RW | A_)),
    "pin L1": lambda w: functools.partial(w.a.pin, 1, _filled_l1(w, 3, Pr | RW | A_)),
    "pin L2 (validates an L1)": lambda w: functools.partial(
        w.a.pin, 2, _l2_over(w, _filled_l1(w, 3, Pr | RW | A_))
    ),
}
"""Set-up on a world -> the operation whose calls are counted."""


@pytest.mark.parametrize(
    ("name", "path", "calls"),
    [
        ("hypervisor.mm.l1:get_page_from_l1e", "mmu_update", 1),
        ("hypervisor.mm.l1:get_page_from_l1e", "update_va_mapping", 1),
        ("hypervisor.mm.l1:get_page_from_l1e", "trapped write", 1),
        ("hypervisor.mm.l1:get_page_from_l1e", "pin L1", 3),
        ("hypervisor.mm.l1:get_page_from_l1e", "pin L2 (validates an L1)", 3),
        ("hypervisor.mm.refs:get_page_type", "mmu_update", 1),
        ("hypervisor.mm.refs:get_page_type", "trapped write", 1),
        ("hypervisor.mm.refs:get_page_type", "pin L1", 4),
        ("hypervisor.mm.refs:get_page_type", "pin L2 (validates an L1)", 5),
        ("hypervisor.mm.ptwr:ptwr_emulated_update", "trapped write", 1),
        ("hypervisor.mm.upper:promote_l2_table", "pin L2 (validates an L1)", 1),
    ],
)
def test_a_swapped_function_is_called_on_every_path(name: str, path: str, calls: int) -> None:
    w = World(Hypervisor(total_frames=TOTAL_FRAMES))
    operation = PATHS[path](w)
    with counting(name) as seen:
        operation()
        assert seen[0] == calls
    audit_clean(w.xen)


def test_a_swapped_put_page_type_sees_every_released_writable_mapping() -> None:
    w = World(Hypervisor(total_frames=TOTAL_FRAMES))
    l1mfn = _filled_l1(w, 3, Pr | RW | A_)
    w.a.pin(1, l1mfn)
    with counting("hypervisor.mm.refs:put_page_type") as seen:
        w.a.unpin(l1mfn)  # the L1's type reference, then its three RW entries'
        assert seen[0] == 4
    audit_clean(w.xen)


def test_a_swapped_get_linear_pagetable_sees_a_linear_entry() -> None:
    w = World(Hypervisor(total_frames=TOTAL_FRAMES))
    with counting("hypervisor.mm.upper:get_linear_pagetable") as seen:
        w.a.set_entry(w.K2, 0, pte(w.K3, Pr | A_))
        assert seen[0] == 1
    audit_clean(w.xen)


# -- swapped-but-identical: the reference through the seam changes nothing ------------------


def outcome(xen: Hypervisor) -> tuple[Any, ...]:
    """Everything observable of a machine: trace, consoles, frames, memory, M2P."""
    state = xen.state
    frames = {m: FrameInfo.from_page(m, pg) for m, pg in state.frames.items()}
    memory = {m: bytes(w) for m, w in state.mem.frames_words.items() if any(w)}
    consoles = [xen.console(d.domid) for d in xen.domains]
    return (xen.trace.to_jsonl(), consoles, frames, memory, dict(state.m2p))


def run_scenarios() -> dict[str, tuple[Any, ...]]:
    return {
        rule: outcome(fn(World(Hypervisor(total_frames=TOTAL_FRAMES))))
        for rule, fn in sorted(SCENARIOS.items())
    }


_UNSWAPPED: dict[str, tuple[Any, ...]] = {}


@pytest.mark.parametrize("name", NAMES)
def test_the_reference_installed_through_the_seam_passes_every_rule_scenario_identically(
    name: str,
) -> None:
    if not _UNSWAPPED:
        _UNSWAPPED.update(run_scenarios())
    steps.install(name, REFERENCES[name])
    swapped = run_scenarios()
    for rule, expected in _UNSWAPPED.items():
        assert swapped[rule] == expected, f"{rule} differs with {name} swapped"


def _batch_into_one_l1(w: World) -> Callable[[], object]:
    """Four requests into A's scratch L1: map P, Q read-only, R writable, then
    P again writable (the common batch an mmu_update fast path may take in one run)."""
    ptrs = [w.a.slot_ptr(w.w(i)) for i in range(4)]
    vals = [pte(w.P, Pr | A_), pte(w.Q, Pr | A_), pte(w.R, Pr | RW | A_), pte(w.P, Pr | RW | A_)]
    reqs = [abi.MmuUpdate(p, v) for p, v in zip(ptrs, vals, strict=True)]
    return functools.partial(w.a.mmu_update, reqs)


@pytest.mark.parametrize(
    ("name", "calls"),
    [("hypervisor.mm.l1:get_page_from_l1e", 4), ("hypervisor.mm.refs:get_page_type", 2)],
)
def test_a_swapped_function_sees_every_request_of_an_mmu_update_batch(
    name: str, calls: int
) -> None:
    w = World(Hypervisor(total_frames=TOTAL_FRAMES))
    operation = _batch_into_one_l1(w)
    with counting(name) as seen:
        operation()
        assert seen[0] == calls
    audit_clean(w.xen)


def test_a_swapped_put_page_type_sees_every_writable_entry_an_mmu_update_batch_replaces() -> None:
    w = World(Hypervisor(total_frames=TOTAL_FRAMES))
    _batch_into_one_l1(w)()
    reqs = [abi.MmuUpdate(w.a.slot_ptr(w.w(i)), pte(w.S, Pr | A_)) for i in range(4)]
    with counting("hypervisor.mm.refs:put_page_type") as seen:
        w.a.mmu_update(reqs)  # two of the four replaced entries were writable
        assert seen[0] == 2
    audit_clean(w.xen)


def test_lesson_function_finds_the_record_of_a_plain_variant() -> None:
    name = "hypervisor.mm.l1:get_page_from_l1e"
    assert steps.lesson_function(l1._get_page_from_l1e_plain).name == name
