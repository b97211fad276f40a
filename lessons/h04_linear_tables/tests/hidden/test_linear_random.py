"""Hidden tests of h04_linear_tables: a random walk of same-level entries made and removed
among pinned tables of every level, from a secret seed."""

from __future__ import annotations

import random

from hypervisor import abi
from lessons.lab.testing import Comparison, Dom, Host, Plan, battery, check

P, RW, A = abi._PAGE_PRESENT, abi._PAGE_RW, abi._PAGE_ACCESSED
FRAMES = 1024
TABLES = 5
STEPS = 40


def walk_plan(rng: random.Random) -> Plan:
    """Per level, STEPS entries ``(src, dst, slot, rw)`` among TABLES tables; a slot is
    reused now and then (replacing or, with dst -1, removing what it held)."""
    levels = []
    for level in (2, 3, 4):
        slots = rng.sample(range(256), 12)
        steps = []
        for k in range(STEPS):
            src, dst = rng.randrange(TABLES), rng.randrange(-1, TABLES)
            rw = k in (3, 17) or rng.random() < 0.1
            steps.append([src, dst, rng.choice(slots), rw])
        levels.append({"level": level, "steps": steps})
    rng.shuffle(levels)
    return {"levels": levels}


@battery(plan=walk_plan, frames=FRAMES, guests=(Dom(200),))
def random_links(h: Host, plan: Plan) -> None:
    """Entries made, replaced and removed at random among pinned tables of one level."""
    for n, lv in enumerate(plan["levels"]):
        level = lv["level"]
        tables = []
        for k in range(TABLES * n, TABLES * (n + 1)):
            pfn = h.free_pfn(0, k)
            h.update_va_mapping(0, h.va(0, pfn), 0)
            h.pin(0, level, h.mfn(0, pfn))
            tables.append(h.mfn(0, pfn))
        with h.case("random"):
            for src, dst, slot, rw in lv["steps"]:
                val = 0 if dst < 0 else abi.make_pte(tables[dst], P | A | (RW if rw else 0))
                h.set_entry(0, tables[src], slot, val, level=level, touch=tuple(tables))
            h.audit()


@check(random_links, points=20, name="linear: every entry of a random walk as on Xen")
def random_walk(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("random")
