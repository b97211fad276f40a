"""Hidden tests of 02_readonly_l1: Mini-OS's way (every table zeroed, made read-only,
pinned and linked as it is created), several processes, an munmap and an exit."""

from __future__ import annotations

import random

from hypervisor import abi
from hypervisor.mm.frames import PageType
from lessons.lab.testing import Guest, Machine, Plan, check, expect, workload

PAGE = 4096


def spread(rng: random.Random) -> Plan:
    n = rng.randint(2, 3)
    return {
        "n": n,
        "vas": [rng.randrange(1, 1 << 24) * PAGE for _ in range(rng.randint(3, 5))],
        "gone": rng.randrange(n),
    }


@workload(plan=spread)
def minios_processes(g: Guest, plan: Plan) -> None:
    """n processes (Mini-OS strategy) each map and write pages far apart; the first page of
    each is unmapped again; one process exits."""
    k = g.boot(strategy="minios")
    procs = [k.spawn() for _ in range(plan["n"])]
    for p in procs:
        for va in plan["vas"]:
            p.mmap(va, PAGE, "rw")
            p.write(va, bytes([p.pid]) * 8)
        p.munmap(plan["vas"][0], PAGE)
    gone = procs[plan["gone"]]
    g.remember(gone)
    k.exit(gone)


def l1s_of(m: Machine, l4: int) -> list[int]:
    return [mfn for level, mfn in m.tables_below(l4) if level == 1]


def live(plan: Plan) -> list[int]:
    return [pid for pid in range(1, plan["n"] + 1) if pid != plan["gone"] + 1]


@check(minios_processes, points=10, name="pin: each live L1 is pinned, read-only in the direct map")
def live_l1s(m: Machine, plan: Plan) -> None:
    expect(m.completed and len(m.processes) == plan["n"], "the workload did not finish")
    pfns = {int(x): pfn for pfn, x in enumerate(m.domain.initial_p2m)}
    seen = 0
    for pid in live(plan):
        for mfn in l1s_of(m, m.process(pid).user_l4):
            seen += 1
            f = m.frame(mfn)
            expect(
                f.type == PageType.L1 and f.pinned,
                f"process {pid}: L1 {mfn:#x} is not a pinned L1",
                "lesson.l1-not-pinned",
            )
            va = m.domain.start_info.virt_base + pfns[mfn] * PAGE
            leaf = m.walk(m.vcpu.cr3, va, user=False)
            expect(
                leaf is not None and not leaf & abi._PAGE_RW,
                f"process {pid}: L1 {mfn:#x} is mapped writable",
                "lesson.table-writable",
            )
    expect(seen >= len(live(plan)), "the live processes have no L1 at all")


@check(minios_processes, points=10, name="user: each live process reads its own pid")
def own_pages(m: Machine, plan: Plan) -> None:
    expect(m.completed, "the workload did not finish")
    for pid in live(plan):
        for va in plan["vas"][1:]:
            got = m.read_user(pid, va, 8)
            expect(got == bytes([pid]) * 8, f"process {pid} reads {got!r} at {va:#x}")
        expect(m.read_user(pid, plan["vas"][0], 1) is None, f"process {pid}: unmapped page")


@check(minios_processes, points=5, name="audit: clean after munmap and exit")
def audit_clean(m: Machine, plan: Plan) -> None:
    expect(m.completed and len(m.processes) == plan["n"], "the workload did not finish")
    bad = m.audit()
    expect(not bad, f"the audit found: {bad[:3]}")
