"""Public tests of 02_readonly_l1: L1s grown in a live tree, and a child tree built and
pinned whole by fork."""

from __future__ import annotations

import random

from hypervisor import abi
from hypervisor.mm.frames import PageType
from lessons.lab.testing import Guest, Machine, Plan, check, expect, workload

PAGE = 4096
LEVEL_TYPE = {3: PageType.L3, 2: PageType.L2, 1: PageType.L1}


def across_two_l1s(rng: random.Random) -> Plan:
    """Pages that straddle a 2 MiB boundary (two L1s), their bytes, the child's write."""
    before = rng.randint(1, 3)
    pages = before + rng.randint(1, 3)
    return {
        "base": (rng.randrange(1, 1 << 15) << 21) - before * PAGE,
        "data": [rng.randbytes(rng.randint(1, 32)).hex() for _ in range(pages)],
        "child_page": rng.randrange(pages),
        "child_data": rng.randbytes(rng.randint(1, 32)).hex(),
    }


@workload(plan=across_two_l1s)
def grow_and_fork(g: Guest, plan: Plan) -> None:
    """Spawn; write pages across two L1s (each L1 grown in the live tree); fork (the child's
    tree filled as data, then made read-only and pinned); the child writes one page."""
    k = g.boot()
    parent = k.spawn()
    base = plan["base"]
    parent.mmap(base, len(plan["data"]) * PAGE, "rw")
    for i, hexdata in enumerate(plan["data"]):
        parent.write(base + i * PAGE, bytes.fromhex(hexdata))
    child = k.fork(parent)
    child.write(base + plan["child_page"] * PAGE, bytes.fromhex(plan["child_data"]))


# -- what the checks read off the machine ----------------------------------------------


def direct_map_entry(m: Machine, mfn: int) -> int | None:
    """The kernel's direct-map entry of frame ``mfn`` (None: not mapped)."""
    pfns = {int(x): pfn for pfn, x in enumerate(m.domain.initial_p2m)}
    if mfn not in pfns:
        return None
    va = m.domain.start_info.virt_base + pfns[mfn] * PAGE
    return m.walk(m.vcpu.cr3, va, user=False)


def finished(m: Machine, n: int) -> None:
    expect(m.completed, "the workload did not run to its end")
    expect(all(pid in m.processes for pid in range(1, n + 1)), f"expected {n} processes")


def every_l1(m: Machine) -> list[tuple[int, int]]:
    out = []
    for pid, view in sorted(m.processes.items()):
        out += [(pid, mfn) for level, mfn in m.tables_below(view.user_l4) if level == 1]
    return out


def expected(plan: Plan, child: bool) -> list[bytes]:
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


# -- the checks ---------------------------------------------------------------------------


@check(grow_and_fork, points=10, name="pin: every L1 of each process is pinned as an L1")
def l1s_pinned(m: Machine, plan: Plan) -> None:
    finished(m, 2)
    l1s = every_l1(m)
    expect(len(l1s) >= 4, f"the two processes should have 2 L1s each, found {len(l1s)}")
    for pid, mfn in l1s:
        f = m.frame(mfn)
        expect(f.type == PageType.L1, f"process {pid}: L1 {mfn:#x} is typed {f.type.name}")
        expect(f.pinned, f"process {pid}: L1 {mfn:#x} is not pinned", "lesson.l1-not-pinned")


@check(grow_and_fork, points=10, name="read-only: no table frame is mapped writable")
def tables_read_only(m: Machine, plan: Plan) -> None:
    finished(m, 2)
    for pid, view in sorted(m.processes.items()):
        tables = [(4, view.l4), (4, view.user_l4), *m.tables_below(view.user_l4)]
        for level, mfn in tables:
            f = m.frame(mfn)
            want = PageType.L4 if level == 4 else LEVEL_TYPE[level]
            expect(f.type == want, f"process {pid}: the L{level} {mfn:#x} is not typed L{level}")
            leaf = direct_map_entry(m, mfn)
            expect(leaf is not None, f"the L{level} {mfn:#x} is not in the direct map")
            expect(
                leaf is not None and not leaf & abi._PAGE_RW,
                f"process {pid}: the L{level} {mfn:#x} is mapped writable in the direct map",
                "lesson.table-writable",
            )


@check(grow_and_fork, points=10, name="user: each process reads exactly what it wrote")
def reads_back(m: Machine, plan: Plan) -> None:
    finished(m, 2)
    for pid, is_child in ((1, False), (2, True)):
        for i, want in enumerate(expected(plan, is_child)):
            va = plan["base"] + i * PAGE
            got = m.read_user(pid, va, len(want))
            expect(got is not None, f"process {pid}: {va:#x} is not mapped for user code")
            expect(got == want, f"process {pid} reads {got!r} at {va:#x}, not {want!r}")


@check(grow_and_fork, points=5, name="audit: every count on the machine adds up")
def audit_clean(m: Machine, plan: Plan) -> None:
    finished(m, 2)
    bad = m.audit()
    expect(not bad, f"the audit found: {bad[:3]}")
