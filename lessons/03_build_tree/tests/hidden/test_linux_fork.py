"""Hidden tests of 03_build_tree: Linux's fork (leaves written by mmu_update into the
unpinned child tree), a bigger tree, three generations."""

from __future__ import annotations

import random

from hypervisor.mm.frames import PageType
from lessons.lab.testing import Guest, Machine, Plan, check, expect, workload

PAGE = 4096


def plan_pages(rng: random.Random) -> Plan:
    runs = [
        ((rng.randrange(1, 255) << 39) | (rng.randrange(512) << 30), rng.randint(1, 6))
        for _ in range(rng.randint(2, 4))
    ]
    return {"runs": runs, "mark": rng.randrange(256)}


@workload(plan=plan_pages)
def generations(g: Guest, plan: Plan) -> None:
    """Runs of pages in separate L3s; fork a child, the child forks a grandchild (Linux
    fork style); the grandchild writes its mark in every run."""
    k = g.boot(fork_style="linux")
    p = k.spawn()
    for va, n in plan["runs"]:
        p.mmap(va, n * PAGE, "rw", populate=True)
        p.write(va, b"p" * 8)
    c = k.fork(p)
    gc = k.fork(c)
    for va, _n in plan["runs"]:
        gc.write(va, bytes([plan["mark"]]) * 8)


def table_count(m: Machine, l4: int) -> dict[int, int]:
    """How many tables of each level (3, 2, 1) the user half reaches, all typed."""
    counts = {3: 0, 2: 0, 1: 0}
    want = {3: PageType.L3, 2: PageType.L2, 1: PageType.L1}
    for level, mfn in m.tables_below(l4):
        counts[level] += 1
        expect(m.frame(mfn).type == want[level], f"{mfn:#x} is not typed")
    return counts


@check(generations, points=10, name="tree: three generations, each a whole validated tree")
def whole_trees(m: Machine, plan: Plan) -> None:
    expect(m.completed and len(m.processes) == 3, "the workload did not finish")
    runs = len(plan["runs"])
    for pid in (1, 2, 3):
        counts = table_count(m, m.process(pid).user_l4)
        expect(
            counts[3] >= 1 and counts[2] >= runs and counts[1] >= runs,
            f"process {pid}'s tree has {counts} tables for {runs} runs of pages",
        )


@check(generations, points=10, name="user: the grandchild's writes are its own")
def isolation(m: Machine, plan: Plan) -> None:
    expect(m.completed and len(m.processes) == 3, "the workload did not finish")
    for pid, want in ((1, b"p" * 8), (2, b"p" * 8), (3, bytes([plan["mark"]]) * 8)):
        for va, n in plan["runs"]:
            got = m.read_user(pid, va, 8)
            expect(got == want, f"process {pid} reads {got!r} at {va:#x}")
            last = m.read_user(pid, va + (n - 1) * PAGE + 8, 8)
            expect(last is not None, f"process {pid}: page {n - 1} of the run is not mapped")


@check(generations, points=5, name="audit: clean with three trees sharing pages")
def audit_clean(m: Machine, plan: Plan) -> None:
    expect(m.completed and len(m.processes) == 3, "the workload did not finish")
    bad = m.audit()
    expect(not bad, f"the audit found: {bad[:3]}")
