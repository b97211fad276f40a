"""Public tests of 09_cow_fault: after a fork, the child writes a shared page (a copy),
then the parent writes it (the last user: reused in place); the child writes a second
page and exits, and the parent writes that page last."""

from __future__ import annotations

import random

from hypervisor import abi
from lessons.lab.testing import Guest, Machine, Plan, check, expect, workload

PAGE = 4096


def pages(rng: random.Random) -> Plan:
    n = rng.randint(3, 8)
    first, second = rng.sample(range(n), 2)
    return {
        "base": rng.randrange(0x400, 0x40000) * PAGE,
        "data": [rng.randbytes(8).hex() for _ in range(n)],
        "first": first,
        "second": second,
        "marks": [rng.randbytes(8).hex() for _ in range(4)],
    }


@workload(plan=pages)
def cow_both_ways(g: Guest, plan: Plan) -> None:
    """Parent writes n pages, forks. Child writes `first` (copied); parent reads it, then
    writes it (reused). Child reads all, writes `second`, stays; a second child is forked
    and exits at once; the parent writes `second` last."""
    k = g.boot()
    parent = k.spawn()
    base = plan["base"]
    first, second = (base + plan[w] * PAGE for w in ("first", "second"))
    parent.mmap(base, len(plan["data"]) * PAGE, "rw")
    for i, hexdata in enumerate(plan["data"]):
        parent.write(base + i * PAGE, bytes.fromhex(hexdata))
    child = k.fork(parent)
    child.write(first, bytes.fromhex(plan["marks"][0]))
    parent.read(first, 8)
    parent.write(first, bytes.fromhex(plan["marks"][1]))
    child.read(base, len(plan["data"]) * PAGE)
    child.write(second, bytes.fromhex(plan["marks"][2]))
    other = k.fork(parent)
    g.remember(other)
    k.exit(other)
    parent.write(second, bytes.fromhex(plan["marks"][3]))
    parent.read(base, len(plan["data"]) * PAGE)


# -- reading the machine ------------------------------------------------------------------


def expected(plan: Plan, pid: int) -> list[bytes]:
    out = [bytes.fromhex(h) for h in plan["data"]]
    marks = (1, 3) if pid == 1 else (0, 2)
    out[plan["first"]] = bytes.fromhex(plan["marks"][marks[0]])
    out[plan["second"]] = bytes.fromhex(plan["marks"][marks[1]])
    return [data + bytes(64 - len(data)) for data in out]


def finished(m: Machine) -> None:
    expect(m.completed and {1, 2, 3} <= set(m.processes), "the workload did not finish")


def leaf(m: Machine, pid: int, plan: Plan, page: int) -> int:
    entry = m.walk(m.process(pid).user_l4, plan["base"] + page * PAGE)
    expect(entry is not None, f"process {pid}: page {page} is not mapped")
    return entry or 0


def stale(m: Machine, root: int) -> list[int]:
    """Addresses whose cached translation (under ``root``) the page tables no longer grant."""
    out = []
    for (top, vpn), e in m.vcpu._v.mmu.tlb.entries.items():
        if top == root:
            entry = m.walk(root, vpn << 12, user=False)
            if entry is None or abi.pte_mfn(entry) != e.mfn or (e.writable and not entry & 2):
                out.append(vpn << 12)
    return sorted(out)


# -- the checks ---------------------------------------------------------------------------


@check(cow_both_ways, points=10, name="isolation: parent and child each read their own bytes")
def isolation(m: Machine, plan: Plan) -> None:
    finished(m)
    for pid in (1, 2):
        for i, want in enumerate(expected(plan, pid)):
            got = m.read_user(pid, plan["base"] + i * PAGE, 64)
            expect(
                got == want,
                f"process {pid} reads {got!r} in page {i}, not {want!r}",
                "lesson.isolation",
            )


@check(cow_both_ways, points=10, name="copy: each written page is the writer's own, writable")
def own_copies(m: Machine, plan: Plan) -> None:
    finished(m)
    for page in (plan["first"], plan["second"]):
        a, b = leaf(m, 1, plan, page), leaf(m, 2, plan, page)
        expect(
            abi.pte_mfn(a) != abi.pte_mfn(b),
            f"page {page} is still one frame for both",
            "lesson.isolation",
        )
        expect(b & abi._PAGE_RW, f"the child's page {page}, which it wrote, is read-only")
    a = leaf(m, 1, plan, plan["second"])
    expect(a & abi._PAGE_RW, f"the parent's page {plan['second']}, written last, is read-only")
    for i in range(len(plan["data"])):
        if i not in (plan["first"], plan["second"]):
            a, b = leaf(m, 1, plan, i), leaf(m, 2, plan, i)
            expect(abi.pte_mfn(a) == abi.pte_mfn(b), f"page {i}, never written, was copied")
            expect(not (a | b) & abi._PAGE_RW, f"shared page {i} is writable", "lesson.isolation")


@check(cow_both_ways, points=5, name="refcount: no frame outlives its last user (no leak)")
def nothing_leaked(m: Machine, plan: Plan) -> None:
    finished(m)
    expect(not m.frame(m.process(3).l4).pinned, "the second child did not exit")
    for page in (plan["first"], plan["second"]):
        mapped = {abi.pte_mfn(leaf(m, pid, plan, page)) for pid in (1, 2)}
        old = bytes.fromhex(plan["data"][page])
        for f in m.frames():
            expect(
                f.mfn in mapped or m.xen.read_frame(f.mfn)[:8] != old,
                f"frame {f.mfn:#x} still holds page {page}'s bytes from before the fork, but no "
                "process maps it: its last user copied it instead of reusing it (a leak)",
                "lesson.refcount",
            )


@check(cow_both_ways, points=5, name="tlb: nothing stale; the audit clean")
def coherent(m: Machine, plan: Plan) -> None:
    finished(m)
    root = m.process(1).user_l4
    expect(m.vcpu.user_base == root, "the parent's user L4 is not loaded")
    bad = stale(m, root)
    expect(not bad, f"stale translations at {[hex(v) for v in bad[:3]]}", "lesson.stale-tlb")
    found = m.audit()
    expect(not found, f"the audit found: {found[:3]}")
