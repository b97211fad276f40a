"""Hidden tests of 09_cow_fault: three processes share every page; each writes in turn
(two copies, then the last sharer reuses), one exits between the writes."""

from __future__ import annotations

import random

from hypervisor import abi
from lessons.lab.testing import Guest, Machine, Plan, check, expect, workload

PAGE = 4096


def sharers(rng: random.Random) -> Plan:
    n = rng.randint(2, 5)
    return {
        "base": rng.randrange(1, 255) << 39 | rng.randrange(512) << 21,
        "n": n,
        "page": rng.randrange(n),
        "data": rng.randbytes(16).hex(),
        "marks": [rng.randbytes(16).hex() for _ in range(3)],
    }


@workload(plan=sharers)
def three_writers(g: Guest, plan: Plan) -> None:
    """1 writes, forks 2 and 3; 2 writes the page (copy), 3 exits, then 1 and 2 read; 1
    writes the page (last sharer of the original: reused in place)."""
    k = g.boot(fork_style="linux")
    base, n = plan["base"], plan["n"]
    va = base + plan["page"] * PAGE
    p1 = k.spawn()
    p1.mmap(base, n * PAGE, "rw")
    for i in range(n):
        p1.write(base + i * PAGE, bytes.fromhex(plan["data"]))
    p2, p3 = k.fork(p1), k.fork(p1)
    p3.read(va, 16)
    p2.write(va, bytes.fromhex(plan["marks"][0]))
    g.remember(p3)
    k.exit(p3)
    p1.read(va, 16)
    p1.write(va, bytes.fromhex(plan["marks"][1]))
    p2.read(base, n * PAGE)


def finished(m: Machine) -> None:
    expect(m.completed and {1, 2, 3} <= set(m.processes), "the workload did not finish")


@check(three_writers, points=10, name="isolation: each survivor reads its own page")
def isolation(m: Machine, plan: Plan) -> None:
    finished(m)
    va = plan["base"] + plan["page"] * PAGE
    for pid, mark in ((1, 1), (2, 0)):
        want = bytes.fromhex(plan["marks"][mark]) + bytes(48)
        got = m.read_user(pid, va, 64)
        expect(got == want, f"process {pid} reads {got!r}", "lesson.isolation")


@check(three_writers, points=10, name="refcount: the original frame reused, nothing leaked")
def reused(m: Machine, plan: Plan) -> None:
    finished(m)
    expect(not m.frame(m.process(3).l4).pinned, "process 3 did not exit")
    va = plan["base"] + plan["page"] * PAGE
    mapped = set()
    for pid in (1, 2):
        leaf = m.walk(m.process(pid).user_l4, va)
        expect(leaf is not None, f"process {pid} does not map the page")
        mapped.add(abi.pte_mfn(leaf or 0))
    expect(len(mapped) == 2, "the two survivors share the page they both wrote", "lesson.isolation")
    old = bytes.fromhex(plan["data"])
    for f in m.frames():
        if f.mfn not in mapped and m.xen.read_frame(f.mfn)[:16] == old:
            others = [
                m.walk(m.process(1).user_l4, plan["base"] + i * PAGE) for i in range(plan["n"])
            ]
            expect(
                any(e is not None and abi.pte_mfn(e) == f.mfn for e in others),
                f"frame {f.mfn:#x} holds the page's old bytes, and nobody maps it (a leak)",
                "lesson.refcount",
            )
    bad = m.audit()
    expect(not bad, f"the audit found: {bad[:3]}")
