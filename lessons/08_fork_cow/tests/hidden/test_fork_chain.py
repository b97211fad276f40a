"""Hidden tests of 08_fork_cow: the Mini-OS strategy, a chain of forks (a child forks a
grandchild), writes on every side."""

from __future__ import annotations

import random

from hypervisor import abi
from lessons.lab.testing import Guest, Machine, Plan, check, expect, workload

PAGE = 4096


def chain(rng: random.Random) -> Plan:
    n = rng.randint(3, 6)
    return {
        "base": rng.randrange(1, 255) << 39 | rng.randrange(512) << 21,
        "n": n,
        "marks": rng.sample(range(1, 256), 4),
        "pages": [rng.randrange(n) for _ in range(3)],
    }


@workload(plan=chain)
def fork_chain(g: Guest, plan: Plan) -> None:
    """1 writes mark 0 everywhere and forks 2; 2 forks 3; then 1, 2 and 3 each write their
    own mark into one page, and read everything."""
    k = g.boot(strategy="minios")
    base, n = plan["base"], plan["n"]
    procs = [k.spawn()]
    procs[0].mmap(base, n * PAGE, "rw")
    for i in range(n):
        procs[0].write(base + i * PAGE, bytes([plan["marks"][0]]) * 4)
    procs.append(k.fork(procs[0]))
    procs.append(k.fork(procs[1]))
    for j, p in enumerate(procs):
        p.write(base + plan["pages"][j] * PAGE, bytes([plan["marks"][j + 1]]) * 4)
    for p in procs:
        p.read(base, n * PAGE)


def finished(m: Machine) -> None:
    expect(m.completed and {1, 2, 3} <= set(m.processes), "the workload did not finish")


@check(fork_chain, points=10, name="isolation: every process reads only its own writes")
def isolation(m: Machine, plan: Plan) -> None:
    finished(m)
    for j in range(3):
        for i in range(plan["n"]):
            mark = plan["marks"][j + 1] if i == plan["pages"][j] else plan["marks"][0]
            got = m.read_user(j + 1, plan["base"] + i * PAGE, 4)
            expect(
                got == bytes([mark]) * 4,
                f"process {j + 1} reads {got!r} in page {i}",
                "lesson.isolation",
            )


@check(fork_chain, points=10, name="cow: pages still shared are read-only everywhere")
def shared_read_only(m: Machine, plan: Plan) -> None:
    finished(m)
    for i in range(plan["n"]):
        leaves = [m.walk(m.process(j + 1).user_l4, plan["base"] + i * PAGE) for j in range(3)]
        expect(None not in leaves, f"page {i} is not mapped everywhere")
        mfns = [abi.pte_mfn(leaf or 0) for leaf in leaves]
        for j, leaf in enumerate(leaves):
            if mfns.count(mfns[j]) > 1:
                expect(
                    not (leaf or 0) & abi._PAGE_RW,
                    f"process {j + 1} maps shared page {i} writable",
                    "lesson.isolation",
                )
    bad = m.audit()
    expect(not bad, f"the audit found: {bad[:3]}")
