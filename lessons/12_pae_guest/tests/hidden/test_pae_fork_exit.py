"""Hidden tests of 12_pae_guest: a forked child on a PAE guest gets its own L3 and kernel L2;
it exits while loaded; a new process is made in the frames the exit freed."""

from __future__ import annotations

import random

from hypervisor import abi
from hypervisor.mm.frames import PageType
from lessons.lab.testing import Guest, Machine, Plan, check, expect, workload

PAGE = 4096
USER = abi._PAGE_PRESENT | abi._PAGE_USER


def plan_(rng: random.Random) -> Plan:
    return {
        "va": rng.randrange(3) << 30 | rng.randrange(1, 512) << 21,
        "pages": rng.randint(2, 5),
        "marks": rng.sample(range(1, 256), 3),
    }


@workload(plan=plan_, guest_width=32)
def pae_fork_exit_respawn(g: Guest, plan: Plan) -> None:
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


def live_l3s_pinned(m: Machine) -> None:
    for pid in (1, 3):
        f = m.frame(m.process(pid).l4)
        expect(
            f.type == PageType.L3 and f.pinned,
            f"process {pid}'s L3 {f.mfn:#x} is not a pinned L3",
            "lesson.not-pinned",
        )


def read_user(m: Machine, pid: int, va: int, n: int) -> bytes | None:
    e = m.entry(m.process(pid).l4, (va >> 30) & 3)
    if not e & abi._PAGE_PRESENT:
        return None
    for shift in (21, 12):
        e = m.entry(abi.pte_mfn(e), (va >> shift) & 511)
        if e & USER != USER:
            return None
    if not 0 < abi.pte_mfn(e) < m.xen.total_frames:
        return None
    return bytes(m.xen.read_frame(abi.pte_mfn(e))[va & (PAGE - 1) :][:n])


def tree(m: Machine, pid: int) -> set[int]:
    """The mfns of process ``pid``'s L3, kernel L2, and every L2 and L1 below slots 0-2."""
    view = m.process(pid)
    found = {view.l4, view.user_l4}
    for slot in range(3):
        e = m.entry(view.l4, slot)
        if e & abi._PAGE_PRESENT:
            found.add(abi.pte_mfn(e))
            for s2 in range(512):
                e2 = m.entry(abi.pte_mfn(e), s2)
                if e2 & abi._PAGE_PRESENT:
                    found.add(abi.pte_mfn(e2))
    return found


@check(pae_fork_exit_respawn, points=10, name="user: the parent and the new process read marks")
def marks(m: Machine, plan: Plan) -> None:
    finished(m)
    live_l3s_pinned(m)
    for pid, mark in ((1, 0), (3, 2)):
        want = bytes([plan["marks"][mark]]) * 4
        got = read_user(m, pid, plan["va"], 4)
        expect(got == want, f"process {pid} reads {got!r}, not {want!r}")
    for i in range(1, plan["pages"]):
        got = read_user(m, 1, plan["va"] + i * PAGE, 4)
        expect(got == bytes([plan["marks"][0]]) * 4, f"the parent's page {i} reads {got!r}")


@check(pae_fork_exit_respawn, points=10, name="exit: the child's L3 released, the audit clean")
def child_gone(m: Machine, plan: Plan) -> None:
    finished(m)
    live_l3s_pinned(m)
    live = {mfn for pid in (1, 3) for mfn in tree(m, pid)}
    child = m.process(2)
    for mfn in (child.l4, child.user_l4):
        f = m.frame(mfn)
        expect(
            mfn in live or not f.type.is_pagetable,
            f"the exited child's table {mfn:#x} is still a {f.type.name}",
            "lesson.not-unpinned",
        )
    expect(m.vcpu.cr3 == m.process(1).l4, "the CPU does not end on the parent's L3")
    bad = m.audit()
    expect(not bad, f"the audit found: {bad[:3]}")
