"""Public tests of h02_page_types: one guest (d0) moves its frames between types -- writable
memory, L1, L2 -- by mapping them, pinning them and hooking them into its tree; a second
guest (d1) keeps a secret. Then the two attacks a wrong type rule opens."""

from __future__ import annotations

import random

from hypervisor import abi
from lessons.lab.testing import Comparison, Dom, Fail, Host, Plan, battery, check

P, RW, US, A = abi._PAGE_PRESENT, abi._PAGE_RW, abi._PAGE_USER, abi._PAGE_ACCESSED
DOMS = (Dom(64), Dom(64))
FRAMES = 1024
FIRST_FREE = 6
"""The first pfn the domain builder leaves free in a 64-page domain."""
L3_OF_BOOT, L2_OF_BOOT = 1, 2
"""Indexes of the boot L3 and L2 in ``h.tables(i)`` of a 64-bit domain (L4, L3, L2, L1)."""
FREE_L3_SLOT = 511
"""The boot tree maps the kernel at 0xffffffff80000000 (L3 slot 510): slot 511 is empty."""


def pte(mfn: int, flags: int) -> int:
    return abi.make_pte(mfn, flags)


def types_plan(rng: random.Random) -> Plan:
    """Which free frames play which part, and which empty slots of the boot L1 map them."""
    return {
        "pfns": rng.sample(range(FIRST_FREE, 64), 10),
        "slots": rng.sample(range(64, 512), 8),
        "foreign": rng.randrange(FIRST_FREE, 64),
    }


@battery(plan=types_plan, frames=FRAMES, guests=DOMS)
def types(h: Host, plan: Plan) -> None:
    """d0 maps a frame writable more than once; turns a frame from writable memory into a
    pinned L1 and back; builds an L1 with entries, pins it under an L2 and unpins the L2
    (the whole tree goes); asks for types a frame cannot take while it holds another; and
    pins tables that fail validation."""
    f, g, x, y, z, m, bad, bad2, w, spare = (h.mfn(0, p) for p in plan["pfns"])
    va = {h.mfn(0, p): h.va(0, p) for p in plan["pfns"]}
    l1, l3 = h.l1(0), h.mfn(0, h.tables(0)[L3_OF_BOOT])
    slots = iter(plan["slots"])
    with h.case("writable"):
        s1, s2 = next(slots), next(slots)
        h.set_entry(0, l1, s1, pte(g, P | RW | A))  # a second writable mapping
        h.set_entry(0, l1, s2, pte(g, P | RW | A))  # a third
        h.set_entry(0, l1, s1, 0, touch=(g,))
        h.set_entry(0, l1, s2, 0, touch=(g,))
        h.update_va_mapping(0, va[g], 0)  # the last one: writable, count 0
        h.update_va_mapping(0, va[g], pte(g, P | RW | A))
        h.audit()
    with h.case("type-change"):
        h.update_va_mapping(0, va[f], 0)
        h.pin(0, 1, f)  # writable -> L1 at type count 0
        h.unpin(0, f)
        h.pin(0, 2, f)  # L1 -> L2
        h.unpin(0, f)
        h.update_va_mapping(0, va[f], pte(f, P | RW | A))  # and back to writable memory
        h.audit()
    with h.case("devalidate"):
        # x: an L1 mapping y writable and z read-only; m: an L2 whose slot 1 names x.
        h.store(0, va[x] + 8 * 3, pte(y, P | RW | A))
        h.store(0, va[x] + 8 * 9, pte(z, P | A))
        h.store(0, va[m] + 8 * 1, pte(x, P | RW | A))
        h.update_va_mapping(0, va[x], 0)
        h.update_va_mapping(0, va[m], 0)
        h.update_va_mapping(0, va[y], 0)  # y: now mapped writable by x only
        h.pin(0, 1, x)
        h.mmuext(0, abi.MMUEXT_UNPIN_TABLE, x, touch=(y, z))  # last type ref of x
        h.pin(0, 2, m)  # validates x below it
        h.mmuext(0, abi.MMUEXT_UNPIN_TABLE, m, touch=(x, y, z))  # the whole tree goes
        h.pin(0, 1, y)  # y is free of writable mappings again: it can be an L1
        h.unpin(0, y)
        h.update_va_mapping(0, va[x], pte(x, P | RW | A))
        h.update_va_mapping(0, va[m], pte(m, P | RW | A))
        h.audit()
    with h.case("nonzero-count"):
        h.pin(0, 1, w)  # still mapped writable: refused
        h.update_va_mapping(0, va[w], 0)
        h.pin(0, 1, w)
        h.pin(0, 2, w)  # an L1 (pinned) cannot become an L2
        h.update_va_mapping(0, va[w], pte(w, P | RW | A))  # nor writable memory
        h.set_entry(0, l3, FREE_L3_SLOT, pte(w, P | RW | A), level=3)  # an L1 as an L2
        h.unpin(0, w)
        h.update_va_mapping(0, va[w], pte(w, P | RW | A))
        h.audit()
    with h.case("failed-validation"):
        h.store(0, va[bad] + 8 * 7, pte(h.mfn(1, plan["foreign"]), P | A))  # d1's frame
        h.update_va_mapping(0, va[bad], 0)
        h.pin(0, 1, bad)  # refused: the frame is left untyped
        h.store(0, va[bad2] + 8 * 0, pte(spare, P | A))
        h.store(0, va[bad2] + 8 * 5, pte(spare, P | RW | A))  # spare: still writable
        h.update_va_mapping(0, va[spare], 0)
        h.update_va_mapping(0, va[bad2], 0)
        h.mmuext(0, abi.MMUEXT_PIN_L2_TABLE, bad2, touch=(spare,))  # slot 0 is no L1: fails
        h.audit()


@check(types, points=10, name="writable: more writable mappings, one type reference each")
def writable_counts(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("writable")


@check(types, points=10, name="change: a type changes at type count 0, and is validated")
def type_changes(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("type-change")


@check(types, points=10, name="rule: no type change while the type count is not 0")
def no_change_at_nonzero(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("nonzero-count")


@check(types, points=10, name="devalidate: the last type reference releases a table's entries")
def devalidated(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("devalidate")


@check(types, points=5, name="fail: a failed validation holds no type reference")
def failed_validation(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("failed-validation")


def exploit_plan(rng: random.Random) -> Plan:
    """The attacker's frames and windows, the victim's frame and secret."""
    a, b = rng.sample(range(FIRST_FREE, 64), 2)
    return {
        "frame": a,
        "stale_frame": b,
        "victim_pfn": rng.randrange(FIRST_FREE, 64),
        "secret": rng.randbytes(16).hex(),
        "forged": rng.randrange(512),
    }


def plant_secret(h: Host, plan: Plan) -> None:
    """d1 writes its secret into one of its own frames."""
    secret = bytes.fromhex(plan["secret"])
    va = h.va(1, plan["victim_pfn"])
    h.store(1, va, int.from_bytes(secret[:8], "little"))
    h.store(1, va + 8, int.from_bytes(secret[8:], "little"))


@battery(plan=exploit_plan, frames=FRAMES, guests=(Dom(64), Dom(64)))
def exploit(h: Host, plan: Plan) -> None:
    """Two attacks by d0 on d1's secret. First: hook a frame it still maps writable into its
    L2 as an L1, write an entry into it by hand and read through it. Second: keep a stale
    writable translation of a frame (unmapped with no flush), pin the frame as an L1 and
    write an entry into it through the stale translation."""
    plant_secret(h, plan)
    victim = pte(h.mfn(1, plan["victim_pfn"]), P | RW | A)
    l2 = h.mfn(0, h.tables(0)[L2_OF_BOOT])
    forged = 8 * plan["forged"]
    window = h.va(0, 0) + 512 * 4096  # what boot-L2 slot 1 maps
    with h.case("exploit-writable-l1"):
        f, va_f = h.mfn(0, plan["frame"]), h.va(0, plan["frame"])
        h.set_entry(0, l2, 1, pte(f, P | RW | A), level=2)
        h.store(0, va_f + forged, victim)
        h.load(0, window + 4096 * plan["forged"], 16)
    with h.case("exploit-stale-tlb"):
        f, va_f = h.mfn(0, plan["stale_frame"]), h.va(0, plan["stale_frame"])
        h.store(0, va_f + forged, 0)  # the TLB now holds va_f -> f, writable
        h.update_va_mapping(0, va_f, 0, abi.UVMF_NONE)  # unmapped, and no flush asked
        h.pin(0, 1, f)
        h.store(0, va_f + forged, victim)  # through the stale translation
        h.set_entry(0, l2, 2, pte(f, P | RW | A), level=2)
        h.load(0, window + 512 * 4096 + 4096 * plan["forged"], 16)


def expect_no_theft(c: Comparison, plan: Plan, label: str, how: str, rule: str = "") -> None:
    """The attack labelled ``label`` must go as on Xen; if d0 read the secret, say so."""
    stolen = [d for d in c.diverging(label) if d.kind == "load" and d.your_value == plan["secret"]]
    if stolen:
        first = c.diverging(label)[0]
        raise Fail(
            f"the exploit worked: d0 read d1's secret {plan['secret']} {how}. It could, "
            f"because {first.message(c.who)}",
            first.rule or rule,
        )
    c.expect_agrees(label, rule=rule)


@check(exploit, points=10, name="exploit: a frame d0 maps writable never becomes its L1")
def exploit_writable_l1(c: Comparison, plan: Plan) -> None:
    how = "through an entry it stored by hand into a frame it hooked in as an L1"
    expect_no_theft(c, plan, "exploit-writable-l1", how)


@check(exploit, points=10, name="exploit: no stale writable translation outlives a type change")
def exploit_stale_tlb(c: Comparison, plan: Plan) -> None:
    how = "through an entry it stored into its pinned L1 by a stale writable translation"
    expect_no_theft(c, plan, "exploit-stale-tlb", how, rule="lesson.no-flush")
