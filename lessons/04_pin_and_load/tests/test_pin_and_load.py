"""Public tests of 04_pin_and_load: a process, a fork, writes on both sides."""

from __future__ import annotations

import random

from hypervisor.mm.frames import PageType
from lessons.lab.testing import Guest, Machine, Plan, check, expect, workload

PAGE = 4096


def two_processes(rng: random.Random) -> Plan:
    """Where the parent maps its pages, what it writes, what the forked child overwrites."""
    pages = rng.randint(2, 6)
    return {
        "base": rng.randrange(0x400, 0x40000) * PAGE,
        "data": [rng.randbytes(rng.randint(1, 48)).hex() for _ in range(pages)],
        "child_page": rng.randrange(pages),
        "child_data": rng.randbytes(rng.randint(1, 48)).hex(),
    }


@workload(plan=two_processes)
def fork_and_write(g: Guest, plan: Plan) -> None:
    """Spawn, map and write, fork, write in the child, then run the parent again."""
    k = g.boot()
    parent = k.spawn()
    base = plan["base"]
    parent.mmap(base, len(plan["data"]) * PAGE, "rw")
    for i, hexdata in enumerate(plan["data"]):
        parent.write(base + i * PAGE, bytes.fromhex(hexdata))
    child = k.fork(parent)
    child.write(base + plan["child_page"] * PAGE, bytes.fromhex(plan["child_data"]))
    parent.read(base, 1)


def expected(plan: Plan, child: bool) -> list[bytes]:
    """What each page of the parent (or the child) holds in its first 64 bytes."""
    pages = []
    for i, hexdata in enumerate(plan["data"]):
        page = bytearray(64)
        data = bytes.fromhex(hexdata)
        page[: len(data)] = data
        if child and i == plan["child_page"]:
            over = bytes.fromhex(plan["child_data"])
            page[: len(over)] = over
        pages.append(bytes(page))
    return pages


def both_processes(m: Machine) -> None:
    expect(1 in m.processes and 2 in m.processes, "the parent and the child must both be there")


@check(fork_and_write, points=10, name="pin: each process's two L4s are pinned")
def l4s_pinned(m: Machine, plan: Plan) -> None:
    both_processes(m)
    for pid, view in sorted(m.processes.items()):
        for what, mfn in (("kernel L4", view.l4), ("user L4", view.user_l4)):
            f = m.frame(mfn)
            expect(
                f.type == PageType.L4,
                f"process {pid}'s {what} {mfn:#x} is not typed L4",
                "lesson.not-pinned",
            )
            expect(f.pinned, f"process {pid}'s {what} {mfn:#x} is not pinned", "lesson.not-pinned")


@check(fork_and_write, points=10, name="load: the CPU runs on the parent's two L4s")
def bases_loaded(m: Machine, plan: Plan) -> None:
    both_processes(m)
    parent = m.process(1)
    expect(
        m.vcpu.cr3 == parent.l4,
        f"NEW_BASEPTR: cr3 is {m.vcpu.cr3:#x}, the parent's kernel L4 is {parent.l4:#x}",
        "lesson.wrong-base",
    )
    expect(
        m.vcpu.user_base == parent.user_l4,
        f"NEW_USER_BASEPTR: the user base is {m.vcpu.user_base:#x}, the parent's user L4 "
        f"is {parent.user_l4:#x}",
        "lesson.wrong-base",
    )


@check(fork_and_write, points=10, name="user: each process reads exactly what it wrote")
def reads_back(m: Machine, plan: Plan) -> None:
    both_processes(m)
    for pid, is_child in ((1, False), (2, True)):
        for i, want in enumerate(expected(plan, is_child)):
            va = plan["base"] + i * PAGE
            got = m.read_user(pid, va, len(want))
            expect(got is not None, f"process {pid}: {va:#x} is not mapped for user code")
            expect(got == want, f"process {pid} reads {got!r} at {va:#x}, not {want!r}")


@check(fork_and_write, points=5, name="audit: every count on the machine adds up")
def audit_clean(m: Machine, plan: Plan) -> None:
    both_processes(m)
    bad = m.audit()
    expect(not bad, f"the audit found: {bad[:3]}")
