"""Hidden tests of 05_update_mappings: ranges beyond the INVLPG ceiling (one full flush),
mprotect back and forth, a write after each change."""

from __future__ import annotations

import random

from hypervisor import abi
from lessons.lab.testing import Guest, Machine, Plan, check, expect, workload

PAGE = 4096


def big(rng: random.Random) -> Plan:
    return {
        "base": rng.randrange(0x400, 0x40000) * PAGE,
        "pages": rng.randint(36, 44),
        "marks": [rng.randrange(1, 256) for _ in range(2)],
    }


@workload(plan=big)
def over_the_ceiling(g: Guest, plan: Plan) -> None:
    """Map and touch every page of a big range; make it read-only and writable again; unmap
    all of it but its last page (so its L1 stays) and map it again; write a second mark on
    every page."""
    k = g.boot()
    p = k.spawn()
    base, n = plan["base"], plan["pages"]
    p.mmap(base, (n + 1) * PAGE, "rw", populate=True)
    for i in range(n):
        p.write(base + i * PAGE, bytes([plan["marks"][0]]) * 4)
    p.mprotect(base, n * PAGE, "r")
    p.read(base, n * PAGE)
    p.mprotect(base, n * PAGE, "rw")
    p.munmap(base, n * PAGE)
    p.mmap(base, n * PAGE, "rw")
    for i in range(n):
        p.write(base + i * PAGE, bytes([plan["marks"][1]]) * 4)


def stale(m: Machine, root: int) -> list[int]:
    out = []
    for (top, vpn), e in m.vcpu._v.mmu.tlb.entries.items():
        if top == root:
            leaf = m.walk(root, vpn << 12, user=False)
            if leaf is None or abi.pte_mfn(leaf) != e.mfn or (e.writable and not leaf & 2):
                out.append(vpn << 12)
    return sorted(out)


@check(over_the_ceiling, points=10, name="user: every page of the new range holds the mark")
def second_mark(m: Machine, plan: Plan) -> None:
    expect(m.completed and 1 in m.processes, "the workload did not finish")
    for i in range(plan["pages"]):
        va = plan["base"] + i * PAGE
        got = m.read_user(1, va, 4)
        want = bytes([plan["marks"][1]]) * 4
        expect(got == want, f"the tables map {va:#x} to {got!r}, not {want!r}", "lesson.stale-tlb")


@check(over_the_ceiling, points=10, name="tlb: nothing stale after a full-range munmap")
def coherent(m: Machine, plan: Plan) -> None:
    expect(m.completed and 1 in m.processes, "the workload did not finish")
    root = m.process(1).user_l4
    expect(m.vcpu._v.mmu.tlb.entries, "the CPU caches no translation at all")
    bad = stale(m, root)
    expect(not bad, f"{len(bad)} stale translations, first {bad[:1]}", "lesson.stale-tlb")


@check(over_the_ceiling, points=5, name="audit: clean, the first range's frames all freed")
def audit_clean(m: Machine, plan: Plan) -> None:
    expect(m.completed and 1 in m.processes, "the workload did not finish")
    bad = m.audit()
    expect(not bad, f"the audit found: {bad[:3]}")
