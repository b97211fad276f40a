"""Hidden tests of 11_batching: longer batches with refused entries anywhere (two or
three of them), then ordinary work that must still go through whole."""

from __future__ import annotations

import random
import re

from hypervisor import abi
from lessons.lab.testing import Guest, Machine, Plan, check, expect, workload
from minikern import KernelPanic, kmem

PAGE = 4096


def spread(rng: random.Random) -> Plan:
    plans = []
    for _ in range(3):
        k = rng.randint(8, 14)
        bad: list[int] = []
        for j in rng.sample(range(k), k):
            if len(bad) < rng.randint(2, 3) and all(abs(j - b) > 1 for b in bad):
                bad.append(j)
        plans.append({"k": k, "bad": sorted(bad)})
    return {
        "base": rng.randrange(0x400, 0x40000) * PAGE,
        "pages": rng.randint(3, 6),
        "batches": plans,
    }


def report(exc: KernelPanic | None) -> bytes:
    if exc is None:
        return b"none".ljust(48)
    found = re.search(r"entry (\d+) of a multicall", str(exc))
    n = 1 + str(exc).count("also entry")
    return f"{found.group(1) if found else '?'}:{n}:{exc.rule}".encode().ljust(48)


@workload(plan=spread)
def random_refusals(g: Guest, plan: Plan) -> None:
    """Planned batches with refused entries; after each, the kernel's report is written;
    then a fork and a write in the child."""
    k = g.boot()
    p = k.spawn()
    base, n = plan["base"], plan["pages"]
    p.mmap(base, (n + 1) * PAGE, "rw")
    for i in range(n + 1):
        p.write(base + i * PAGE, bytes([i + 1]) * 4)
    km = k.km
    pfn = p.mm.ptes[base >> 12]
    good = kmem.pfn_pte(km, pfn, kmem.KERNEL_PROT)
    for i, batch in enumerate(plan["batches"]):
        caught: KernelPanic | None = None
        try:
            with km.hc.lazy():
                for j in range(batch["k"]):
                    if j in batch["bad"]:
                        km.hc.ext(abi.MMUEXT_PIN_L1_TABLE, kmem.pfn_to_mfn(km, pfn))
                    else:
                        km.hc.uvm(km.va(pfn), good, abi.UVMF_NONE)
        except KernelPanic as exc:
            caught = exc
        p.write(base + n * PAGE + 64 * i, report(caught))
    child = k.fork(p)
    child.write(base, b"child")


def finished(m: Machine) -> None:
    expect(m.completed and {1, 2} <= set(m.processes), "the workload did not finish")


@check(random_refusals, points=10, name="refused: every failed entry noticed and counted")
def reported(m: Machine, plan: Plan) -> None:
    finished(m)
    n = plan["pages"]
    for i, batch in enumerate(plan["batches"]):
        got = m.read_user(1, plan["base"] + n * PAGE + 64 * i, 48)
        want = f"{batch['bad'][0]}:{len(batch['bad'])}:type.writable-mapped".encode().ljust(48)
        expect(
            got == want,
            f"batch {i}: the kernel reported {(got or b'').strip()!r}, Xen refused entries "
            f"{batch['bad']} of {batch['k']}",
            "lesson.failure-ignored",
        )


@check(random_refusals, points=5, name="after: the fork still works, the audit is clean")
def still_works(m: Machine, plan: Plan) -> None:
    finished(m)
    expect(m.read_user(2, plan["base"], 5) == b"child", "the child does not read its write")
    expect(m.read_user(1, plan["base"], 4) == b"\x01" * 4, "the parent lost its page")
    bad = m.audit()
    expect(not bad, f"the audit found: {bad[:3]}")
