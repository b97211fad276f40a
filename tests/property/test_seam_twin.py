"""Swapped-but-identical: the hypervisor's references installed through the seam
(``hypervisor.steps``) give exactly the outcomes of the unswapped hypervisor.

Installing a lesson function's own reference exercises everything a student's
function goes through -- the rebinding, the wrapper, the plain variants of the
fast paths that inline it -- while the behaviour must not move at all. Two
machines run the same random hypercalls (the strategies of
``test_hypercall_machine``) and the same kernel lifecycles: one unswapped, one
with a drawn set of lesson functions installed. Every step's result or refusal,
and at the end the trace, the consoles, every frame's metadata and contents and
the M2P, must be equal.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import test_hypercall_machine as hm
from hypothesis import given
from hypothesis import strategies as st
from hypothesis_profiles import machine_settings

from hypervisor import HypercallError, Hypervisor, PageFault, abi, steps
from hypervisor.mm.frames import FrameInfo
from minikern import Kernel

pytestmark = pytest.mark.property

SETTINGS = machine_settings(default=(10, 1), long=(300, 1))
NAMES = sorted(steps.REGISTRY)


@contextmanager
def references_installed(names: tuple[str, ...]) -> Iterator[None]:
    """The references of ``names`` installed through the seam inside the block."""
    for name in names:
        steps.install(name, steps.lesson_function(name).reference)
    try:
        yield
    finally:
        steps.reset()


def machine_state(xen: Hypervisor) -> tuple[Any, ...]:
    """Every frame's metadata and contents, and the M2P."""
    state = xen.state
    return (
        {m: FrameInfo.from_page(m, pg) for m, pg in state.frames.items()},
        {m: bytes(w) for m, w in state.mem.frames_words.items() if any(w)},
        dict(state.m2p),
    )


def outcome(xen: Hypervisor) -> tuple[Any, ...]:
    """Everything observable of a machine: its history (trace, consoles) and state."""
    return (xen.trace.to_jsonl(), [xen.console(d.domid) for d in xen.domains], *machine_state(xen))


def result_of(call: Callable[[], Any]) -> Any:
    """A step's result, or its refusal/fault as comparable data."""
    try:
        return ("ok", call())
    except HypercallError as err:
        return ("refused", err.errno, err.rule, err.done, err.op, err.message)
    except PageFault as fault:
        return ("fault", fault.va, fault.error_code, fault.reason)


def step_st(draws: hm.Draws) -> st.SearchStrategy[hm.Step]:
    """One random step of the hypercall machine (batches, single calls, accesses)."""
    doms = st.integers(0, len(hm.DOMAIN_SPECS) - 1)

    def for_dom(dom: int) -> st.SearchStrategy[hm.Step]:
        reqs = st.lists(draws.request(dom), min_size=1, max_size=5).map(tuple)
        ops = st.lists(draws.mmuext(dom), min_size=1, max_size=4).map(tuple)
        fd = draws.foreigndom(dom)
        entries = st.lists(draws.multicall_entry(dom), min_size=1, max_size=4).map(tuple)
        word = st.integers(0, 511).map(lambda i: i * 8)
        value = st.one_of(draws.entry(dom), hm.garbage_st())
        stores = st.tuples(draws.va(dom), word, value, st.booleans()).map(
            lambda t: hm.Step("store", dom, ((t[0] & ~0xFFF) | t[1], t[2], t[3]))
        )
        return st.one_of(
            st.tuples(reqs, fd).map(lambda t: hm.Step("mmu_update", dom, t)),
            st.tuples(ops, fd).map(lambda t: hm.Step("mmuext_op", dom, t)),
            st.tuples(draws.va(dom), draws.entry(dom), draws.uvm_flags(dom)).map(
                lambda t: hm.Step("update_va_mapping", dom, t)
            ),
            entries.map(lambda e: hm.Step("multicall", dom, (e,))),
            stores,
            pin_st(draws, dom),
        )

    return doms.flatmap(for_dom)


def pin_st(draws: hm.Draws, dom: int) -> st.SearchStrategy[hm.Step]:
    """A frame filled with a few entries and pinned at some level, in one multicall
    (validation that fails part-way is common here)."""

    def build(mfn: int, slots: list[tuple[int, int]], level: int) -> hm.Step:
        fill = [abi.MmuUpdate(mfn << 12 | s << 3, e) for s, e in slots]
        pin = abi.MmuExtOp(abi.MMUEXT_PIN_L1_TABLE + level - 1, mfn)
        calls = (
            abi.MulticallEntry(abi.HYPERVISOR_mmu_update, (fill, abi.DOMID_SELF)),
            abi.MulticallEntry(abi.HYPERVISOR_mmuext_op, ([pin], abi.DOMID_SELF)),
        )
        return hm.Step("multicall", dom, (calls,))

    slots = st.lists(st.tuples(st.integers(0, 7), draws.entry(dom)), min_size=1, max_size=3)
    return st.builds(build, draws.own_mfn(dom), slots, st.integers(1, 4))


@SETTINGS
@given(
    names=st.sets(st.sampled_from(NAMES), min_size=1).map(lambda s: tuple(sorted(s))),
    data=st.data(),
)
def test_installed_references_give_the_unswapped_outcome_of_every_hypercall(
    names: tuple[str, ...], data: st.DataObject
) -> None:
    plain = hm.build_machine()
    with references_installed(names):
        swapped = hm.build_machine()
    n = data.draw(st.integers(5, 25), label="steps")
    for _ in range(n):
        step = data.draw(step_st(hm._DRAWS), label="step")
        expected = result_of(functools.partial(hm.perform, plain, step))
        with references_installed(names):
            got = result_of(functools.partial(hm.perform, swapped, step))
        assert got == expected, f"{step.kind} with {names} installed"
        assert machine_state(swapped) == machine_state(plain), f"after {step.kind}"
    assert outcome(swapped) == outcome(plain)
    assert not swapped.audit()


def lifecycle(guest_width: int, strategy: str, fork_style: str) -> Iterator[Hypervisor]:
    """A kernel's whole life: boot, spawn, mmap, fork, copy-on-write, exit;
    yields the machine after each stage."""
    k = Kernel.boot(512, guest_width=guest_width, strategy=strategy, fork_style=fork_style)
    xen: Hypervisor = k.hypervisor
    yield xen
    p = k.spawn()
    p.mmap(0x400000, 16 * 4096, "rw", populate=True)
    yield xen
    child = k.fork(p)
    yield xen
    child.write(0x400000, b"copy")
    p.write(0x401000, b"parent")
    yield xen
    k.exit(child)
    k.exit(p)
    yield xen


LIVES = [(64, "linux", "batched"), (64, "minios", "linux"), (32, "linux", "linux")]


@pytest.mark.parametrize("name", NAMES)
def test_an_installed_reference_gives_the_unswapped_kernel_lifecycle(name: str) -> None:
    for life in LIVES:
        expected = [outcome(xen) for xen in lifecycle(*life)]
        with references_installed((name,)):
            got = [outcome(xen) for xen in lifecycle(*life)]
        for stage, (x, y) in enumerate(zip(got, expected, strict=True)):
            assert x == y, f"lifecycle {life} stage {stage} differs with {name} installed"
