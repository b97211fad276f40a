"""Hidden tests of 10_teardown: a forked child exits while loaded (the shared frames stay
with the parent); new processes are made in the frames the exits freed."""

from __future__ import annotations

import random

from hypervisor.mm.frames import PageType
from lessons.lab.testing import Guest, Machine, Plan, check, expect, workload

PAGE = 4096


def plan_(rng: random.Random) -> Plan:
    return {
        "va": rng.randrange(1, 255) << 39 | rng.randrange(512) << 30,
        "pages": rng.randint(2, 5),
        "marks": rng.sample(range(1, 256), 3),
    }


@workload(plan=plan_)
def fork_exit_respawn(g: Guest, plan: Plan) -> None:
    """The parent writes pages and forks; the child writes one (a copy) and exits while
    loaded; a new process is spawned in the freed frames and writes; the parent reads."""
    k = g.boot()
    va, n = plan["va"], plan["pages"]
    parent = k.spawn()
    parent.mmap(va, n * PAGE, "rw")
    for i in range(n):
        parent.write(va + i * PAGE, bytes([plan["marks"][0]]) * 4)
    child = k.fork(parent)
    child.write(va, bytes([plan["marks"][1]]) * 4)
    g.remember(child)
    k.exit(child)
    fresh = k.spawn()
    fresh.mmap(va, n * PAGE, "rw")
    fresh.write(va, bytes([plan["marks"][2]]) * 4)
    parent.read(va, 4)


def finished(m: Machine) -> None:
    expect(m.completed and {1, 2, 3} <= set(m.processes), "the workload did not finish")


def child_released(m: Machine) -> None:
    """The exited child's L4s are no L4s any more (unless the new process reuses them)."""
    live = {m.process(3).l4, m.process(3).user_l4}
    child = m.process(2)
    for mfn in (child.l4, child.user_l4):
        f = m.frame(mfn)
        expect(
            mfn in live or f.type != PageType.L4,
            f"the exited child's L4 {mfn:#x} is still an L4",
            "lesson.not-unpinned",
        )


@check(fork_exit_respawn, points=10, name="user: the parent and the new process read their marks")
def marks(m: Machine, plan: Plan) -> None:
    finished(m)
    child_released(m)
    for pid, mark in ((1, 0), (3, 2)):
        want = bytes([plan["marks"][mark]]) * 4
        got = m.read_user(pid, plan["va"], 4)
        expect(got == want, f"process {pid} reads {got!r}, not {want!r}")
    for i in range(1, plan["pages"]):
        got = m.read_user(1, plan["va"] + i * PAGE, 4)
        expect(got == bytes([plan["marks"][0]]) * 4, f"the parent's page {i} reads {got!r}")


@check(fork_exit_respawn, points=10, name="exit: the child's L4s unpinned, the audit clean")
def child_gone(m: Machine, plan: Plan) -> None:
    finished(m)
    child_released(m)
    expect(m.vcpu.cr3 == m.process(1).l4, "the CPU does not end on the parent's tree")
    bad = m.audit()
    expect(not bad, f"the audit found: {bad[:3]}")
