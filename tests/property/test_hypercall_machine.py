"""Random hypercalls, valid and invalid, against a small multi-domain machine.

A Hypothesis state machine drives a privileged dom0, two unprivileged 64-bit
domains and a 32-bit PAE domain with random
``mmu_update``, ``mmuext_op``, ``update_va_mapping``, ``multicall`` and
``vm_assist`` calls, and with kernel- and user-mode memory accesses. After every
step:

* ``xen.audit()`` is empty;
* a refusal is a :class:`HypercallError` with a positive errno, ``done`` within
  the batch and a rule id of :data:`hypervisor.rules.RULES`; a failed access is
  a :class:`PageFault`; anything else escaping is a hypervisor bug and fails;
* a refused ``mmu_update``/``mmuext_op`` batch changed nothing beyond its first
  ``done`` requests: the same machine, rebuilt by replaying every earlier step
  onto a fresh hypervisor and then running only those ``done`` requests, has
  identical frame metadata, frame contents and M2P -- except the flag bits Xen
  adjusts in the entries of a table whose validation failed part-way (pv/mm.h
  ``adjust_guest_l*e``; earlier entries keep them, spec 2.4 and 2.6);
* every present guest entry of a validated table carries Xen's adjustments:
  USER in a 64-bit guest's tables (ACCESSED too in an L4), USER|RW in a PAE L3.

``copy.deepcopy(xen)`` cannot copy the machine (``Memory`` keeps ``memoryview``
objects, which cannot be pickled), and the hypervisor's trace does not record
plain guest stores or the A/D bits the page walk sets, so "the machine before
the call" is rebuilt from this module's own log of steps (:class:`Step`).

Set ``HYPOTHESIS_PROFILE=long`` for a deeper search.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hypothesis import assume, event, given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from hypothesis_profiles import machine_settings

from hypervisor import Domain, HypercallError, Hypervisor, PageFault, PageType, abi
from hypervisor.mm.frames import PageInfo
from hypervisor.rules import RULES

pytestmark = pytest.mark.property

# -- settings -----------------------------------------------------------------------

SETTINGS = machine_settings(default=(60, 30), long=(1000, 80))

# -- the machine --------------------------------------------------------------------

TOTAL_FRAMES = 4096
P, RW, US, A, D = abi._PAGE_PRESENT, abi._PAGE_RW, abi._PAGE_USER, abi._PAGE_ACCESSED, 0x40
G, PCD, PSE, NX = abi._PAGE_GLOBAL, abi._PAGE_PCD, abi._PAGE_PSE, abi._PAGE_NX
GUEST_KERNEL = 1 << 52
"""Xen's private ``_PAGE_GUEST_KERNEL`` marker (pte bit 52), which a guest may also write."""
FLAG_BITS = (P, RW, US, A, D, G, PCD, PSE, NX, GUEST_KERNEL)
ADJUSTED_BITS = US | RW | A | G | PCD | abi._PAGE_PWT | abi._PAGE_PAT | GUEST_KERNEL
"""The bits Xen may add to (or, for a PAE L3, remove from) a present entry it
validated: ``adjust_guest_l*e``, ``unadjust_guest_l3e``, the I/O cache flip."""
U64 = (1 << 64) - 1


DOMAIN_SPECS: tuple[dict[str, Any], ...] = (
    {"nr_pages": 500, "privileged": True, "vcpus": 2},
    {"nr_pages": 400},
    {"nr_pages": 300},
    {"nr_pages": 300, "guest_width": 32},
)


def build_machine() -> Hypervisor:
    """The start-of-day machine every run begins from (deterministic)."""
    xen = Hypervisor(total_frames=TOTAL_FRAMES)
    for spec in DOMAIN_SPECS:
        xen.create_domain(**spec)
    return xen


@attrs.frozen
class Layout:
    """Where a domain's frames are, as the builder left them."""

    p2m: tuple[int, ...]
    virt_base: int
    table_pfns: tuple[int, ...]
    hot_pfns: tuple[int, ...]
    """Table frames and the first few free frames: most draws land here, so
    random calls keep meeting each other's frames."""

    @classmethod
    def of(cls, dom: Domain) -> Layout:
        si = dom.start_info
        first = (si.pt_base - si.virt_base) >> 12
        tables = tuple(range(first, first + si.nr_pt_frames))
        free = first + si.nr_pt_frames
        hot = (*range(first), *tables, *range(free, free + 6))
        return cls(dom.initial_p2m, si.virt_base, tables, hot)

    @functools.cache  # noqa: B019 -- one Draws per module, strategies built once
    def va(self, pfn: int) -> int:
        return self.virt_base + pfn * 4096


PageState = tuple[Any, ...]
Snapshot = tuple[dict[int, PageState], dict[int, bytes], dict[int, int]]
INVALID_M2P = (1 << 64) - 1


def page_state(pg: PageInfo) -> PageState:
    """A frame's metadata as a refusal must leave it, as a tuple of
    ``FrameInfo``'s fields. At type count 0 the type word is "free to change":
    a failed validation resets it to NONE, not validated (spec 2.4,
    mm.c:2660-2667), so it is left out there; the counts, owner and pin are
    always compared."""
    if pg.type_count:
        t, validated, xen_l2 = pg.type, pg.validated, pg.pae_xen_l2
    else:
        t, validated, xen_l2 = PageType.NONE, False, False
    counts = (pg.type_count, pg.count)
    return (pg.owner, t, *counts, validated, pg.pinned, pg.allocated, pg.linear, xen_l2)


def machine_snapshot(xen: Hypervisor) -> Snapshot:
    """Every frame's metadata (see :func:`page_state`), contents and M2P entry.

    Sparse, like the machine: a frame with no metadata is free, one with no
    storage (or all zeros) reads as zeros, one with no M2P entry reads as
    INVALID -- so two snapshots are equal exactly when every frame reads the
    same through ``xen.frame``, ``xen.read_frame`` and ``xen.m2p``, at the
    cost of the frames in use rather than of all 4,096."""
    state = xen.state
    zero = bytes(4096)
    pages = {m: bytes(w) for m, w in state.mem.frames_words.items()}
    return (
        {m: page_state(pg) for m, pg in state.frames.items()},
        {m: b for m, b in pages.items() if b != zero},
        {m: v for m, v in state.m2p.items() if v != INVALID_M2P},
    )


def contents_differ(a: bytes, b: bytes) -> bool:
    """Do two frames differ in more than Xen's adjustments of present entries?"""
    if a == b:
        return False
    wa = memoryview(a).cast("Q")
    wb = memoryview(b).cast("Q")
    return any(
        x != y and (not x & y & P or (x ^ y) & ~ADJUSTED_BITS) for x, y in zip(wa, wb, strict=True)
    )


def snapshot_vs(a: Snapshot, b: Snapshot) -> str:
    """The first differences between two snapshots, in words ('' if identical
    up to Xen's entry adjustments)."""
    if a == b:
        return ""
    zero = bytes(4096)
    diffs: list[str] = []
    for n, what in enumerate(("metadata", "contents", "m2p")):
        x: dict[int, Any] = a[n]
        y: dict[int, Any] = b[n]
        for m in sorted(x.keys() | y.keys()):
            if n == 1:
                differ = contents_differ(x.get(m, zero), y.get(m, zero))
            else:
                differ = x.get(m) != y.get(m)
            if differ:
                diffs.append(f"mfn {m:#x} {what}: {x.get(m)!r:.80} != {y.get(m)!r:.80}")
    return "\n".join(diffs[:10])


def pae_l3_cleared(xen: Hypervisor, step: Step, snap: Snapshot) -> Snapshot:
    """``snap`` as a refused ``PIN_L3`` on a 32-bit guest may leave it: Xen's
    ``promote_l3_table`` zeroes slots 4-511 of a PAE L3 before it checks any
    entry, and a refusal after that point does not restore them."""
    ops = step.args[0] if step.kind == "mmuext_op" else ()
    first = ops[0] if ops else None
    if (
        not isinstance(first, abi.MmuExtOp)
        or first.cmd != abi.MMUEXT_PIN_L3_TABLE
        or xen.state.domains[step.dom].guest_width != 32
        or first.arg1 not in snap[1]
    ):
        return snap
    contents = dict(snap[1])
    cleared = contents[first.arg1][:32] + bytes(4096 - 32)
    if any(cleared):
        contents[first.arg1] = cleared
    else:
        del contents[first.arg1]
    return (snap[0], contents, snap[2])


def snapshot_difference(a: Hypervisor, b: Hypervisor) -> str:
    """The first differences between two machines, in words ('' if identical)."""
    return snapshot_vs(machine_snapshot(a), machine_snapshot(b))


def unadjusted_entries(xen: Hypervisor) -> list[str]:
    """Present guest entries of validated tables missing Xen's adjustments."""
    out = []
    domains = xen.state.domains
    for mfn, pg in xen.state.frames.items():
        live = pg.validated and pg.type_count and pg.type.is_pagetable
        if not live or pg.owner not in domains:
            continue
        pv64 = domains[pg.owner].guest_width == 64
        level = int(pg.type)
        if pv64:
            need = US | (A if level == 4 else 0)
        elif level == 3:
            need = US | RW
        else:
            continue
        words = memoryview(xen.read_frame(mfn)).cast("Q")
        slots = range(256) if level == 4 else range(4) if not pv64 and level == 3 else range(512)
        more = range(272, 512) if level == 4 else range(0)
        out += [
            f"L{level} mfn {mfn:#x} slot {i}: {words[i]:#x}"
            for r in (slots, more)
            for i in r
            if words[i] & P and words[i] & need != need
        ]
    return out


# -- steps: what a rule does, kept so that it can be replayed ---------------------------


@attrs.frozen
class Step:
    """One thing the guest did: ``kind`` names the call, ``dom`` the domain index."""

    kind: str
    dom: int
    args: tuple[Any, ...]


def _store(xen: Hypervisor, dom: int, va: int, value: int, user: bool) -> None:
    vcpu = xen.domains[dom].vcpus[0]
    if user:
        with vcpu.user_mode():
            vcpu.store(va, value)
    else:
        vcpu.store(va, value)


def _load(xen: Hypervisor, dom: int, va: int, user: bool) -> int:
    vcpu = xen.domains[dom].vcpus[0]
    if user:
        with vcpu.user_mode():
            return vcpu.load(va)
    return vcpu.load(va)


def _user_hypercall(xen: Hypervisor, dom: int) -> None:
    vcpu = xen.domains[dom].vcpus[0]
    with vcpu.user_mode():
        vcpu.mmuext_op([abi.MmuExtOp(abi.MMUEXT_TLB_FLUSH_LOCAL)])


PERFORM: dict[str, Callable[..., Any]] = {
    "mmu_update": lambda x, d, reqs, fd: x.domains[d].vcpus[0].mmu_update(list(reqs), fd),
    "mmuext_op": lambda x, d, ops, fd: x.domains[d].vcpus[0].mmuext_op(list(ops), fd),
    "update_va_mapping": lambda x, d, va, val, fl: (
        x.domains[d].vcpus[0].update_va_mapping(va, val, fl)
    ),
    "multicall": lambda x, d, entries: x.domains[d].vcpus[0].multicall(list(entries)),
    "vm_assist": lambda x, d, cmd, t: x.domains[d].vcpus[0].vm_assist(cmd, t),
    "store": _store,
    "load": _load,
    "user_hypercall": _user_hypercall,
}


def perform(xen: Hypervisor, step: Step) -> Any:
    """Do ``step`` on ``xen``; refusals and faults propagate."""
    return PERFORM[step.kind](xen, step.dom, *step.args)


def replay(steps: list[Step]) -> Hypervisor:
    """A fresh machine with ``steps`` done on it, refusals and faults ignored."""
    xen = build_machine()
    for step in steps:
        with contextlib.suppress(HypercallError, PageFault):
            perform(xen, step)
    return xen


def check_refusal(err: HypercallError, n: int | None = None) -> None:
    """A refusal is well formed: positive errno, known rule, ``done`` within the batch."""
    assert isinstance(err.errno, int), f"errno {err.errno!r} in {err}"
    assert err.errno > 0, f"errno {err.errno!r} in {err}"
    assert err.rule in RULES, f"rule {err.rule!r} is not in hypervisor.rules.RULES: {err}"
    if n is not None:
        assert 0 <= err.done < n, f"done={err.done} for a batch of {n}: {err}"


# -- strategies ---------------------------------------------------------------------


def flags_st() -> st.SearchStrategy[int]:
    return st.sets(st.sampled_from(FLAG_BITS)).map(lambda fs: sum(fs, 0))


def garbage_st() -> st.SearchStrategy[int]:
    return st.integers(0, U64)


class Draws:
    """Strategies for one machine: frames, entries, pointers, addresses. Each
    is built once per domain and reused (building strategies afresh on every
    draw made Hypothesis spend its time validating them)."""

    def __init__(self, xen: Hypervisor) -> None:
        self.layouts = [Layout.of(d) for d in xen.domains]
        used = {m for lay in self.layouts for m in lay.p2m}
        used |= {d.start_info.shared_info >> 12 for d in xen.domains}
        self.free_mfns = [m for m in range(272, TOTAL_FRAMES) if m not in used]

    @functools.cache  # noqa: B019 -- one Draws per module, strategies built once
    def own_mfn(self, dom: int) -> st.SearchStrategy[int]:
        lay = self.layouts[dom]
        hot = st.sampled_from(lay.hot_pfns).map(lambda pfn: lay.p2m[pfn])
        return st.one_of(hot, hot, hot, st.sampled_from(lay.p2m))

    @functools.cache  # noqa: B019 -- one Draws per module, strategies built once
    def mfn(self, dom: int) -> st.SearchStrategy[int]:
        """Mostly the domain's own frames; sometimes foreign, free, I/O, Xen's or
        beyond memory."""
        own = self.own_mfn(dom)
        others = [self.own_mfn(i) for i in range(len(self.layouts)) if i != dom]
        odd = st.one_of(
            *others,
            st.sampled_from(self.free_mfns),
            st.integers(0, 271),
            st.integers(TOTAL_FRAMES, (1 << 40) - 1),
        )
        return st.one_of(own, own, own, own, own, odd)

    @functools.cache  # noqa: B019 -- one Draws per module, strategies built once
    def entry(self, dom: int) -> st.SearchStrategy[int]:
        sensible = st.builds(lambda m, f: (m << 12) | f, self.mfn(dom), flags_st())
        return st.one_of(sensible, sensible, sensible, st.just(0), garbage_st())

    @functools.cache  # noqa: B019 -- one Draws per module, strategies built once
    def ptr(self, dom: int) -> st.SearchStrategy[int]:
        """A request pointer: a frame (tables, data, others), a slot and the
        command in the low bits (mostly 0, the normal update)."""
        cmd = st.one_of(*[st.just(0)] * 5, st.integers(0, 7))
        slot = st.one_of(st.integers(0, 3), st.integers(508, 511), st.integers(0, 511))
        return st.builds(lambda m, s, c: (m << 12) | (s << 3) | c, self.mfn(dom), slot, cmd)

    @functools.cache  # noqa: B019 -- one Draws per module, strategies built once
    def request(self, dom: int) -> st.SearchStrategy[Any]:
        good = st.builds(abi.MmuUpdate, self.ptr(dom), self.entry(dom))
        bad = st.sampled_from([(-1, 0), (0, 1 << 64), ("ptr", 0), (1, 2, 3), None, (0, None)])
        return st.one_of(*[good] * 11, bad)

    @functools.cache  # noqa: B019 -- one Draws per module, strategies built once
    def foreigndom(self, dom: int) -> st.SearchStrategy[int]:
        ids = list(range(len(self.layouts)))
        plain = st.sampled_from([abi.DOMID_SELF, dom, *ids, abi.DOMID_IO, abi.DOMID_XEN, 77])
        with_pfd = st.builds(lambda fd, pfd: fd | (pfd << 16), plain, st.sampled_from([0, *ids]))
        return st.one_of(*[st.just(abi.DOMID_SELF)] * 6, plain, with_pfd)

    def va(self, dom: int) -> st.SearchStrategy[int]:
        lay = self.layouts[dom]
        direct = st.sampled_from(lay.hot_pfns).map(lay.va)
        anywhere = st.sampled_from(range(len(lay.p2m))).map(lay.va)
        random_va = st.one_of(st.integers(0, U64), st.sampled_from([0, 0x400000, 1 << 47]))
        return st.one_of(direct, direct, direct, anywhere, random_va)

    @functools.cache  # noqa: B019 -- one Draws per module, strategies built once
    def mmuext(self, dom: int) -> st.SearchStrategy[Any]:
        mfn = self.mfn(dom)
        with_mfn = st.builds(
            abi.MmuExtOp,
            st.sampled_from(
                [
                    abi.MMUEXT_PIN_L1_TABLE,
                    abi.MMUEXT_PIN_L2_TABLE,
                    abi.MMUEXT_PIN_L3_TABLE,
                    abi.MMUEXT_PIN_L4_TABLE,
                    abi.MMUEXT_UNPIN_TABLE,
                    abi.MMUEXT_NEW_BASEPTR,
                    abi.MMUEXT_NEW_USER_BASEPTR,
                    abi.MMUEXT_CLEAR_PAGE,
                ]
            ),
            mfn,
        )
        copy_page = st.builds(abi.MmuExtOp, st.just(abi.MMUEXT_COPY_PAGE), mfn, mfn)
        flush = st.builds(
            abi.MmuExtOp,
            st.sampled_from([6, 7, 8, 9, 10, 11, 12]),
            self.va(dom),
            st.integers(0, 3),
        )
        odd = st.builds(
            abi.MmuExtOp,
            st.sampled_from([13, 14, 19, 20, 21, 99, 1 << 31]),
            st.integers(0, U64),
            st.integers(0, 9000),
        )
        zero_user_base = st.just(abi.MmuExtOp(abi.MMUEXT_NEW_USER_BASEPTR, 0))
        return st.one_of(with_mfn, with_mfn, with_mfn, copy_page, flush, odd, zero_user_base)

    @functools.cache  # noqa: B019 -- one Draws per module, strategies built once
    def uvm_flags(self, dom: int) -> st.SearchStrategy[int]:
        """Flush type and scope: local, all, or a vCPU-bitmap pointer (mostly a
        mapped direct-map address, sometimes anything)."""
        bitmap = st.builds(
            lambda how, va: how | (va & ~3), st.sampled_from([1, 2, 3]), self.va(dom)
        )
        return st.one_of(st.sampled_from([0, 1, 2, 4, 5, 6]), st.integers(0, 16), bitmap)

    @functools.cache  # noqa: B019 -- one Draws per module, strategies built once
    def multicall_entry(self, dom: int) -> st.SearchStrategy[abi.MulticallEntry]:
        mc = abi.MulticallEntry
        return st.one_of(
            st.builds(
                lambda r, fd: mc(abi.HYPERVISOR_mmu_update, (r, fd)),
                st.lists(self.request(dom), min_size=1, max_size=3),
                self.foreigndom(dom),
            ),
            st.builds(
                lambda o: mc(abi.HYPERVISOR_mmuext_op, (o, abi.DOMID_SELF)),
                st.lists(self.mmuext(dom), min_size=1, max_size=3),
            ),
            st.builds(
                lambda va, val, fl: mc(abi.HYPERVISOR_update_va_mapping, (va, val, fl)),
                self.va(dom),
                self.entry(dom),
                self.uvm_flags(dom),
            ),
            st.builds(
                lambda c, t: mc(abi.HYPERVISOR_vm_assist, (c, t)),
                st.sampled_from([0, 1, 7]),
                st.sampled_from([2, 3, 32, 9]),
            ),
            st.sampled_from(
                [
                    mc(99, ()),
                    mc(abi.HYPERVISOR_update_va_mapping, (1,)),
                    mc(abi.HYPERVISOR_multicall, ([],)),
                ]
            ),
        )


_DRAWS = Draws(build_machine())
"""The strategies of the start-of-day machine (every run starts from it)."""

# -- the state machine ------------------------------------------------------------------


class HypercallMachine(RuleBasedStateMachine):
    """Random hypercalls across several domains; the audit after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.xen = build_machine()
        self.draws = _DRAWS
        self.steps: list[Step] = []

    def _dom(self, data: st.DataObject) -> int:
        return data.draw(st.integers(0, len(self.xen.domains) - 1), label="dom")

    def _run(self, step: Step, batch: int | None = None) -> Any:
        """Do ``step``, log it, check a refusal is well formed; return the result
        or the exception (HypercallError / PageFault) it raised."""
        self.steps.append(step)
        try:
            result = perform(self.xen, step)
        except HypercallError as err:
            check_refusal(err, batch)
            event(f"{step.kind} refused: {err.rule}")
            return err
        except PageFault as fault:
            event(f"{step.kind}: page fault")
            return fault
        event(f"{step.kind}: ok")
        return result

    def _batch(self, step: Step, items: list[Any]) -> None:
        """Run an mmu_update / mmuext_op batch and check that a refusal changed
        nothing beyond the first ``done`` requests."""
        before = self.steps[:]
        pre = machine_snapshot(self.xen)
        result = self._run(step, len(items))
        if not isinstance(result, HypercallError):
            assert result == len(items), f"{step.kind} returned {result}, not {len(items)}"
            return
        if result.done == 0:
            post = machine_snapshot(self.xen)
            diff = snapshot_vs(pre, post) and snapshot_vs(pae_l3_cleared(self.xen, step, pre), post)
            assert not diff, f"refused {step.kind} with done=0 changed the machine:\n{diff}"
            return
        event(f"{step.kind}: refused after {result.done} done")
        expected = replay(before)
        done = Step(step.kind, step.dom, (tuple(items[: result.done]), *step.args[1:]))
        assert perform(expected, done) == result.done, "the done prefix alone was refused"
        diff = snapshot_difference(expected, self.xen)
        assert not diff, (
            f"refused {step.kind} (done={result.done}) changed more than its done prefix:\n{diff}"
        )

    @rule(data=st.data())
    def mmu_update(self, data: st.DataObject) -> None:
        dom = self._dom(data)
        reqs = data.draw(st.lists(self.draws.request(dom), min_size=1, max_size=5), label="reqs")
        fd = data.draw(self.draws.foreigndom(dom), label="foreigndom")
        self._batch(Step("mmu_update", dom, (tuple(reqs), fd)), reqs)

    @rule(data=st.data())
    def mmuext_op(self, data: st.DataObject) -> None:
        dom = self._dom(data)
        ops = data.draw(st.lists(self.draws.mmuext(dom), min_size=1, max_size=4), label="ops")
        fd = data.draw(self.draws.foreigndom(dom), label="foreigndom")
        self._batch(Step("mmuext_op", dom, (tuple(ops), fd)), ops)

    @rule(data=st.data())
    def update_va_mapping(self, data: st.DataObject) -> None:
        dom = self._dom(data)
        va = data.draw(self.draws.va(dom), label="va")
        val = data.draw(self.draws.entry(dom), label="val")
        flags = data.draw(self.draws.uvm_flags(dom), label="flags")
        result = self._run(Step("update_va_mapping", dom, (va, val, flags)))
        assert result is None or isinstance(result, HypercallError)

    @rule(data=st.data())
    def multicall(self, data: st.DataObject) -> None:
        dom = self._dom(data)
        entries = data.draw(
            st.lists(self.draws.multicall_entry(dom), min_size=1, max_size=4), label="entries"
        )
        results = self._run(Step("multicall", dom, (tuple(entries),)))
        assert isinstance(results, list), f"multicall raised {results!r}"
        assert len(results) == len(entries)
        assert all(type(r) is int and r <= 0 for r in results), results

    @rule(
        data=st.data(),
        cmd=st.sampled_from([abi.VMASST_CMD_enable, abi.VMASST_CMD_disable, 5]),
        type_=st.sampled_from([2, 2, 3, 32, 0, 31, 64]),
    )
    def vm_assist(self, data: st.DataObject, cmd: int, type_: int) -> None:
        self._run(Step("vm_assist", self._dom(data), (cmd, type_)))

    @rule(data=st.data())
    def pin_a_filled_frame(self, data: st.DataObject) -> None:
        """Write a few entries into one of the domain's frames as plain data, then
        pin it at some level: validation that fails part-way is common here
        (mm.c ``promote_lN_table``: a failure after slot 0 leaves type Ln)."""
        dom = self._dom(data)
        mfn = data.draw(self.draws.own_mfn(dom), label="frame")
        slots = data.draw(st.lists(st.integers(0, 7), min_size=1, max_size=3), label="slots")
        reqs = [
            abi.MmuUpdate(mfn << 12 | slot << 3, data.draw(self.draws.entry(dom), label="entry"))
            for slot in slots
        ]
        self._batch(Step("mmu_update", dom, (tuple(reqs), abi.DOMID_SELF)), reqs)
        level = data.draw(st.integers(1, 4), label="level")
        pin = [abi.MmuExtOp(abi.MMUEXT_PIN_L1_TABLE + level - 1, mfn)]
        before = self.xen.frame(mfn)
        self._batch(Step("mmuext_op", dom, (tuple(pin), abi.DOMID_SELF)), pin)
        after = self.xen.frame(mfn)
        if after.pinned == before.pinned and not before.type_count:
            # refused: nothing held, and the type is NONE or the level tried
            assert after.type_count == 0, after
            assert not (after.type.is_pagetable and after.validated), after
            assert after.type in (PageType.NONE, before.type, PageType(level)), after

    @rule(data=st.data(), user=st.booleans())
    def store(self, data: st.DataObject, user: bool) -> None:
        dom = self._dom(data)
        va = data.draw(self.draws.va(dom), label="va")
        off = data.draw(st.integers(0, 511), label="word") * 8
        value = data.draw(st.one_of(self.draws.entry(dom), garbage_st()), label="value")
        self._run(Step("store", dom, ((va & ~0xFFF) | off, value, user)))

    @rule(data=st.data(), user=st.booleans())
    def load(self, data: st.DataObject, user: bool) -> None:
        dom = self._dom(data)
        va = data.draw(self.draws.va(dom), label="va") & ~7
        result = self._run(Step("load", dom, (va, user)))
        assert isinstance(result, int | PageFault)

    @precondition(lambda self: len(self.steps) % 8 == 5)  # now and then, not every step
    @rule(data=st.data())
    def hypercall_from_user_mode(self, data: st.DataObject) -> None:
        result = self._run(Step("user_hypercall", self._dom(data), ()))
        assert isinstance(result, HypercallError), f"a hypercall from user mode gave {result!r}"
        assert result.rule == "hypercall.user-mode"

    @invariant()
    def audit_is_clean(self) -> None:
        violations = self.xen.audit()
        assert not violations, "\n".join(map(str, violations))

    @invariant()
    def validated_entries_carry_xens_adjustments(self) -> None:
        """pv/mm.h ``adjust_guest_l*e`` on every installing path: no present guest
        entry of a validated table lacks the bits Xen adds."""
        bad = unadjusted_entries(self.xen)
        assert not bad, f"entries without Xen's adjustments: {bad[:5]}"


TestHypercallMachine = HypercallMachine.TestCase
TestHypercallMachine.settings = SETTINGS


# -- single refused requests change nothing ----------------------------------------------


@SETTINGS
@given(data=st.data())
def test_refused_single_mmu_update_changes_nothing(data: st.DataObject) -> None:
    xen = build_machine()
    dom = data.draw(st.integers(0, len(xen.domains) - 1), label="dom")
    req = data.draw(_DRAWS.request(dom), label="req")
    fd = data.draw(_DRAWS.foreigndom(dom), label="foreigndom")
    before = machine_snapshot(xen)
    try:
        xen.domains[dom].vcpus[0].mmu_update([req], fd)
    except HypercallError as err:
        check_refusal(err, 1)
        diff = snapshot_vs(before, machine_snapshot(xen))
        assert not diff, f"a refused mmu_update changed the machine:\n{diff}"
    else:
        assume(False)  # only refusals are of interest here
    assert not xen.audit()


@SETTINGS
@given(data=st.data())
def test_refused_single_mmuext_op_changes_nothing(data: st.DataObject) -> None:
    xen = build_machine()
    dom = data.draw(st.integers(0, len(xen.domains) - 1), label="dom")
    op = data.draw(_DRAWS.mmuext(dom), label="op")
    fd = data.draw(st.one_of(st.just(abi.DOMID_SELF), _DRAWS.foreigndom(dom)), label="fd")
    before = machine_snapshot(xen)
    try:
        xen.domains[dom].vcpus[0].mmuext_op([op], fd)
    except HypercallError as err:
        check_refusal(err, 1)
        diff = snapshot_vs(before, machine_snapshot(xen))
        assert not diff, f"a refused mmuext_op changed the machine:\n{diff}"
    else:
        assume(False)
    assert not xen.audit()
