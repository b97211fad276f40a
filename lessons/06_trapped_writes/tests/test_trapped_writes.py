"""Public tests of 06_trapped_writes: Linux's fork write-protects the parent with a plain
store into each live leaf (trapped and emulated by Xen); then both sides write."""

from __future__ import annotations

import random

from hypervisor import abi
from lessons.lab.testing import Guest, Machine, Plan, check, expect, workload

PAGE = 4096


def pages(rng: random.Random) -> Plan:
    n = rng.randint(3, 8)
    return {
        "base": rng.randrange(0x400, 0x40000) * PAGE,
        "data": [rng.randbytes(8).hex() for _ in range(n)],
        "child_page": rng.randrange(n),
        "parent_page": rng.randrange(n),
        "child_data": rng.randbytes(8).hex(),
        "parent_data": rng.randbytes(8).hex(),
    }


@workload(plan=pages)
def linux_fork(g: Guest, plan: Plan) -> None:
    """Write n pages; fork the Linux way (each writable leaf of the parent made read-only by
    a plain store into its live L1); the child writes a page, then the parent writes one."""
    k = g.boot(fork_style="linux")
    parent = k.spawn()
    base = plan["base"]
    parent.mmap(base, len(plan["data"]) * PAGE, "rw")
    for i, hexdata in enumerate(plan["data"]):
        parent.write(base + i * PAGE, bytes.fromhex(hexdata))
    child = k.fork(parent)
    child.write(base + plan["child_page"] * PAGE, bytes.fromhex(plan["child_data"]))
    parent.write(base + plan["parent_page"] * PAGE, bytes.fromhex(plan["parent_data"]))
    child.read(base, 8)


def expected(plan: Plan, who: str) -> list[bytes]:
    out = [bytes.fromhex(h) for h in plan["data"]]
    out[plan[f"{who}_page"]] = bytes.fromhex(plan[f"{who}_data"])
    return out


def trapped(m: Machine) -> list[object]:
    """The trapped writes Xen emulated (result 0)."""
    return [r for r in m.xen.trace if r.kind == "trapped_write" and r.result == 0]


def finished(m: Machine) -> None:
    expect(m.completed and 1 in m.processes and 2 in m.processes, "the workload did not finish")


@check(linux_fork, points=10, name="isolation: parent and child each read their own bytes")
def isolation(m: Machine, plan: Plan) -> None:
    finished(m)
    for pid, who in ((1, "parent"), (2, "child")):
        for i, want in enumerate(expected(plan, who)):
            va = plan["base"] + i * PAGE
            got = m.read_user(pid, va, 8)
            expect(
                got == want,
                f"process {pid} reads {got!r} at {va:#x}, not {want!r}",
                "lesson.isolation",
            )


@check(linux_fork, points=10, name="cow: every page still shared is read-only on both sides")
def shared_read_only(m: Machine, plan: Plan) -> None:
    finished(m)
    written = {plan["child_page"], plan["parent_page"]}
    for pid in (1, 2):
        for i in range(len(plan["data"])):
            leaf = m.walk(m.process(pid).user_l4, plan["base"] + i * PAGE)
            expect(leaf is not None, f"process {pid}: page {i} is not mapped")
            if i not in written and leaf is not None:
                expect(
                    not leaf & abi._PAGE_RW,
                    f"process {pid}: shared page {i} is writable",
                    "lesson.isolation",
                )


@check(linux_fork, points=10, name="trapped: the parent's leaves changed by trapped writes")
def by_trapped_writes(m: Machine, plan: Plan) -> None:
    finished(m)
    n = len(plan["data"])
    done = trapped(m)
    expect(
        len(done) >= n,
        f"{len(done)} trapped writes emulated, the fork needs {n}",
        "lesson.not-trapped",
    )


@check(linux_fork, points=5, name="audit: every count adds up")
def audit_clean(m: Machine, plan: Plan) -> None:
    finished(m)
    expect(trapped(m), "no trapped write was emulated: the fork did not write-protect anything")
    bad = m.audit()
    expect(not bad, f"the audit found: {bad[:3]}")
