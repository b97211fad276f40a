"""Public tests of 12_pae_guest: two processes on a 32-bit PAE guest, each with its own L3
and kernel L2; then three processes, one exiting while another runs, one while it is the
CPU's current tree."""

from __future__ import annotations

import random

from hypervisor import abi
from hypervisor.mm.frames import PageType
from lessons.lab.testing import Guest, Machine, Plan, check, expect, workload
from minikern.boot import PAE_XEN_L2_FIRST
from minikern.recipe import JUNK

PAGE = 4096
USER = abi._PAGE_PRESENT | abi._PAGE_USER


def regions(rng: random.Random) -> Plan:
    """Two user regions under different L3 slots (below 3 GiB); a mark per process."""
    a, b = rng.sample(range(3), 2)
    return {
        "vas": [(a << 30) | (rng.randrange(1, 512) << 21), (b << 30) | (rng.randrange(512) << 21)],
        "marks": rng.sample(range(1, 256), 3),
    }


@workload(plan=regions, guest_width=32)
def two_trees(g: Guest, plan: Plan) -> None:
    """Processes 1 and 2 map both regions and write their mark; the CPU ends on process 1."""
    k = g.boot()
    procs = [k.spawn() for _ in range(2)]
    for p, mark in zip(procs, plan["marks"][:2], strict=True):
        for va in plan["vas"]:
            p.mmap(va, 2 * PAGE, "rw")
            p.write(va, bytes([mark]) * 8)
    k.switch_to(procs[0])


@workload(plan=regions, guest_width=32)
def pae_exits(g: Guest, plan: Plan) -> None:
    """Processes 1, 2, 3 map both regions and write their mark (3 runs last); 1 exits
    (not loaded), then 3 (loaded); 2 reads its first region."""
    k = g.boot()
    procs = [k.spawn() for _ in range(3)]
    for p, mark in zip(procs, plan["marks"], strict=True):
        for va in plan["vas"]:
            p.mmap(va, PAGE, "rw")
            p.write(va, bytes([mark]) * 8)
    for p in (procs[0], procs[2]):
        g.remember(p)
        k.exit(p)
    procs[1].read(plan["vas"][0], 8)


# -- reading a PAE machine ------------------------------------------------------------------
# A process's view: ``l4`` is the mfn of its L3 (the top), ``user_l4`` that of its kernel L2.


def finished(m: Machine, pids: set[int]) -> None:
    expect(m.completed and pids <= set(m.processes), "the workload did not finish")


def pinned_l3s(m: Machine, pids: tuple[int, ...]) -> None:
    """Each process's top is a pinned L3 (the first thing a PAE tree needs)."""
    for pid in pids:
        f = m.frame(m.process(pid).l4)
        expect(
            f.type == PageType.L3 and f.pinned,
            f"process {pid}'s L3 {f.mfn:#x} is {'' if f.pinned else 'not '}pinned, "
            f"typed {f.type.name}: was it pinned with MMUEXT_PIN_L3_TABLE?",
            "lesson.not-pinned",
        )


def walk(m: Machine, l3: int, va: int) -> int | None:
    """The leaf entry mapping ``va`` for user code, through the PAE tree at ``l3``."""
    e = m.entry(l3, (va >> 30) & 3)
    if not e & abi._PAGE_PRESENT:
        return None
    for shift in (21, 12):
        e = m.entry(abi.pte_mfn(e), (va >> shift) & 511)
        if e & USER != USER:
            return None
    return e


def read_user(m: Machine, pid: int, va: int, n: int) -> bytes | None:
    leaf = walk(m, m.process(pid).l4, va)
    if leaf is None or not 0 < abi.pte_mfn(leaf) < m.xen.total_frames:
        return None
    off = va & (PAGE - 1)
    return bytes(m.xen.read_frame(abi.pte_mfn(leaf))[off : off + n])


def user_l1s(m: Machine, l3: int) -> set[int]:
    """The mfns of every L2 and L1 below slots 0-2 of the L3 in ``l3``."""
    found: set[int] = set()
    for slot in range(3):
        e = m.entry(l3, slot)
        if not e & abi._PAGE_PRESENT:
            continue
        found.add(abi.pte_mfn(e))
        for s2 in range(512):
            e2 = m.entry(abi.pte_mfn(e), s2)
            if e2 & abi._PAGE_PRESENT:
                found.add(abi.pte_mfn(e2))
    return found


# -- two live trees -------------------------------------------------------------------------


@check(two_trees, points=10, name="pin: each process's L3 is a pinned L3")
def l3s_pinned(m: Machine, plan: Plan) -> None:
    finished(m, {1, 2})
    pinned_l3s(m, (1, 2))


@check(two_trees, points=5, name="kernel L2: each L3's slot 3 is the tree's own L2")
def own_kernel_l2(m: Machine, plan: Plan) -> None:
    finished(m, {1, 2})
    pinned_l3s(m, (1, 2))
    seen: set[int] = set()
    for pid in (1, 2):
        view = m.process(pid)
        slot3 = m.entry(view.l4, 3)
        l2 = abi.pte_mfn(slot3)
        expect(
            slot3 & abi._PAGE_PRESENT and l2 == view.user_l4 and l2 not in seen,
            f"slot 3 of process {pid}'s L3 does not point at a kernel L2 of its own",
            "lesson.kernel-l2",
        )
        seen.add(l2)
        guest = [m.entry(l2, s) for s in range(PAE_XEN_L2_FIRST)]
        expect(any(guest), f"process {pid}'s kernel L2 maps no kernel", "lesson.kernel-l2")
    one, two = (m.process(pid).user_l4 for pid in (1, 2))
    expect(
        all(m.entry(one, s) == m.entry(two, s) for s in range(PAE_XEN_L2_FIRST)),
        "the two kernel L2s do not map the same kernel",
        "lesson.kernel-l2",
    )


@check(two_trees, points=10, name="user: each process reads its own mark in both regions")
def own_marks(m: Machine, plan: Plan) -> None:
    finished(m, {1, 2})
    for pid, mark in ((1, plan["marks"][0]), (2, plan["marks"][1])):
        for va in plan["vas"]:
            got = read_user(m, pid, va, 8)
            expect(got == bytes([mark]) * 8, f"process {pid} reads {got!r} at {va:#x}")


@check(two_trees, points=5, name="audit: the CPU runs process 1, every count adds up")
def audit_clean(m: Machine, plan: Plan) -> None:
    finished(m, {1, 2})
    pinned_l3s(m, (1, 2))
    expect(m.vcpu.cr3 == m.process(1).l4, "the CPU does not end on process 1's L3")
    bad = m.audit()
    expect(not bad, f"the audit found: {bad[:3]}")


# -- exits ----------------------------------------------------------------------------------


@check(pae_exits, points=10, name="exit: the exited trees are unpinned, untyped and freed")
def exited_released(m: Machine, plan: Plan) -> None:
    finished(m, {1, 2, 3})
    live = user_l1s(m, m.process(2).l4) | {m.process(2).l4, m.process(2).user_l4}
    for pid in (1, 3):
        view = m.process(pid)
        for what, mfn in (("L3", view.l4), ("kernel L2", view.user_l4)):
            f = m.frame(mfn)
            expect(
                not f.pinned and not f.type.is_pagetable,
                f"process {pid}'s {what} {mfn:#x} is still {'pinned' if f.pinned else 'typed'}",
                "lesson.not-unpinned",
            )
            expect(
                m.xen.read_frame(mfn) == JUNK,
                f"process {pid}'s {what} {mfn:#x} was never freed (not junk-filled): a leak",
                "lesson.leaked",
            )
    for f in m.frames():
        expect(
            not (f.pinned and f.type == PageType.L1) or f.mfn in live,
            f"{f.mfn:#x} is still a pinned L1, outside the live tree",
            "lesson.not-unpinned",
        )


@check(pae_exits, points=5, name="audit: the survivor runs and reads its mark")
def survivor_runs(m: Machine, plan: Plan) -> None:
    finished(m, {1, 2, 3})
    pinned_l3s(m, (2,))
    expect(m.vcpu.cr3 == m.process(2).l4, "the CPU does not end on the survivor's L3")
    got = read_user(m, 2, plan["vas"][0], 8)
    expect(got == bytes([plan["marks"][1]]) * 8, f"process 2 reads {got!r}")
    bad = m.audit()
    expect(not bad, f"the audit found: {bad[:3]}")
