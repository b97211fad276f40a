"""The hypervisor's inlined fast paths behave exactly as the plain code.

Hot loops inline the common cases of the functions they call (see
:func:`hypervisor.hypercalls.mmu_update._l1_run`). Each fast path has a
plain variant that calls the functions instead; the two must leave the same
machine and give the same answers for any input. Hypothesis draws batches
that mix the common case with every way out of it (other frames' owners, I/O
and Xen frames, free frames, page tables mapped writable, disallowed flags,
other commands and other frames, malformed requests) and runs each on two
identical machines, one with the fast path and one with the plain one.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis_profiles import machine_settings

from hypervisor import FrameInfo, HypercallError, Hypervisor, PageType, abi, rules
from hypervisor.abi import MmuExtOp, MmuUpdate
from hypervisor.hw.memory import ZERO_WORDS
from hypervisor.hypercalls import mmu_update
from hypervisor.mm import l1, refs

pytestmark = pytest.mark.property

TOTAL_FRAMES = 2048
P, RW, US, PWT, PCD, A, D, PAT, G = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40, 0x80, 0x100
GUEST_KERNEL, NX, AVAIL = 1 << 52, 1 << 63, 0x200
FLAGS = (RW, US, PWT, PCD, A, D, PAT, G, GUEST_KERNEL, NX, AVAIL)


class Machine:
    """A caller domain (64-bit or PAE, privileged or not) with a pinned L1 of
    its own, and another domain whose frames it may try to map."""

    def __init__(self, guest_width: int, privileged: bool) -> None:
        self.xen = Hypervisor(total_frames=TOTAL_FRAMES)
        self.dom = self.xen.create_domain(300, privileged=privileged, guest_width=guest_width)
        self.other = self.xen.create_domain(100)
        self.v = self.dom.vcpus[0]
        si = self.dom.start_info
        first_table = (si.pt_base - si.virt_base) // 4096
        first_free = first_table + si.nr_pt_frames
        p2m = self.dom.initial_p2m
        self.l1, self.spare = p2m[first_free], p2m[first_free + 1]
        for pfn in (first_free, first_free + 1, first_free + 2):  # unmapped: type count 0
            self.v.update_va_mapping(si.virt_base + pfn * 4096, 0, abi.UVMF_INVLPG)
        self.v.mmuext_op([MmuExtOp(abi.MMUEXT_PIN_L1_TABLE, self.l1)])
        untyped = p2m[first_free + 2]  # a failed pin leaves it of type NONE
        self.v.mmu_update([MmuUpdate(untyped << 12, (TOTAL_FRAMES - 1) << 12 | P)])
        with pytest.raises(HypercallError):
            self.v.mmuext_op([MmuExtOp(abi.MMUEXT_PIN_L1_TABLE, untyped)])
        self.tables = [p2m[first_table + i] for i in range(si.nr_pt_frames)]
        self.owned = {
            abi.DOMID_SELF: [*(p2m[p] for p in range(first_free + 2, first_free + 8)), self.spare],
            self.other.domid: list(self.other.initial_p2m[-6:]),
            abi.DOMID_IO: [5, 0x9F],
            abi.DOMID_XEN: [256, 270],
        }

    def targets(self) -> list[int]:
        """Every kind of frame an entry may name: data, untyped, page tables
        (the L1 itself too), another domain's, I/O, Xen's, free, beyond memory."""
        return [f for frames in self.owned.values() for f in frames] + [
            *self.tables[:3],
            self.l1,
            TOTAL_FRAMES - 1,
            TOTAL_FRAMES + 7,
        ]

    def snapshot(self) -> tuple[Any, ...]:
        state = self.xen.state
        return (
            {m: FrameInfo.from_page(m, pg) for m, pg in state.frames.items()},
            {m: w.tobytes() for m, w in state.mem.frames_words.items() if w != ZERO_WORDS},
            dict(state.m2p),
        )


@contextmanager
def l1_run(fn: Callable[..., int]) -> Iterator[None]:
    saved = mmu_update._l1_run
    mmu_update._l1_run = fn
    try:
        yield
    finally:
        mmu_update._l1_run = saved


def entry(rnd: random.Random, m: Machine, fd: int, odd: float = 0.06) -> int:
    """An entry: mostly present, mapping one of FD's own frames with ordinary
    flags (the fast path); with probability ``odd`` each, another frame or
    one flag more or less."""
    if rnd.random() < 0.06:
        return 0
    frames = m.owned[fd] if rnd.random() >= odd else m.targets()
    flags = P | A | rnd.choice([0, RW, US, RW | US, RW | US | D])
    if rnd.random() < odd:
        flags ^= rnd.choice(FLAGS)
    return rnd.choice(frames) << 12 | flags


def request(rnd: random.Random, m: Machine, fd: int, cmd: int) -> Any:
    """Mostly a ``cmd`` request (MMU_NORMAL_PT_UPDATE or PRESERVE_AD) of one of
    the L1's first slots; now and then one into another frame, with another
    command, or malformed."""
    slot = rnd.randrange(8) if rnd.random() < 0.75 else rnd.randrange(512)
    ptr, val = m.l1 << 12 | slot * 8 | cmd, entry(rnd, m, fd)
    kind = rnd.randrange(60)
    if kind == 0:  # another frame
        ptr = rnd.choice([m.spare, m.tables[0], m.owned[abi.DOMID_SELF][0]]) << 12 | slot * 8
    elif kind == 1:  # another command, or a misaligned entry
        ptr |= rnd.randrange(1, 8)
    elif kind == 2:  # a well-formed request that is not an MmuUpdate
        return (ptr, val)
    elif kind == 3:
        val = rnd.choice([True, -1, 1 << 64, (1 << 64) | val, "x", 1.0])
    elif kind == 4:
        ptr = rnd.choice([True, -8, 1 << 64, (1 << 64) | ptr, None])
    elif kind == 5:
        return rnd.choice([None, (ptr,), "req"])
    return MmuUpdate(ptr, val)


def batch(rnd: random.Random, m: Machine) -> tuple[list[Any], int]:
    """A batch of 8-64 requests mostly into the pinned L1, and its foreigndom;
    one batch in three mostly MMU_PT_UPDATE_PRESERVE_AD."""
    fd = rnd.choice([abi.DOMID_SELF] * 3 + [*m.owned])
    cmd = rnd.choice([abi.MMU_NORMAL_PT_UPDATE] * 2 + [abi.MMU_PT_UPDATE_PRESERVE_AD])
    return [request(rnd, m, fd, cmd) for _ in range(rnd.randrange(8, 65))], fd


def outcome(v: Any, reqs: list[Any], foreigndom: int) -> tuple[Any, ...]:
    try:
        return ("done", v.mmu_update(reqs, foreigndom))
    except HypercallError as err:
        return ("refused", err.errno, err.rule, err.done, str(err))


@machine_settings(default=(60, 1), long=(600, 1))
@given(
    width=st.sampled_from([64, 32]),
    privileged=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_mmu_update_fast_run_equals_plain(width: int, privileged: bool, seed: int) -> None:
    """Four batches in a row: the same answers (result, or errno, rule, done
    and message), the same frames, contents and M2P, and a clean audit."""
    rnd = random.Random(seed)
    fast, plain = Machine(width, privileged), Machine(width, privileged)
    for _ in range(4):
        reqs, fd = batch(rnd, fast)
        got = outcome(fast.v, reqs, fd)
        with l1_run(mmu_update._l1_run_plain):
            want = outcome(plain.v, reqs, fd)
        assert got == want, f"foreigndom {fd:#x}, batch {reqs}"
        assert fast.snapshot() == plain.snapshot()
        assert fast.xen.audit() == []


def test_an_entry_beyond_64_bits_inside_a_run_is_refused() -> None:
    """do_mmu_update copies in ``val`` as a u64: a value past 64 bits in the
    middle of a run of L1 updates is EINVAL at its own index, the earlier
    request applied."""
    m = Machine(64, False)
    own = m.owned[abi.DOMID_SELF][0]
    count = m.xen.frame(own).count
    reqs = [
        MmuUpdate(m.l1 << 12, own << 12 | P),
        MmuUpdate(m.l1 << 12 | 8, 1 << 64 | own << 12 | P),
    ]
    with pytest.raises(HypercallError) as refused:
        m.v.mmu_update(reqs)
    assert (refused.value.rule, refused.value.done) == (rules.ARGS_OUT_OF_RANGE.id, 1)
    assert m.xen.frame(own).count == count + 1
    assert m.xen.audit() == []


def test_a_xen_heap_frame_with_cache_attributes_inside_a_run_is_refused() -> None:
    """mm.c get_page_from_l1e: even a privileged guest may not map a Xen-heap
    frame with cache attributes (FD DOMID_XEN), also right after mapping
    another one plainly in the same batch."""
    m = Machine(64, True)
    reqs = [MmuUpdate(m.l1 << 12, 256 << 12 | P), MmuUpdate(m.l1 << 12 | 8, 270 << 12 | P | PCD)]
    with pytest.raises(HypercallError) as refused:
        m.v.mmu_update(reqs, abi.DOMID_XEN)
    assert (refused.value.rule, refused.value.done) == (rules.L1_CACHE_ATTR_XEN_HEAP.id, 1)
    assert m.xen.frame(270).count == 1
    assert m.xen.audit() == []


@contextmanager
def plain_l1_validation() -> Iterator[None]:
    """Validate and devalidate L1s with the plain variants."""
    saved = refs.PROMOTE[PageType.L1], refs.DEMOTE[PageType.L1]
    refs.PROMOTE[PageType.L1] = l1._promote_l1_table_plain
    refs.DEMOTE[PageType.L1] = l1._demote_l1_table_plain
    try:
        yield
    finally:
        refs.PROMOTE[PageType.L1], refs.DEMOTE[PageType.L1] = saved


def pin_and_unpin(m: Machine, entries: list[int]) -> list[tuple[Any, ...]]:
    """Write ``entries`` into the spare frame, pin it as an L1, unpin it: the
    outcome of each step. (An entry mapping the spare frame writable is
    made read-only: a frame mapping itself writable is never a valid L1.)"""
    entries = [e & ~RW if e >> 12 == m.spare else e for e in entries]
    out = [
        outcome(
            m.v,
            [MmuUpdate(m.spare << 12 | i * 8, e) for i, e in enumerate(entries)],
            abi.DOMID_SELF,
        )
    ]
    for cmd in (abi.MMUEXT_PIN_L1_TABLE, abi.MMUEXT_UNPIN_TABLE):
        try:
            out.append(("done", m.v.mmuext_op([MmuExtOp(cmd, m.spare)])))
        except HypercallError as err:
            out.append(("refused", err.errno, err.rule, err.done, str(err)))
    return out


@machine_settings(default=(40, 1), long=(400, 1))
@given(
    width=st.sampled_from([64, 32]),
    privileged=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_l1_validation_fast_equals_plain(width: int, privileged: bool, seed: int) -> None:
    """promote_l1_table and demote_l1_table against their plain variants, on
    tables of random entries (mostly the domain's own frames): the same
    answers, the same machine, a clean audit."""
    rnd = random.Random(seed)
    fast, plain = Machine(width, privileged), Machine(width, privileged)
    for _ in range(3):
        odd = rnd.choice([0.0, 0.0, 0.001, 0.01])
        n = rnd.randrange(1, 513)
        entries = [entry(rnd, fast, abi.DOMID_SELF, odd) for _ in range(n)]
        got = pin_and_unpin(fast, entries)
        with plain_l1_validation():
            want = pin_and_unpin(plain, entries)
        assert got == want, f"entries {[hex(e) for e in entries]}"
        assert fast.snapshot() == plain.snapshot()
        assert fast.xen.audit() == []
