"""Hidden tests of 07_grow_live_tree: the Mini-OS strategy grows every tree -- a fork's
child too -- table by table in its live tree; a child exits and the next one grows in
the frames it freed."""

from __future__ import annotations

import random

from hypervisor.mm.frames import PageType
from lessons.lab.testing import Guest, Machine, Plan, check, expect, workload

PAGE = 4096
TYPE = {3: PageType.L3, 2: PageType.L2, 1: PageType.L1}


def scattered(rng: random.Random) -> Plan:
    vas = sorted(
        {
            (rng.randrange(1, 255) << 39) | (rng.randrange(512) << 30) | (rng.randrange(512) << 21)
            for _ in range(rng.randint(2, 4))
        }
    )
    return {
        "vas": vas,
        "data": [rng.randbytes(8).hex() for _ in vas],
        "child_page": rng.randrange(len(vas)),
        "child_data": rng.randbytes(8).hex(),
    }


@workload(plan=scattered)
def minios_forks(g: Guest, plan: Plan) -> None:
    """Mini-OS strategy: the parent maps scattered pages; a child is forked and exits; a
    second child (grown in recycled frames) writes one page."""
    k = g.boot(strategy="minios")
    parent = k.spawn()
    for va, hexdata in zip(plan["vas"], plan["data"], strict=True):
        parent.mmap(va, PAGE, "rw")
        parent.write(va, bytes.fromhex(hexdata))
    first = k.fork(parent)
    g.remember(first)
    k.exit(first)
    child = k.fork(parent)
    child.write(plan["vas"][plan["child_page"]], bytes.fromhex(plan["child_data"]))


def finished(m: Machine) -> None:
    expect(m.completed and {1, 2, 3} <= set(m.processes), "the workload did not finish")


@check(minios_forks, points=10, name="user: parent and child read their own bytes")
def reads_back(m: Machine, plan: Plan) -> None:
    finished(m)
    for pid in (1, 3):
        for i, (va, hexdata) in enumerate(zip(plan["vas"], plan["data"], strict=True)):
            want = bytes.fromhex(hexdata)
            if pid == 3 and i == plan["child_page"]:
                want = bytes.fromhex(plan["child_data"])
            got = m.read_user(pid, va, 8)
            expect(got == want, f"process {pid} reads {got!r} at {va:#x}", "lesson.not-linked")


@check(minios_forks, points=10, name="tables: both live trees typed, every L1 pinned")
def typed_and_pinned(m: Machine, plan: Plan) -> None:
    finished(m)
    for pid in (1, 3):
        found = m.tables_below(m.process(pid).user_l4)
        expect(len(found) >= 3, f"process {pid}'s user L4 reaches {len(found)} tables")
        for level, mfn in found:
            f = m.frame(mfn)
            expect(f.type == TYPE[level], f"{mfn:#x} is linked as an L{level}, typed {f.type}")
            expect(level != 1 or f.pinned, f"the L1 {mfn:#x} is not pinned", "lesson.not-pinned")


@check(minios_forks, points=5, name="audit: clean, the exited child's tables all untyped")
def audit_clean(m: Machine, plan: Plan) -> None:
    finished(m)
    bad = m.audit()
    expect(not bad, f"the audit found: {bad[:3]}")
    live = set()
    for pid in (1, 3):
        live |= {mfn for _, mfn in m.tables_below(m.process(pid).user_l4)}
    for f in m.frames():
        expect(
            not (f.pinned and f.type == PageType.L1) or f.mfn in live,
            f"{f.mfn:#x} is still a pinned L1, outside every live tree",
        )
