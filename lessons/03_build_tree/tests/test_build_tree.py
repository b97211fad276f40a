"""Public tests of 03_build_tree: fork builds each child's whole tree as plain data, then
makes it read-only and pins it; a child exits and a second child reuses its frames."""

from __future__ import annotations

import random

from hypervisor import abi
from hypervisor.mm.frames import PageType
from lessons.lab.testing import Guest, Machine, Plan, check, expect, workload

PAGE = 4096
TYPE = {4: PageType.L4, 3: PageType.L3, 2: PageType.L2, 1: PageType.L1}


def scattered(rng: random.Random) -> Plan:
    """Pages under different L3s, L2s and L1s; what each holds; what the children write."""
    vas = sorted(
        {
            (rng.randrange(0, 255) << 39) | (rng.randrange(512) << 30) | (rng.randrange(512) << 21)
            for _ in range(rng.randint(2, 4))
        }
    )
    vas += [vas[0] + PAGE * rng.randint(1, 5)]
    return {
        "vas": vas,
        "data": [rng.randbytes(rng.randint(1, 24)).hex() for _ in vas],
        "writes": [rng.randrange(len(vas)) for _ in range(2)],
        "child_data": [rng.randbytes(8).hex() for _ in range(2)],
    }


@workload(plan=scattered)
def fork_twice(g: Guest, plan: Plan) -> None:
    """The parent maps and writes its pages; a child writes one and exits; a second child
    (built in the frames the first one freed) writes another."""
    k = g.boot()
    parent = k.spawn()
    for va, hexdata in zip(plan["vas"], plan["data"], strict=True):
        parent.mmap(va, PAGE, "rw")
        parent.write(va, bytes.fromhex(hexdata))
    for i in range(2):
        child = k.fork(parent)
        child.write(plan["vas"][plan["writes"][i]], bytes.fromhex(plan["child_data"][i]))
        if i == 0:
            g.remember(child)
            k.exit(child)
    parent.read(plan["vas"][0], 1)


# -- reading the machine ------------------------------------------------------------------


def direct_map_entry(m: Machine, mfn: int) -> int | None:
    pfns = {int(x): pfn for pfn, x in enumerate(m.domain.initial_p2m)}
    if mfn not in pfns:
        return None
    return m.walk(m.vcpu.cr3, m.domain.start_info.virt_base + pfns[mfn] * PAGE, user=False)


def finished(m: Machine) -> None:
    expect(m.completed, "the workload did not run to its end")
    expect(1 in m.processes and 3 in m.processes, "the parent and the second child must be there")


def expected(plan: Plan, child: int | None) -> list[bytes]:
    pages = []
    for i, hexdata in enumerate(plan["data"]):
        page = bytearray(32)
        data = bytes.fromhex(hexdata)
        page[: len(data)] = data
        if child is not None and plan["writes"][child] == i:
            over = bytes.fromhex(plan["child_data"][child])
            page[: len(over)] = over
        pages.append(bytes(page))
    return pages


# -- the checks ---------------------------------------------------------------------------


@check(fork_twice, points=10, name="tree: every table is typed for its level and read-only")
def tree_typed_read_only(m: Machine, plan: Plan) -> None:
    finished(m)
    for pid in (1, 3):
        view = m.process(pid)
        tables = [(4, view.l4), (4, view.user_l4), *m.tables_below(view.user_l4)]
        expect(len(tables) >= 2 + 3 * 2, f"process {pid}'s tree is missing tables")
        for level, mfn in tables:
            f = m.frame(mfn)
            expect(f.type == TYPE[level], f"process {pid}: L{level} {mfn:#x} is {f.type.name}")
            leaf = direct_map_entry(m, mfn)
            expect(
                leaf is not None and not leaf & abi._PAGE_RW,
                f"process {pid}: L{level} {mfn:#x} is mapped writable in the direct map",
                "lesson.table-writable",
            )


@check(fork_twice, points=5, name="tree: every L1 is pinned, as Linux pins them")
def l1s_pinned(m: Machine, plan: Plan) -> None:
    finished(m)
    for pid in (1, 3):
        l1s = [mfn for lv, mfn in m.tables_below(m.process(pid).user_l4) if lv == 1]
        expect(l1s, f"process {pid} has no L1")
        for mfn in l1s:
            expect(
                m.frame(mfn).pinned,
                f"process {pid}: L1 {mfn:#x} is not pinned",
                "lesson.l1-not-pinned",
            )


@check(fork_twice, points=10, name="user: the parent and the child read their own bytes")
def reads_back(m: Machine, plan: Plan) -> None:
    finished(m)
    for pid, child in ((1, None), (3, 1)):
        for va, want in zip(plan["vas"], expected(plan, child), strict=True):
            got = m.read_user(pid, va, len(want))
            expect(got is not None, f"process {pid}: {va:#x} is not mapped for user code")
            expect(got == want, f"process {pid} reads {got!r} at {va:#x}, not {want!r}")


@check(fork_twice, points=5, name="exit: the first child's L4s are no table of anyone now")
def exited_released(m: Machine, plan: Plan) -> None:
    finished(m)
    live: set[int] = set()
    for pid in (1, 3):
        view = m.process(pid)
        live |= {view.l4, view.user_l4} | {mfn for _lv, mfn in m.tables_below(view.user_l4)}
    gone = m.process(2)
    for mfn in (gone.l4, gone.user_l4):
        f = m.frame(mfn)
        expect(
            mfn in live or not (f.type.is_pagetable and f.type_count),
            f"frame {mfn:#x} of the exited child is still a live {f.type.name}",
        )
    bad = m.audit()
    expect(not bad, f"the audit found: {bad[:3]}")
