"""Hidden tests of 06_trapped_writes: pages in two L1s, two forks in a row, writes after
each; every trapped write went into an L1."""

from __future__ import annotations

import random

from hypervisor.mm.frames import PageType
from lessons.lab.testing import Guest, Machine, Plan, check, expect, workload

PAGE = 4096


def straddle(rng: random.Random) -> Plan:
    before = rng.randint(1, 4)
    return {
        "base": (rng.randrange(1, 1 << 15) << 21) - before * PAGE,
        "n": before + rng.randint(1, 4),
        "marks": [rng.randrange(1, 256) for _ in range(3)],
    }


@workload(plan=straddle)
def fork_twice(g: Guest, plan: Plan) -> None:
    """The parent writes its mark everywhere; two children are forked the Linux way, each
    writes its own mark on all but the last page; after each fork the parent rewrites its
    last page (the child must keep the bytes it had at the fork)."""
    k = g.boot(fork_style="linux")
    p = k.spawn()
    base, n = plan["base"], plan["n"]
    p.mmap(base, n * PAGE, "rw")
    for i in range(n):
        p.write(base + i * PAGE, bytes([plan["marks"][0]]) * 4)
    for fork_no, mark in enumerate(plan["marks"][1:]):
        c = k.fork(p)
        for i in range(n - 1):
            c.write(base + i * PAGE, bytes([mark]) * 4)
        p.write(base + (n - 1) * PAGE, bytes([fork_no]) * 4)


def want(plan: Plan, pid: int, page: int) -> bytes:
    last = page == plan["n"] - 1
    if pid == 1:
        return bytes([1 if last else plan["marks"][0]]) * 4
    if last:
        return bytes([plan["marks"][0] if pid == 2 else 0]) * 4
    return bytes([plan["marks"][pid - 1]]) * 4


@check(fork_twice, points=10, name="isolation: three processes, each its own bytes")
def marks(m: Machine, plan: Plan) -> None:
    expect(m.completed and len(m.processes) == 3, "the workload did not finish")
    for pid in (1, 2, 3):
        for i in range(plan["n"]):
            got = m.read_user(pid, plan["base"] + i * PAGE, 4)
            expect(
                got == want(plan, pid, i),
                f"process {pid} reads {got!r} on page {i}, not {want(plan, pid, i)!r}",
                "lesson.isolation",
            )


@check(fork_twice, points=5, name="trapped: every emulated write went into a live L1")
def into_l1s(m: Machine, plan: Plan) -> None:
    expect(m.completed and len(m.processes) == 3, "the workload did not finish")
    done = [r for r in m.xen.trace if r.kind == "trapped_write" and r.result == 0]
    expect(len(done) >= plan["n"], f"only {len(done)} trapped writes", "lesson.not-trapped")
    for r in done:
        expect(m.frame(r.mfn).type == PageType.L1, f"a trapped write into {r.mfn:#x}")
    bad = m.audit()
    expect(not bad, f"the audit found: {bad[:3]}")
