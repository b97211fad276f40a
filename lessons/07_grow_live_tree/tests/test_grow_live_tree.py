"""Public tests of 07_grow_live_tree: a process touches pages under new L1s, L2s and L3s
of its live tree; one region is unmapped (its tables pruned and freed) and another mapped
in their recycled frames."""

from __future__ import annotations

import random

from hypervisor import abi
from hypervisor.mm.frames import PageType
from lessons.lab.testing import Guest, Machine, Plan, check, expect, workload

PAGE = 4096
TYPE = {3: PageType.L3, 2: PageType.L2, 1: PageType.L1}


def regions(rng: random.Random) -> Plan:
    """Pages under different L3s, L2s and L1s; a region that goes away; one that comes."""
    l4s = rng.sample(range(1, 255), 3)
    va0 = (l4s[0] << 39) | (rng.randrange(512) << 30) | (rng.randrange(1, 511) << 21)
    vas = [va0, va0 + (1 << 21), va0 + PAGE * rng.randrange(1, 512)]
    return {
        "vas": vas,
        "data": [rng.randbytes(rng.randint(1, 24)).hex() for _ in vas],
        "gone": (l4s[1] << 39) | (rng.randrange(512) << 30) | (rng.randrange(512) << 21),
        "new": (l4s[2] << 39) | (rng.randrange(512) << 30) | (rng.randrange(512) << 21),
        "new_data": rng.randbytes(16).hex(),
    }


@workload(plan=regions)
def grow_and_prune(g: Guest, plan: Plan) -> None:
    """Map and write pages that each need new tables; map a region under a new L3 and unmap
    it again (its L1, L2 and L3 are freed, junk-filled); map and write a region under
    another new L3, whose tables come from those recycled frames."""
    k = g.boot()
    p = k.spawn()
    for va, hexdata in zip(plan["vas"], plan["data"], strict=True):
        p.mmap(va, PAGE, "rw")
        p.write(va, bytes.fromhex(hexdata))
    p.mmap(plan["gone"], 2 * PAGE, "rw")
    p.write(plan["gone"], b"gone")
    p.munmap(plan["gone"], 2 * PAGE)
    p.mmap(plan["new"], PAGE, "rw")
    p.write(plan["new"], bytes.fromhex(plan["new_data"]))
    p.read(plan["vas"][0], 1)


# -- reading the machine ------------------------------------------------------------------


def requests(call: object, *names: str) -> list[tuple[int, ...]]:
    """The requests of an ``mmu_update`` or ``mmuext_op`` record as tuples of ``names``
    (records or tuples, as the replay left them)."""
    args = getattr(call, "args", ())
    items = args[0] if args and isinstance(args[0], list | tuple) else []
    out = []
    for item in items:
        if isinstance(item, list | tuple):
            row = tuple(item[: len(names)])
        else:
            row = tuple(getattr(item, n, 0) for n in names)
        if len(row) == len(names) and all(isinstance(x, int) for x in row):
            out.append(row)
    return out


def finished(m: Machine) -> None:
    expect(m.completed and 1 in m.processes, "the workload did not run to its end")


def wanted(plan: Plan) -> list[tuple[int, bytes]]:
    out = [(va, bytes.fromhex(h)) for va, h in zip(plan["vas"], plan["data"], strict=True)]
    return [*out, (plan["new"], bytes.fromhex(plan["new_data"]))]


# -- the checks ---------------------------------------------------------------------------


@check(grow_and_prune, points=10, name="user: every page reads what was written there")
def reads_back(m: Machine, plan: Plan) -> None:
    finished(m)
    for va, want in wanted(plan):
        got = m.read_user(1, va, len(want))
        expect(got is not None, f"{va:#x} is not mapped for user code", "lesson.not-linked")
        expect(got == want, f"the process reads {got!r} at {va:#x}, not {want!r}")
    gone = m.read_user(1, plan["gone"], 4)
    expect(gone is None, f"the unmapped region {plan['gone']:#x} is still mapped")


@check(grow_and_prune, points=10, name="tables: every new table is typed, and every L1 pinned")
def typed_and_pinned(m: Machine, plan: Plan) -> None:
    finished(m)
    view = m.process(1)
    user = m.tables_below(view.user_l4)
    expect(len(user) >= 7, f"the user L4 reaches {len(user)} tables", "lesson.not-linked")
    kernel = set(m.tables_below(view.l4))
    for level, mfn in user:
        f = m.frame(mfn)
        expect(f.type == TYPE[level], f"{mfn:#x} is linked as an L{level} but typed {f.type}")
        expect(level != 1 or f.pinned, f"the L1 {mfn:#x} is not pinned", "lesson.not-pinned")
        expect((level, mfn) in kernel, f"the L{level} {mfn:#x} is missing from the kernel L4")


@check(grow_and_prune, points=5, name="order: each L1 pinned before its link")
def pinned_before_linked(m: Machine, plan: Plan) -> None:
    finished(m)
    l1s = {mfn for level, mfn in m.tables_below(m.process(1).user_l4) if level == 1}
    expect(l1s, "the process has no L1 at all", "lesson.not-linked")
    pinned_at: dict[int, int] = {}  # the last pin of each frame, and its last link
    linked_at: dict[int, int] = {}
    for i, call in enumerate(m.calls):
        if call.result != 0:
            continue
        if call.op == "mmuext_op":
            for cmd, arg1 in requests(call, "cmd", "arg1"):
                if cmd == abi.MMUEXT_PIN_L1_TABLE:
                    pinned_at[arg1] = i
        elif call.op == "mmu_update":
            for _ptr, val in requests(call, "ptr", "val"):
                if val & abi._PAGE_PRESENT:
                    linked_at[abi.pte_mfn(val)] = i
    for mfn in sorted(l1s):
        expect(mfn in pinned_at, f"the L1 {mfn:#x} was never pinned", "lesson.not-pinned")
        expect(
            pinned_at[mfn] <= linked_at.get(mfn, pinned_at[mfn]),
            f"the L1 {mfn:#x} was linked before it was pinned",
            "lesson.not-pinned",
        )


@check(grow_and_prune, points=5, name="audit: clean, the pruned tables freed and untyped")
def audit_clean(m: Machine, plan: Plan) -> None:
    finished(m)
    expect(m.read_user(1, plan["new"], 1) is not None, "the last region was never mapped")
    bad = m.audit()
    expect(not bad, f"the audit found: {bad[:3]}")
    live = {mfn for _, mfn in m.tables_below(m.process(1).user_l4)}
    for f in m.frames():
        expect(
            not (f.pinned and f.type == PageType.L1) or f.mfn in live,
            f"{f.mfn:#x} is still a pinned L1, outside every live tree",
        )
