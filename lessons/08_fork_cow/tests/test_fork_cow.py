"""Public tests of 08_fork_cow: a parent writes its pages (the CPU caches writable
translations of each), forks, and both sides write after the fork."""

from __future__ import annotations

import random

from hypervisor import abi
from hypervisor.mm.frames import PageType
from lessons.lab.testing import Guest, Machine, Plan, check, expect, workload

PAGE = 4096


def pages(rng: random.Random) -> Plan:
    n = rng.randint(3, 8)
    parent_page, child_page = rng.sample(range(n), 2)
    return {
        "base": rng.randrange(0x400, 0x40000) * PAGE,
        "data": [rng.randbytes(8).hex() for _ in range(n)],
        "parent_page": parent_page,
        "child_page": child_page,
        "parent_data": rng.randbytes(8).hex(),
        "child_data": rng.randbytes(8).hex(),
    }


@workload(plan=pages)
def fork_and_write(g: Guest, plan: Plan) -> None:
    """The parent writes n pages and forks; the parent writes one page right away (its
    TLB still warm), the child writes another, and each reads everything."""
    k = g.boot()
    parent = k.spawn()
    base = plan["base"]
    parent.mmap(base, len(plan["data"]) * PAGE, "rw")
    for i, hexdata in enumerate(plan["data"]):
        parent.write(base + i * PAGE, bytes.fromhex(hexdata))
    child = k.fork(parent)
    parent.write(base + plan["parent_page"] * PAGE, bytes.fromhex(plan["parent_data"]))
    child.write(base + plan["child_page"] * PAGE, bytes.fromhex(plan["child_data"]))
    child.read(base, len(plan["data"]) * PAGE)
    parent.read(base, len(plan["data"]) * PAGE)


# -- reading the machine ------------------------------------------------------------------


def expected(plan: Plan, who: str) -> list[bytes]:
    out = [bytes.fromhex(h) for h in plan["data"]]
    out[plan[f"{who}_page"]] = bytes.fromhex(plan[f"{who}_data"])
    return out


def finished(m: Machine) -> None:
    expect(m.completed and {1, 2} <= set(m.processes), "the workload did not finish")


# -- the checks ---------------------------------------------------------------------------


@check(fork_and_write, points=10, name="isolation: parent and child each read their own bytes")
def isolation(m: Machine, plan: Plan) -> None:
    finished(m)
    for pid, who in ((1, "parent"), (2, "child")):
        for i, want in enumerate(expected(plan, who)):
            va = plan["base"] + i * PAGE
            got = m.read_user(pid, va, 8)
            expect(
                got == want,
                f"process {pid} ({who}) reads {got!r} at {va:#x}, not {want!r}",
                "lesson.isolation",
            )


@check(fork_and_write, points=10, name="cow: each page still shared: one frame, read-only twice")
def shared_read_only(m: Machine, plan: Plan) -> None:
    finished(m)
    written = {plan["parent_page"], plan["child_page"]}
    for i in range(len(plan["data"])):
        va = plan["base"] + i * PAGE
        leaves = [m.walk(m.process(pid).user_l4, va) for pid in (1, 2)]
        expect(None not in leaves, f"page {i} is not mapped in both processes")
        if i in written:
            continue
        a, b = (leaf or 0 for leaf in leaves)
        expect(abi.pte_mfn(a) == abi.pte_mfn(b), f"page {i} was copied, not shared")
        expect(
            not (a | b) & abi._PAGE_RW, f"shared page {i} is writable somewhere", "lesson.isolation"
        )


@check(fork_and_write, points=5, name="dirty: the parent's shared leaves keep Accessed/Dirty")
def ad_preserved(m: Machine, plan: Plan) -> None:
    finished(m)
    written = {plan["parent_page"], plan["child_page"]}
    ad = abi._PAGE_ACCESSED | abi._PAGE_DIRTY
    for i in range(len(plan["data"])):
        leaf = m.walk(m.process(1).user_l4, plan["base"] + i * PAGE)
        expect(leaf is not None, f"page {i} is not mapped in the parent")
        if i not in written and leaf is not None:
            expect(
                leaf & ad == ad,
                f"the parent's page {i}, written before the fork, lost its Accessed/Dirty "
                f"bits ({leaf:#x})",
                "lesson.lost-dirty",
            )


@check(fork_and_write, points=5, name="child: its L4s and every L1 pinned, the audit clean")
def child_pinned(m: Machine, plan: Plan) -> None:
    finished(m)
    view = m.process(2)
    for mfn in (view.l4, view.user_l4):
        f = m.frame(mfn)
        expect(f.type == PageType.L4 and f.pinned, f"the child's L4 {mfn:#x} is not pinned")
    l1s = [mfn for level, mfn in m.tables_below(view.user_l4) if level == 1]
    expect(l1s, "the child has no L1")
    for mfn in l1s:
        expect(m.frame(mfn).pinned, f"the child's L1 {mfn:#x} is not pinned", "lesson.not-pinned")
    bad = m.audit()
    expect(not bad, f"the audit found: {bad[:3]}")
