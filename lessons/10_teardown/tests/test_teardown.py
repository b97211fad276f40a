"""Public tests of 10_teardown: three processes; one exits while another runs, one exits
while it is the CPU's current tree; the survivor unmaps a region (its tables pruned)."""

from __future__ import annotations

import random

from hypervisor import abi
from hypervisor.mm.frames import PageType
from lessons.lab.testing import Guest, Machine, Plan, check, expect, workload

PAGE = 4096
JUNK = b"\x01" * PAGE


def three(rng: random.Random) -> Plan:
    """Two regions under different L3s; what each process writes."""
    a, b = rng.sample(range(1, 255), 2)
    return {
        "vas": [(a << 39) | (rng.randrange(512) << 21), (b << 39) | (rng.randrange(512) << 21)],
        "marks": rng.sample(range(1, 256), 3),
    }


@workload(plan=three)
def exits(g: Guest, plan: Plan) -> None:
    """Processes 1, 2, 3 map both regions and write their mark (3 runs last); 1 exits
    (not loaded), then 3 (loaded); 2 reads, unmaps its second region and reads again."""
    k = g.boot()
    procs = [k.spawn() for _ in range(3)]
    for p, mark in zip(procs, plan["marks"], strict=True):
        for va in plan["vas"]:
            p.mmap(va, 2 * PAGE, "rw")
            p.write(va, bytes([mark]) * 8)
    for p in (procs[0], procs[2]):
        g.remember(p)
        k.exit(p)
    procs[1].read(plan["vas"][0], 8)
    procs[1].munmap(plan["vas"][1], 2 * PAGE)
    procs[1].read(plan["vas"][0], 8)


# -- reading the machine ------------------------------------------------------------------


def finished(m: Machine) -> None:
    expect(m.completed and {1, 2, 3} <= set(m.processes), "the workload did not finish")


def ops(m: Machine) -> list[tuple[int, int]]:
    """``(cmd, arg1)`` of every ``mmuext_op`` command the trusted machine carried out, in
    order (a refused batch's done part included)."""
    out: list[tuple[int, int]] = []
    for call in m.calls:
        if call.op != "mmuext_op" or not call.args:
            continue
        items = call.args[0] if isinstance(call.args[0], list | tuple) else []
        done = len(items) if call.result == 0 else call.done
        for item in items[:done]:
            row = tuple(item[:2]) if isinstance(item, list | tuple) else (item.cmd, item.arg1)
            if len(row) == 2 and all(isinstance(x, int) for x in row):
                out.append((row[0], row[1]))
    return out


# -- the checks ---------------------------------------------------------------------------


@check(exits, points=10, name="exit: the exited trees are unpinned and untyped")
def unpinned(m: Machine, plan: Plan) -> None:
    finished(m)
    for pid in (1, 3):
        view = m.process(pid)
        for mfn in (view.l4, view.user_l4):
            f = m.frame(mfn)
            expect(
                not f.pinned and not f.type.is_pagetable,
                f"process {pid}'s L4 {mfn:#x} is still {'pinned' if f.pinned else 'typed'}",
                "lesson.not-unpinned",
            )
    live = {mfn for _, mfn in m.tables_below(m.process(2).user_l4)}
    for f in m.frames():
        expect(
            not (f.pinned and f.type == PageType.L1) or f.mfn in live,
            f"{f.mfn:#x} is still a pinned L1, outside the live tree",
            "lesson.not-unpinned",
        )


@check(exits, points=5, name="order: no tree unpinned while it was still loaded")
def switched_away_first(m: Machine, plan: Plan) -> None:
    finished(m)
    gone = {mfn for pid in (1, 3) for mfn in (m.process(pid).l4, m.process(pid).user_l4)}
    base = user = 0
    unpins = 0
    for cmd, arg1 in ops(m):
        if cmd == abi.MMUEXT_NEW_BASEPTR:
            base = arg1
        elif cmd == abi.MMUEXT_NEW_USER_BASEPTR:
            user = arg1
        elif cmd == abi.MMUEXT_UNPIN_TABLE and arg1 in gone:
            unpins += 1
            expect(
                arg1 not in (base, user),
                f"the L4 {arg1:#x} was unpinned while it was still loaded",
                "lesson.unpinned-loaded",
            )
    expect(unpins >= len(gone), f"{unpins} of the exited L4s were unpinned", "lesson.not-unpinned")


@check(exits, points=10, name="free: every frame the exits and the munmap released is freed")
def freed(m: Machine, plan: Plan) -> None:
    finished(m)
    view = m.process(2)
    live = {mfn for _, mfn in m.tables_below(view.user_l4)} | {view.l4, view.user_l4}
    gone = {mfn for pid in (1, 3) for mfn in (m.process(pid).l4, m.process(pid).user_l4)}
    for cmd, arg1 in ops(m):
        if cmd == abi.MMUEXT_PIN_L1_TABLE and arg1 not in live:
            gone.add(arg1)
    expect(len(gone) >= 4 + 2 * 2 + 1, f"only {len(gone)} released tables in the trace")
    for mfn in sorted(gone):
        expect(
            m.xen.read_frame(mfn) == JUNK,
            f"the released table {mfn:#x} was never freed (not junk-filled): a leak",
            "lesson.leaked",
        )


@check(exits, points=5, name="audit: the survivor reads its mark, every count adds up")
def survivor(m: Machine, plan: Plan) -> None:
    finished(m)
    for pid in (1, 3):
        f = m.frame(m.process(pid).l4)
        expect(not f.pinned, f"process {pid} exited, its L4 is still pinned", "lesson.not-unpinned")
    want = bytes([plan["marks"][1]]) * 8
    got = m.read_user(2, plan["vas"][0], 8)
    expect(got == want, f"process 2 reads {got!r}, not {want!r}")
    expect(m.read_user(2, plan["vas"][1], 8) is None, "the unmapped region is still mapped")
    bad = m.audit()
    expect(not bad, f"the audit found: {bad[:3]}")
