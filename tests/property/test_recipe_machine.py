"""The 2011 Xen recipe, walked on purpose with random deviations.

The random-hypercall machine (``test_hypercall_machine``) rarely gets past the
start-of-day state: a fresh table tree needs a dozen calls in the right order.
This state machine walks the recipe of ``xen.h`` (spec section 6) deliberately:

1. take free frames, zero them (``MMUEXT_CLEAR_PAGE`` or stores through the
   direct map) and fill them while they are still data (stores or plain
   ``mmu_update`` writes): L1 -> data pages with ``_PAGE_USER``, L2 -> L1,
   L3 -> L2, L4 -> L3 plus the kernel's slot 511 (a 32-bit PAE L3 gets a slot-3
   L2 that copies the kernel's);
2. make every table frame read-only in the direct map (``update_va_mapping``);
3. pin the top, load it with ``NEW_BASEPTR`` / ``NEW_USER_BASEPTR``, use it
   from user mode;
4. later: unpin, switch away, make the frames writable again, reuse them.

Each tree draws one deviation (forget a read-only step, map a table frame RW,
a disallowed flag, a recursive entry, no kernel slot, a foreign frame, read-only
before filling, no zeroing, ...), and single-step rules poke the trees at random:
live updates by ``mmu_update`` and trapped writes, pins at the wrong level,
unpins while loaded, dom0's foreign mappings and foreign pins.

After every hypercall, not only every rule: ``xen.audit() == []``; a refusal is
a :class:`HypercallError` whose rule id is in :data:`RULES` with that rule's
errno; a failed access is a :class:`PageFault`; nothing else escapes. Model
checks, computed from the machine's memory rather than its counters:

* a frame mapped RW by a present entry of a live L1 is refused as a table
  (``EINVAL`` on every pin);
* a pinned table frame is refused as an RW mapping (``EBUSY``);
* a tree built from clean frames without deviation pins, loads and works from
  user mode; releasing it gives its frames back as writable data.

``HYPOTHESIS_PROFILE=long`` searches deeper.
"""

from __future__ import annotations

import errno as E  # noqa: N812 -- reads like the C names
import itertools
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import pytest
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from hypothesis_profiles import machine_settings

from hypervisor import Domain, HypercallError, Hypervisor, PageFault, PageType, abi
from hypervisor.hypercalls.update_va_mapping import guest_l1e
from hypervisor.rules import RULES

pytestmark = pytest.mark.property

SETTINGS = machine_settings(default=(50, 40), long=(400, 100))

TOTAL_FRAMES = 2048
DOMAIN_SPECS: tuple[dict[str, Any], ...] = (
    {"nr_pages": 300, "privileged": True},
    {"nr_pages": 300},
    {"nr_pages": 300, "guest_width": 32},
)
POOL = 28
"""Free pfns per domain the recipe works with (the first ones after the tables)."""

P, RW, US, A, D = 0x1, 0x2, 0x4, 0x20, 0x40
PCD, PSE, G = 0x10, 0x80, 0x100
UF = P | RW | US | A
"""Flags of an upper-level entry to a lower table, and of a user data page."""
TABLES = (PageType.L1, PageType.L2, PageType.L3, PageType.L4)
PIN = {
    1: abi.MMUEXT_PIN_L1_TABLE,
    2: abi.MMUEXT_PIN_L2_TABLE,
    3: abi.MMUEXT_PIN_L3_TABLE,
    4: abi.MMUEXT_PIN_L4_TABLE,
}
MFN_MASK = ((1 << 52) - 1) & ~0xFFF
DEVIATIONS = (
    "none",
    "none",
    "none",
    "none",
    "forget-ro",
    "table-rw",
    "bad-flag",
    "recursive",
    "no-kernel",
    "foreign",
    "ro-before-fill",
    "no-zero",
    "wrong-pin-level",
    "no-pin",
)
T = TypeVar("T")


def entry_at(xen: Hypervisor, mfn: int, slot: int) -> int:
    """Entry ``slot`` of frame ``mfn`` as the machine holds it."""
    return int.from_bytes(xen.read_frame(mfn)[slot * 8 : slot * 8 + 8], "little")


def rw_mapped(xen: Hypervisor, mfn: int) -> bool:
    """Whether a present RW entry of a live L1 (validated, type count > 0, any
    domain) maps ``mfn``: computed from memory, not from ``mfn``'s counters."""
    for m, pg in xen.state.frames.items():
        if pg.type is not PageType.L1 or not pg.validated or pg.type_count == 0:
            continue
        raw = xen.read_frame(m)
        for i in range(512):
            e = int.from_bytes(raw[i * 8 : i * 8 + 8], "little")
            if e & (P | RW) == P | RW and (e & MFN_MASK) >> 12 == mfn:
                return True
    return False


def live_l1(xen: Hypervisor, mfn: int) -> bool:
    """Whether ``mfn`` is a validated L1 in use (updates to it are checked)."""
    f = xen.frame(mfn)
    return f.type is PageType.L1 and f.validated and f.type_count > 0


def pinned_table(xen: Hypervisor, mfn: int) -> bool:
    f = xen.frame(mfn)
    return f.pinned and f.type in TABLES and f.type_count > 0


def check_refusal(err: HypercallError) -> None:
    """A refusal is well formed: positive errno, a known rule with that errno."""
    assert err.rule in RULES, f"rule {err.rule!r} is not in hypervisor.rules.RULES: {err}"
    assert err.errno == RULES[err.rule].errno, f"errno {err.errno} for rule {err.rule}: {err}"
    assert err.done >= 0, err


def assert_refused(result: object, errno: int) -> None:
    """``result`` is a refusal with ``errno``."""
    assert isinstance(result, HypercallError), f"not refused: {result!r}"
    assert result.errno == errno, f"errno {result.errno} != {errno}: {result}"


@attrs.define
class Guest:
    """One domain as the recipe sees it: its pool of pfns and what it did with them."""

    dom: Domain
    is32: bool
    p2m: tuple[int, ...]
    virt_base: int
    orig_top: int
    kernel_slots: dict[int, int]
    """Entries a new top needs so the kernel keeps its direct map: L4 slot 511
    (64-bit), or the slot-3 L2's guest entries (32-bit PAE)."""
    pool: list[int]
    dm: dict[int, tuple[int, int]]
    """pfn -> (l1 mfn, slot) of its direct-map entry (bootstrap tables)."""
    dirty: set[int] = attrs.Factory(set)
    """pfns random rules touched: no longer known to be plain, unreferenced data."""
    busy: set[int] = attrs.Factory(set)
    """pfns belonging to a tree the recipe built and has not released."""
    dm_rw: set[int] = attrs.Factory(set)
    """pfns whose direct-map entry the model knows to be present and RW."""

    @property
    def vcpu(self) -> Any:
        return self.dom.vcpus[0]

    def mfn(self, pfn: int) -> int:
        return self.p2m[pfn]

    def va(self, pfn: int) -> int:
        return self.virt_base + pfn * 4096

    def dm_ptr(self, pfn: int) -> int:
        l1, slot = self.dm[pfn]
        return l1 << 12 | slot * 8

    def clean(self) -> list[int]:
        return [p for p in self.pool if p not in self.dirty | self.busy and p in self.dm_rw]


@attrs.define
class Tree:
    """A tree the recipe built: its frames by level, the top, what happened."""

    dom: int
    top: int
    level: int
    frames: dict[int, int]
    """pfn -> level (0 = data page)."""
    pinned: bool = False
    strict: bool = False
    """No deviation, clean frames: every step had to succeed."""


def make_guest(xen: Hypervisor, dom: Domain) -> Guest:
    si = dom.start_info
    first_free = ((si.pt_base - si.virt_base) >> 12) + si.nr_pt_frames
    pool = list(range(first_free, first_free + POOL))
    pv = xen.state.domains[dom.domid].vcpus[0]
    dm = {p: guest_l1e(xen.state, pv, si.virt_base + p * 4096) for p in pool}
    top = dom.vcpus[0].cr3
    is32 = dom.guest_width == 32
    if is32:
        l2 = (entry_at(xen, top, 3) & MFN_MASK) >> 12
        kernel = {s: entry_at(xen, l2, s) for s in range(256) if entry_at(xen, l2, s) & P}
    else:
        kernel = {511: entry_at(xen, top, 511)}
    return Guest(dom, is32, dom.initial_p2m, si.virt_base, top, kernel, pool, dm, dm_rw=set(pool))


class RecipeMachine(RuleBasedStateMachine):
    """Build, use, break and release table trees the way a PV kernel does."""

    def __init__(self) -> None:
        super().__init__()
        self.xen = Hypervisor(total_frames=TOTAL_FRAMES)
        for spec in DOMAIN_SPECS:
            self.xen.create_domain(**spec)
        self.guests = [make_guest(self.xen, d) for d in self.xen.domains]
        self.trees: list[Tree] = []
        self.audited_start = False

    # -- doing things ------------------------------------------------------------------

    def call(self, what: str, fn: Callable[[], T]) -> T | HypercallError | PageFault:
        """Run one hypercall or access; check a refusal; audit. Returns the result
        or the HypercallError / PageFault it raised."""
        try:
            result: T | HypercallError | PageFault = fn()
        except HypercallError as err:
            check_refusal(err)
            event(f"{what} refused: {err.rule}")
            result = err
        except PageFault as fault:
            event(f"{what}: page fault")
            result = fault
        else:
            event(f"{what}: ok")
        violations = self.xen.audit()
        assert not violations, f"after {what}:\n" + "\n".join(map(str, violations))
        return result

    def mmu(self, g: Guest, reqs: list[tuple[int, int]], fd: int = abi.DOMID_SELF) -> Any:
        return self.call("mmu_update", lambda: g.vcpu.mmu_update(reqs, fd))

    def ext(self, g: Guest, cmd: int, arg1: int, fd: int = abi.DOMID_SELF) -> Any:
        return self.call(f"mmuext {cmd}", lambda: g.vcpu.mmuext_op([abi.MmuExtOp(cmd, arg1)], fd))

    def poke(self, g: Guest, pfn: int, slot: int, val: int, how: str) -> Any:
        """Write entry ``slot`` of pfn's frame: a kernel store through the direct
        map (plain, trapped or faulting) or a ``mmu_update`` (plain or checked)."""
        if how == "store":
            result = self.call("store", lambda: g.vcpu.store(g.va(pfn) + slot * 8, val))
            if not isinstance(result, PageFault):
                return result
        return self.mmu(g, [(g.mfn(pfn) << 12 | slot * 8, val)])

    def set_dm(self, g: Guest, pfn: int, val: int, via_uvm: bool) -> Any:
        """Change pfn's direct-map entry; track whether it is known RW."""
        if via_uvm:
            flags = abi.UVMF_INVLPG
            result = self.call("uvm", lambda: g.vcpu.update_va_mapping(g.va(pfn), val, flags))
            if isinstance(result, HypercallError) and result.rule.startswith("uvm."):
                result = self.mmu(g, [(g.dm_ptr(pfn), val)])  # the base lacks the direct map
        else:
            result = self.mmu(g, [(g.dm_ptr(pfn), val)])
        if not isinstance(result, HypercallError):
            if val & (P | RW) == P | RW and (val & MFN_MASK) >> 12 == g.mfn(pfn):
                g.dm_rw.add(pfn)
            else:
                g.dm_rw.discard(pfn)
        return result

    def pin(self, g: Guest, pfn: int | None, level: int, fd: int = abi.DOMID_SELF) -> Any:
        """Pin a frame (``pfn`` of g, or the mfn in ``level``'s caller) with the
        model check: a frame mapped RW by a live L1 is refused with EINVAL."""
        return self.pin_mfn(g, g.mfn(pfn) if pfn is not None else g.orig_top, level, g, fd)

    def pin_mfn(self, caller: Guest, mfn: int, level: int, owner: Guest, fd: int) -> Any:
        mapped = self.fd_ok(caller, fd) and rw_mapped(self.xen, mfn)
        result = self.ext(caller, PIN[level], mfn, fd)
        if mapped and not (owner.is32 and level == 4):
            assert isinstance(result, HypercallError), (
                f"pinned mfn {mfn:#x}, mapped RW, as L{level}"
            )
            assert result.errno == E.EINVAL, f"pin of RW-mapped mfn {mfn:#x}: {result}"
        if not isinstance(result, HypercallError) and not (owner.is32 and level == 4):
            f = self.xen.frame(mfn)
            assert f.pinned, f
            assert f.validated, f
            assert f.type is TABLES[level - 1], f
        return result

    def fd_ok(self, caller: Guest, fd: int) -> bool:
        """Whether ``fd`` passes the foreigndom checks for ``caller`` (self, or
        another existing domain named by the control domain)."""
        if fd == abi.DOMID_SELF:
            return True
        others = [x.dom.domid for x in self.guests if x is not caller]
        return caller.dom.privileged and fd in others

    def map_rw_check(self, g: Guest, pfn: int, target: int, fd: int = abi.DOMID_SELF) -> Any:
        """Map ``target`` (an mfn) RW at pfn's direct-map slot by mmu_update, with
        the model check: a pinned table is refused with EBUSY."""
        l1 = g.dm[pfn][0]
        expect_busy = self.fd_ok(g, fd) and live_l1(self.xen, l1) and pinned_table(self.xen, target)
        result = self.mmu(g, [(g.dm_ptr(pfn), target << 12 | P | RW | A)], fd)
        if expect_busy:
            assert isinstance(result, HypercallError), f"mapped pinned table {target:#x} RW"
            assert result.errno == E.EBUSY, f"RW map of pinned table {target:#x}: {result}"
        if not isinstance(result, HypercallError):
            if target == g.mfn(pfn):
                g.dm_rw.add(pfn)
            else:
                g.dm_rw.discard(pfn)
        return result

    # -- draws -------------------------------------------------------------------------

    def _guest(self, data: st.DataObject) -> tuple[int, Guest]:
        i = data.draw(st.integers(0, len(self.guests) - 1), label="dom")
        return i, self.guests[i]

    def _pfn(self, data: st.DataObject, g: Guest) -> int:
        """A pool pfn, mostly one of a tree's frames when there are trees."""
        mine = [p for t in self.trees if self.guests[t.dom] is g for p in t.frames]
        choices = st.sampled_from(g.pool)
        if mine:
            choices = st.one_of(st.sampled_from(mine), st.sampled_from(mine), choices)
        return data.draw(choices, label="pfn")

    def _max_level(self, g: Guest) -> int:
        return 3 if g.is32 else 4

    # -- the recipe --------------------------------------------------------------------

    @rule(data=st.data())
    def build_tree(self, data: st.DataObject) -> None:
        i, g = self._guest(data)
        top = data.draw(st.integers(1, self._max_level(g)), label="top level")
        dev = data.draw(st.sampled_from(DEVIATIONS), label="deviation")
        shape = self._shape(g, top)
        need = len(shape) + 2
        clean = g.clean()
        if len(clean) >= need and data.draw(st.integers(0, 4), label="reuse dirty") > 0:
            pfns = data.draw(st.permutations(clean), label="frames")[:need]
        else:
            free = [p for p in g.pool if p not in g.busy]
            if len(free) < need:
                event("build_tree: pool exhausted")
                return
            pfns = data.draw(st.permutations(free), label="frames")[:need]
        strict = dev == "none" and all(p in clean for p in pfns) and self._kernel_ok(g, top)
        names = [*shape, "data0", "data1"]
        f = dict(zip(names, pfns, strict=True))
        tree = Tree(i, f["top"], top, dict(zip(pfns, [*shape.values(), 0, 0], strict=True)))
        tree.strict = strict
        g.busy |= set(pfns)
        if not strict:
            g.dirty |= set(pfns)
        self.trees.append(tree)
        event(f"build_tree L{top} {'32' if g.is32 else '64'}: {dev}")
        how = data.draw(st.sampled_from(["store", "mmu"]), label="fill via")
        tables = [f[n] for n in shape]
        if dev == "ro-before-fill":
            for p in tables:
                self.set_dm(g, p, g.mfn(p) << 12 | P | A, via_uvm=True)
        for p in tables:
            self._zero(
                g, p, "skip" if dev == "no-zero" else data.draw(st.sampled_from(["ext", "write"]))
            )
        for name, slot, val in self._entries(g, f, shape, dev, data):
            result = self.poke(g, f[name], slot, val, how)
            if strict:
                assert not isinstance(result, HypercallError | PageFault), (
                    f"strict tree: writing {name}[{slot}] = {val:#x}: {result}"
                )
        forget = (
            data.draw(st.sampled_from(tables), label="forgotten") if dev == "forget-ro" else None
        )
        for p in tables:
            if p != forget:
                result = self.set_dm(g, p, g.mfn(p) << 12 | P | A, via_uvm=data.draw(st.booleans()))
                assert not (strict and isinstance(result, HypercallError)), result
        if dev == "no-pin":
            return
        level = top
        if dev == "wrong-pin-level":
            level = data.draw(st.integers(1, 4), label="pin level")
        result = self.pin(g, f["top"], level)
        if strict:
            assert not isinstance(result, HypercallError), f"strict tree: pin L{top}: {result}"
        tree.pinned = not isinstance(result, HypercallError) and not (g.is32 and level == 4)
        if top == self._max_level(g):
            self._use_tree(data, g, tree)

    def _kernel_ok(self, g: Guest, top: int) -> bool:
        """Whether the kernel mappings a new top copies are still live tables."""
        if top != self._max_level(g):
            return True
        want = PageType.L1 if g.is32 else PageType.L3
        for e in g.kernel_slots.values():
            fr = self.xen.frame((e & MFN_MASK) >> 12)
            if fr.type is not want or fr.type_count == 0:
                return False
        return True

    def _shape(self, g: Guest, top: int) -> dict[str, int]:
        """The table frames of a tree with ``top`` on top: name -> level."""
        if g.is32 and top == 3:
            return {"top": 3, "l2": 2, "l2k": 2, "l1": 1}
        names = {4: ["top", "l3", "l2", "l1"], 3: ["top", "l2", "l1"], 2: ["top", "l1"]}
        return dict(zip(names.get(top, ["top"]), range(top, 0, -1), strict=True))

    def _zero(self, g: Guest, pfn: int, how: str) -> None:
        if how == "ext":
            self.ext(g, abi.MMUEXT_CLEAR_PAGE, g.mfn(pfn))
        elif how == "write":
            self.call("write zeros", lambda: g.vcpu.write(g.va(pfn), bytes(4096)))

    def _entries(
        self, g: Guest, f: dict[str, int], shape: dict[str, int], dev: str, data: st.DataObject
    ) -> list[tuple[str, int, int]]:
        """The entries of the recipe, deviation included: (table name, slot, value)."""
        m = g.mfn
        l1 = f["l1"] if "l1" in f else f["top"]
        out = [(next(n for n in shape if shape[n] == 1), 0, m(f["data0"]) << 12 | UF)]
        out.append((out[0][0], 1, m(f["data1"]) << 12 | UF | D))
        chain = [n for n in shape if n != "l2k"]
        for parent, child in itertools.pairwise(chain):
            flags = P if g.is32 and shape[parent] == 3 else UF
            out.append((parent, 0, m(f[child]) << 12 | flags))
        if g.is32 and "l2k" in f:
            out.append(("top", 3, m(f["l2k"]) << 12 | P))
            out += [("l2k", s, e) for s, e in g.kernel_slots.items()]
        elif shape.get("top") == 4 and dev != "no-kernel":
            out += [("top", s, e) for s, e in g.kernel_slots.items()]
        l1_name = out[0][0]
        if dev == "table-rw":
            victim = data.draw(st.sampled_from(list(shape)), label="rw table")
            out.append((l1_name, 2, m(f[victim]) << 12 | UF))
        elif dev == "bad-flag":
            name = data.draw(st.sampled_from(list(shape)), label="bad table")
            bad = data.draw(st.sampled_from([PCD, PSE, G, 1 << 51]), label="bad flag")
            out.append((name, 5, m(f["data0"] if shape[name] == 1 else l1) << 12 | UF | bad))
        elif dev == "recursive" and not (g.is32 and shape["top"] == 3):
            name = data.draw(st.sampled_from([n for n in shape if shape[n] >= 2] or ["top"]))
            rwbit = data.draw(st.sampled_from([0, 0, RW]), label="recursive rw")
            out.append((name, 7, m(f[name]) << 12 | P | US | A | rwbit))
        elif dev == "foreign":
            other = self.guests[(self.guests.index(g) + 1) % len(self.guests)]
            other.dirty.add(other.pool[-1])
            out.append((l1_name, 3, other.mfn(other.pool[-1]) << 12 | P | US | A))
        return out

    def _use_tree(self, data: st.DataObject, g: Guest, tree: Tree) -> None:
        """Load a top-level tree and access its two data pages from user mode."""
        mfn = g.mfn(tree.top)
        if g.is32:
            how = "kernel"
        else:
            how = data.draw(st.sampled_from(["kernel", "user", "user", "none"]), label="load as")
        if how == "none":
            return
        cmd = abi.MMUEXT_NEW_BASEPTR if how == "kernel" else abi.MMUEXT_NEW_USER_BASEPTR
        result = self.ext(g, cmd, mfn)
        if tree.strict:
            assert not isinstance(result, HypercallError), f"strict tree: load {how}: {result}"
        if isinstance(result, HypercallError):
            return
        assert (g.vcpu.cr3 if how == "kernel" else g.vcpu.user_base) == mfn
        value = data.draw(st.integers(0, (1 << 64) - 1), label="value")
        user = g.is32 or how == "user"
        for va in (0, 0x1000):
            stored = self.call("tree store", lambda va=va: self._access(g, va, value, user))
            loaded = self.call("tree load", lambda va=va: self._access(g, va, None, user))
            if tree.strict:
                assert stored is None, stored
                assert loaded == value, (loaded, value)

    def _access(self, g: Guest, va: int, value: int | None, user: bool) -> int | None:
        """Load (``value`` None) or store 8 bytes at ``va``, in user or kernel mode."""
        if user:
            with g.vcpu.user_mode():
                return self._access(g, va, value, False)
        if value is None:
            return int(g.vcpu.load(va))
        g.vcpu.store(va, value)
        return None

    @precondition(lambda self: bool(self.trees))
    @rule(data=st.data())
    def release_tree(self, data: st.DataObject) -> None:
        """Switch away, unpin, make the frames writable again, reuse them as data
        (each step skipped now and then: the frames then stay dirty)."""
        tree = data.draw(st.sampled_from(self.trees), label="tree")
        g = self.guests[tree.dom]
        skip = data.draw(st.sampled_from(["none", "none", "switch", "unpin", "rw"]), label="skip")
        mfn = g.mfn(tree.top)
        strict = tree.strict and not set(tree.frames) & g.dirty  # untouched since built
        ok = True
        if skip != "switch":
            if g.vcpu.cr3 == mfn:
                ok &= not isinstance(
                    self.ext(g, abi.MMUEXT_NEW_BASEPTR, g.orig_top), HypercallError
                )
            if g.vcpu.user_base == mfn:
                r = self.ext(g, abi.MMUEXT_NEW_USER_BASEPTR, 0)
                ok &= not isinstance(r, HypercallError)
        if skip != "unpin" and self.xen.frame(mfn).pinned:
            ok &= not isinstance(self.ext(g, abi.MMUEXT_UNPIN_TABLE, mfn), HypercallError)
        if skip != "rw":
            for p in tree.frames:
                r = self.map_rw_check(g, p, g.mfn(p))
                ok &= not isinstance(r, HypercallError)
                if strict and skip == "none":
                    assert not isinstance(r, HypercallError), f"strict release: RW {p}: {r}"
        self.trees.remove(tree)
        g.busy -= set(tree.frames)
        if not (ok and skip == "none" and strict):
            g.dirty |= set(tree.frames)
        event(f"release_tree: skip {skip}, ok {ok}")

    # -- random pokes at the trees ---------------------------------------------------------

    @rule(data=st.data())
    def live_update(self, data: st.DataObject) -> None:
        """Change an entry of a pool frame (often a live table): checked update,
        trapped write, plain write or #PF."""
        _, g = self._guest(data)
        pfn = self._pfn(data, g)
        slot = data.draw(st.sampled_from([0, 1, 2, 3, 5, 7, 256, 300, 511]), label="slot")
        target = data.draw(st.sampled_from([*g.pool, *g.pool, -1, -2]), label="target")
        if target == -1:
            mfn = g.orig_top
        elif target == -2:
            other = self.guests[(self.guests.index(g) + 1) % len(self.guests)]
            other_pfn = data.draw(st.sampled_from(other.pool), label="foreign pfn")
            other.dirty.add(other_pfn)
            mfn = other.mfn(other_pfn)
        else:
            mfn = g.mfn(target)
            g.dirty.add(target)
        flags = data.draw(st.sampled_from([0, P, P | A, UF, UF | D, P | US, UF | PSE, UF | PCD]))
        how = data.draw(st.sampled_from(["store", "mmu", "mmu-ad"]), label="how")
        g.dirty.add(pfn)
        if how == "mmu-ad":
            ptr = g.mfn(pfn) << 12 | slot * 8 | abi.MMU_PT_UPDATE_PRESERVE_AD
            self.mmu(g, [(ptr, mfn << 12 | flags)])
        else:
            self.poke(g, pfn, slot, mfn << 12 | flags, how)

    @rule(data=st.data())
    def pin_random(self, data: st.DataObject) -> None:
        _, g = self._guest(data)
        pfn = data.draw(st.one_of(st.just(None), st.just(self._pfn(data, g))), label="pin pfn")
        if pfn is not None:
            g.dirty.add(pfn)
        self.pin(g, pfn, data.draw(st.integers(1, 4), label="level"))

    @rule(data=st.data())
    def unpin_random(self, data: st.DataObject) -> None:
        _, g = self._guest(data)
        pfn = data.draw(st.one_of(st.just(None), st.just(self._pfn(data, g))), label="unpin pfn")
        if pfn is not None:
            g.dirty.add(pfn)
        self.ext(g, abi.MMUEXT_UNPIN_TABLE, g.orig_top if pfn is None else g.mfn(pfn))

    @rule(data=st.data(), user=st.booleans())
    def load_base(self, data: st.DataObject, user: bool) -> None:
        """NEW_BASEPTR / NEW_USER_BASEPTR with any pool frame, the original top
        or (user base) 0."""
        _, g = self._guest(data)
        pfn = data.draw(st.one_of(st.just(None), st.just(self._pfn(data, g))), label="base")
        mfn = g.orig_top if pfn is None else g.mfn(pfn)
        if pfn is not None:
            g.dirty.add(pfn)
        if user and data.draw(st.booleans(), label="clear user base"):
            mfn = 0
        cmd = abi.MMUEXT_NEW_USER_BASEPTR if user else abi.MMUEXT_NEW_BASEPTR
        result = self.ext(g, cmd, mfn)
        if user and g.is32:
            assert_refused(result, E.EINVAL)
        elif not isinstance(result, HypercallError):
            assert (g.vcpu.user_base if user else g.vcpu.cr3) == mfn

    @rule(data=st.data())
    def set_direct_map(self, data: st.DataObject) -> None:
        """Make a pool frame read-only, writable or unmapped in the direct map."""
        _, g = self._guest(data)
        pfn = self._pfn(data, g)
        kind = data.draw(st.sampled_from(["ro", "rw", "rw-checked", "none"]), label="dm")
        g.dirty.add(pfn)
        if kind == "rw-checked":
            self.map_rw_check(g, pfn, g.mfn(pfn))
            return
        val = {"ro": g.mfn(pfn) << 12 | P | A, "rw": g.mfn(pfn) << 12 | P | RW | A, "none": 0}
        self.set_dm(g, pfn, val[kind], via_uvm=data.draw(st.booleans(), label="via uvm"))

    @rule(data=st.data(), user=st.booleans(), write=st.booleans())
    def access(self, data: st.DataObject, user: bool, write: bool) -> None:
        """A load or store at a user VA of the recipe's trees, or a direct-map VA."""
        _, g = self._guest(data)
        va = data.draw(
            st.one_of(
                st.sampled_from([0, 0x1000, 0x2000, 0x3000, 0x5000, 0x7000, 1 << 30, 1 << 21]),
                st.builds(g.va, st.sampled_from(g.pool)),
            ),
            label="va",
        )
        value = data.draw(st.integers(0, (1 << 64) - 1), label="value") if write else None
        self.call("access", lambda: self._access(g, va, value, user))

    @rule(cmd=st.sampled_from([abi.VMASST_CMD_enable, abi.VMASST_CMD_enable, 1]), data=st.data())
    def writable_pagetables(self, cmd: int, data: st.DataObject) -> None:
        _, g = self._guest(data)
        tp = abi.VMASST_TYPE_writable_pagetables
        result = self.call("vm_assist", lambda: g.vcpu.vm_assist(cmd, tp))
        assert result is None, result

    @rule(data=st.data(), rw=st.booleans())
    def foreign_map(self, data: st.DataObject, rw: bool) -> None:
        """dom0 maps a frame of another domain at one of its own direct-map slots
        (FD = that domain; sometimes DOMID_SELF or the wrong one); a domU tries
        the same without privilege."""
        j = data.draw(st.integers(1, len(self.guests) - 1), label="victim")
        victim = self.guests[j]
        pfn = self._pfn(data, victim)
        victim.dirty.add(pfn)
        mfn = victim.mfn(pfn)
        fd = data.draw(st.sampled_from([j, j, j, abi.DOMID_SELF, 3 - j]), label="fd")
        caller = self.guests[data.draw(st.sampled_from([0, 0, 0, 3 - j]), label="caller")]
        slot_pfn = data.draw(st.sampled_from(caller.pool), label="slot pfn")
        caller.dirty.add(slot_pfn)
        if rw:
            self.map_rw_check(caller, slot_pfn, mfn, fd)
        else:
            self.mmu(caller, [(caller.dm_ptr(slot_pfn), mfn << 12 | P | A)], fd)
        caller.dm_rw.discard(slot_pfn)

    @rule(data=st.data(), unpin=st.booleans())
    def foreign_pin(self, data: st.DataObject, unpin: bool) -> None:
        """dom0 pins (or unpins) another domain's frame with FD = that domain, the
        way a domain builder pins a domU's top; a domU trying is refused."""
        j = data.draw(st.integers(1, len(self.guests) - 1), label="victim")
        victim = self.guests[j]
        pfn = self._pfn(data, victim)
        victim.dirty.add(pfn)
        caller = self.guests[data.draw(st.sampled_from([0, 0, 3 - j]), label="caller")]
        if unpin:
            result = self.ext(caller, abi.MMUEXT_UNPIN_TABLE, victim.mfn(pfn), j)
        else:
            level = data.draw(st.integers(1, 4), label="level")
            result = self.pin_mfn(caller, victim.mfn(pfn), level, victim, j)
        if not caller.dom.privileged:
            assert_refused(result, E.EPERM)

    @invariant()
    def started_clean(self) -> None:
        """The audit runs after every call (:meth:`call`), so after every step;
        here only the start-of-day machine is checked."""
        if not self.audited_start:
            violations = self.xen.audit()
            assert not violations, "\n".join(map(str, violations))
            self.audited_start = True


TestRecipeMachine = RecipeMachine.TestCase
TestRecipeMachine.settings = SETTINGS
