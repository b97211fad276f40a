"""Hidden tests of h03_validate_l2: L2 tables with random contents drawn from the secret
seed -- L1s fresh or in use, frames still mapped writable, another domain's frames, flags an
L2 may not carry, the table itself, another L2 -- in random slots, pinned and unpinned or
hooked into the tree and out again. Every answer, and the counts and types of every frame
the entries name, must be the grader's."""

from __future__ import annotations

import random

from hypervisor import abi
from lessons.lab.testing import Comparison, Dom, Host, Plan, battery, check

P, RW, A, PCD = abi._PAGE_PRESENT, abi._PAGE_RW, abi._PAGE_ACCESSED, abi._PAGE_PCD
FIRST_FREE = 6
L3_OF_BOOT = 1
KINDS = ("fresh", "in-use", "in-use", "writable", "foreign", "flags", "self", "self-rw", "l2")
TABLES = 8


def random_plan(rng: random.Random) -> Plan:
    """Eight tables of one to six entries each; how each is used."""
    tables = [
        {
            "entries": [
                {"slot": rng.randrange(512), "kind": rng.choice(KINDS), "ro": rng.random() < 0.3}
                for _ in range(rng.randrange(1, 7))
            ],
            "use": rng.choice(("pin", "pin", "hook")),
        }
        for _ in range(TABLES)
    ]
    return {"pfns": rng.sample(range(FIRST_FREE, 128), 4 + TABLES * 7), "tables": tables}


@battery(plan=random_plan, frames=1024, guests=(Dom(128), Dom(64)))
def random_l2s(h: Host, plan: Plan) -> None:
    """Eight random L2s of d0, each pinned and unpinned (or hooked into L3 slot 511 and
    unhooked), the audit after each."""
    pfns = iter(plan["pfns"])

    def take() -> tuple[int, int]:
        pfn = next(pfns)
        return h.mfn(0, pfn), h.va(0, pfn)

    def unmapped() -> int:
        mfn, va = take()
        h.update_va_mapping(0, va, 0)
        return mfn

    in_use = unmapped()
    h.pin(0, 1, in_use)
    other_l2 = unmapped()
    h.pin(0, 2, other_l2)
    writable, _ = take()
    foreign = h.mfn(1, 10)
    boot_l3 = h.mfn(0, h.tables(0)[L3_OF_BOOT])
    for t in plan["tables"]:
        m, va_m = take()
        named = {in_use, other_l2, writable, foreign, m}
        for e in t["entries"]:
            kind = e["kind"]
            target = {
                "fresh": None,
                "in-use": in_use,
                "writable": writable,
                "foreign": foreign,
                "flags": in_use,
                "self": m,
                "self-rw": m,
                "l2": other_l2,
            }[kind]
            if target is None:
                target = unmapped()
            named.add(target)
            flags = (
                P | A | (0 if e["ro"] or kind == "self" else RW) | (PCD if kind == "flags" else 0)
            )
            h.store(0, va_m + 8 * e["slot"], abi.make_pte(target, flags))
        h.update_va_mapping(0, va_m, 0)
        touch = tuple(sorted(named))
        with h.case("random"):
            if t["use"] == "pin":
                h.mmuext(0, abi.MMUEXT_PIN_L2_TABLE, m, touch=touch)
                h.mmuext(0, abi.MMUEXT_UNPIN_TABLE, m, touch=touch)
            else:
                h.set_entry(0, boot_l3, 511, abi.make_pte(m, P | RW | A), level=3, touch=touch)
                h.set_entry(0, boot_l3, 511, 0, level=3, touch=touch)
            h.audit()


@check(random_l2s, points=15, name="random: eight random L2s, validated or refused as by Xen")
def random_tables(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("random")
