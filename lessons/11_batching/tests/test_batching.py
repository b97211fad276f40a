"""Public tests of 11_batching: a fork (a lazy-MMU batch sent as one multicall), then lazy
batches with refused entries in them -- first, in the middle, two at once -- each of which
the kernel must notice and report by the entry's index."""

from __future__ import annotations

import random
import re

from hypervisor import abi
from lessons.lab.testing import Fail, Guest, Machine, Plan, check, expect, workload
from minikern import KernelPanic, kmem

PAGE = 4096


def batches(rng: random.Random) -> Plan:
    """Three batches of k entries; which ones Xen will refuse (never two side by side)."""
    plans = []
    for kind in ("first", "middle", "two"):
        k = rng.randint(4, 7)
        if kind == "first":
            bad = [0]
        elif kind == "middle":
            bad = [rng.randrange(1, k - 1)]
        else:
            bad = [rng.randrange(0, k - 2), k - 1]
        plans.append({"k": k, "bad": bad})
    return {
        "base": rng.randrange(0x400, 0x40000) * PAGE,
        "data": rng.randbytes(8).hex(),
        "batches": plans,
    }


def report(exc: KernelPanic | None) -> bytes:
    """What the workload writes after a batch: the failed entry the kernel named, how many
    failures it listed, the rule (``none`` when the kernel noticed nothing)."""
    if exc is None:
        return b"none".ljust(48)
    found = re.search(r"entry (\d+) of a multicall", str(exc))
    index = found.group(1) if found else "?"
    n = 1 + str(exc).count("also entry")
    return f"{index}:{n}:{exc.rule}".encode().ljust(48)


@workload(plan=batches)
def refused_entries(g: Guest, plan: Plan) -> None:
    """Map pages, fork (one multicall), then send each planned batch: a good entry is an
    update_va_mapping that rewrites a data frame's direct-map entry as it is; a bad one pins
    that writable data frame as an L1 (Xen refuses). Write what the kernel reported."""
    k = g.boot()
    p = k.spawn()
    base = plan["base"]
    p.mmap(base, 2 * PAGE, "rw")
    p.write(base, bytes.fromhex(plan["data"]))
    child = k.fork(p)
    child.write(base, b"child")
    p.write(base + PAGE, b"\0")  # the report page: the parent's own from here on
    km = k.km
    k.switch_to(p)
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
        p.write(base + PAGE + 64 * i, report(caught))


# -- the checks ---------------------------------------------------------------------------


def finished(m: Machine) -> None:
    expect(m.completed and {1, 2} <= set(m.processes), "the workload did not finish")


def multicalls(m: Machine) -> list[int]:
    """The number of entries of each multicall the trusted machine ran, in order."""
    out = []
    for call in m.calls:
        if call.op == "multicall" and call.depth == 0 and call.args:
            entries = call.args[0]
            out.append(len(entries) if isinstance(entries, list | tuple) else 0)
    return out


@check(refused_entries, points=10, name="fork: its batch went out whole; both sides read right")
def fork_batch(m: Machine, plan: Plan) -> None:
    finished(m)
    want = bytes.fromhex(plan["data"])
    got = m.read_user(1, plan["base"], 8)
    expect(got == want, f"the parent reads {got!r}, not {want!r}", "lesson.isolation")
    got = m.read_user(2, plan["base"], 5)
    expect(got == b"child", f"the child reads {got!r}, not b'child'", "lesson.isolation")
    bad = m.audit()
    expect(not bad, f"the audit found: {bad[:3]}")


@check(refused_entries, points=10, name="refused: every failed entry noticed, by its index")
def failures_reported(m: Machine, plan: Plan) -> None:
    finished(m)
    for i, batch in enumerate(plan["batches"]):
        got = m.read_user(1, plan["base"] + PAGE + 64 * i, 48)
        want = f"{batch['bad'][0]}:{len(batch['bad'])}:type.writable-mapped".encode().ljust(48)
        expect(got is not None, "the report page is not mapped")
        if got == b"none".ljust(48):
            raise Fail(
                f"batch {i}: Xen refused entries {batch['bad']} of {batch['k']}, and the kernel "
                "went on as if all had succeeded",
                "lesson.failure-ignored",
            )
        expect(
            got == want,
            f"batch {i}: the kernel reported {(got or b'').strip()!r}, Xen refused entries "
            f"{batch['bad']} of {batch['k']} (want {want.strip()!r})",
            "lesson.failure-ignored",
        )


@check(refused_entries, points=5, name="batched: each lazy batch was one multicall")
def one_multicall(m: Machine, plan: Plan) -> None:
    finished(m)
    sizes = multicalls(m)
    want = [batch["k"] for batch in plan["batches"]]
    rest = iter(sizes)
    expect(
        all(any(n == k for n in rest) for k in want),
        f"the batches had {want} entries; the multicalls carried {sizes}",
        "lesson.not-batched",
    )
