"""Public tests of h04_linear_tables: same-level ("linear") entries written by mmu_update
into pinned L2s, L3s and L4s of a 64-bit guest (d0) -- to the table itself and to others,
read-only and writable, single links and would-be chains -- then the two attacks the rule
stops: a writable self-map (XSA-182's result) and stacked linear tables (XSA-240)."""

from __future__ import annotations

import itertools
import random

from hypervisor import abi
from lessons.lab.testing import Comparison, Dom, Fail, Host, Plan, battery, check

P, RW, US, A = abi._PAGE_PRESENT, abi._PAGE_RW, abi._PAGE_USER, abi._PAGE_ACCESSED
FRAMES = 1024
TABLES = 4
"""Fresh tables pinned per level."""


def pte(mfn: int, flags: int) -> int:
    return abi.make_pte(mfn, flags)


def fresh_tables(h: Host, level: int, first: int, n: int) -> list[int]:
    """``n`` free frames of d0 from its ``first``-th free pfn on, unmapped from the direct
    map and pinned as level-``level`` tables (empty tables: always valid)."""
    mfns = []
    for k in range(first, first + n):
        pfn = h.free_pfn(0, k)
        h.update_va_mapping(0, h.va(0, pfn), 0)
        mfn = h.mfn(0, pfn)
        h.pin(0, level, mfn)
        mfns.append(mfn)
    return mfns


def linear_plan(rng: random.Random) -> Plan:
    """The order of the levels, the slots the entries go to, the harmless extra flags."""
    return {
        "levels": rng.sample([2, 3, 4], 3),
        "slots": [rng.sample(range(256), 8) for _ in range(3)],
        "extra": [rng.choice([0, A, US | A]) for _ in range(3)],
    }


@battery(plan=linear_plan, frames=FRAMES, guests=(Dom(200),))
def linear(h: Host, plan: Plan) -> None:
    """At each level, on four fresh pinned tables t1..t4: self-maps (read-only, in a plain
    table and in a linear target; writable), a read-only link t1 -> t2, writable links, the
    two would-be chains (from a target, to a table with linear entries), then t1 -> t2
    removed and the link from t2 made again, now legal."""
    for n, (level, slots) in enumerate(zip(plan["levels"], plan["slots"], strict=True)):
        t1, t2, t3, t4 = fresh_tables(h, level, TABLES * n, TABLES)
        s = iter(slots)
        x = plan["extra"][n]
        with h.case("self"):
            slot = next(s)
            h.set_entry(0, t1, slot, pte(t1, P | x), level=level, touch=(t1,))
            h.set_entry(0, t1, slot, 0, level=level, touch=(t1,))
        with h.case("self-rw"):
            h.set_entry(0, t1, next(s), pte(t1, P | RW | x), level=level, touch=(t1,))
        with h.case("other"):
            link = next(s)
            h.set_entry(0, t1, link, pte(t2, P | x), level=level, touch=(t1,))
        with h.case("self"):
            h.set_entry(0, t2, next(s), pte(t2, P | x), level=level)  # a target maps itself
        with h.case("other-rw"):
            h.set_entry(0, t3, next(s), pte(t4, P | RW | x), level=level, touch=(t3,))
        with h.case("chain"):
            back = next(s)
            h.set_entry(0, t2, back, pte(t3, P | x), level=level, touch=(t2,))
            h.set_entry(0, t3, next(s), pte(t1, P | x), level=level, touch=(t3,))
        with h.case("relink"):
            h.set_entry(0, t1, link, 0, level=level, touch=(t1, t2))
            h.set_entry(0, t2, back, pte(t3, P | x), level=level, touch=(t2,))
            h.set_entry(0, t4, next(s), pte(t2, P | x), level=level, touch=(t4,))
        h.audit()


@check(linear, points=10, name="self: a self-map is read-only and takes nothing")
def self_maps(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("self", "self-rw")


@check(linear, points=10, name="other: a read-only link holds one reference of each kind")
def links(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("other", "other-rw")


@check(linear, points=10, name="single level: no chains, either way (XSA-240)")
def single_level(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("chain", "relink")


# -- the attacks ------------------------------------------------------------------------------


def self_map_plan(rng: random.Random) -> Plan:
    """The L4 slot of the self-map, the window slot, what the victim keeps where."""
    return {
        "slot": rng.randrange(1, 256),
        "window": rng.randrange(256, 512),
        "victim_pfn": rng.randrange(8, 64),
        "secret": rng.randbytes(8).hex(),
    }


def self_map_va(s: int, va: int) -> int:
    """The address of the L1 entry that maps ``va``, through a self-map in L4 slot ``s``."""
    i4, i3, i2, i1 = ((va >> shift) & 511 for shift in (39, 30, 21, 12))
    out = s << 39 | i4 << 30 | i3 << 21 | i2 << 12 | 8 * i1
    return out | 0xFFFF << 48 if s >= 256 else out


@battery(plan=self_map_plan, frames=FRAMES, guests=(Dom(64), Dom(64)))
def writable_self_map(h: Host, plan: Plan) -> None:
    """XSA-182's result, written as the guest d0 would: make an L4 slot a WRITABLE map of
    the L4 itself, store through it an L1 entry that maps d1's frame, and read d1's
    secret."""
    victim = plan["victim_pfn"]
    h.store(1, h.va(1, victim), int(plan["secret"], 16))
    l4 = h.mfn(0, h.tables(0)[0])
    window = h.va(0, plan["window"])  # an empty slot of d0's boot L1
    with h.case("exploit"):
        h.set_entry(0, l4, plan["slot"], pte(l4, P | RW | A), level=4, touch=(l4,))
        h.store(0, self_map_va(plan["slot"], window), pte(h.mfn(1, victim), P | A))
        h.load(0, window, 8)


@check(writable_self_map, points=10, name="exploit: no writable self-map to read d1's secret")
def self_map_refused(c: Comparison, plan: Plan) -> None:
    stolen = [d for d in c.diverging("exploit") if d.kind == "load" and d.yours]
    secret = int(plan["secret"], 16).to_bytes(8, "little").hex()
    if stolen and stolen[0].yours is not None and stolen[0].yours.get("value") == secret:
        first = c.diverging("exploit")[0]
        raise Fail(
            f"the exploit worked: d0 read d1's secret {secret} through an L1 entry it wrote "
            f"with a plain store. It could, because {first.message(c.who)}",
            first.rule,
        )
    c.expect_agrees("exploit")


def stack_plan(rng: random.Random) -> Plan:
    """How many L2s the guest stacks, and which slot holds each link."""
    return {"layers": rng.randrange(6, 12), "slot": rng.randrange(512)}


@battery(plan=stack_plan, frames=FRAMES, guests=(Dom(64),))
def stacked(h: Host, plan: Plan) -> None:
    """XSA-240, written as the guest would: stack L2s, each with a read-only linear entry
    to the one before, unpin all but the top one, then unpin the top one -- whose teardown
    recurses through every layer."""
    l2s = fresh_tables(h, 2, 0, plan["layers"])
    with h.case("stack"):
        for lower, upper in itertools.pairwise(l2s):
            h.set_entry(0, upper, plan["slot"], pte(lower, P), level=2, touch=(upper,))
        for mfn in l2s[:-1]:
            h.unpin(0, mfn)
        h.mmuext(0, abi.MMUEXT_UNPIN_TABLE, l2s[-1], touch=tuple(l2s))
        h.audit()


@check(stacked, points=10, name="exploit: no stack of linear tables to tear down (XSA-240)")
def stack_refused(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("stack")
