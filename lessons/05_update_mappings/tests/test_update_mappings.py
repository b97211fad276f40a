"""Public tests of 05_update_mappings: demand faults, munmap, a page mapped again, and
mprotect -- each a batch of leaf updates and the flush it needs."""

from __future__ import annotations

import random

from hypervisor import abi
from lessons.lab.testing import Guest, Machine, Plan, check, expect, workload

PAGE = 4096


def remap(rng: random.Random) -> Plan:
    """A run of pages, what each holds, one page unmapped and mapped again, a range made
    read-only."""
    pages = rng.randint(3, 6)
    ro = rng.randrange(pages)
    return {
        "base": rng.randrange(0x400, 0x40000) * PAGE,
        "data": [rng.randbytes(rng.randint(1, 32)).hex() for _ in range(pages)],
        "again": rng.randrange(pages),
        "new": rng.randbytes(rng.randint(1, 32)).hex(),
        "ro": [ro, rng.randint(ro + 1, pages)],
    }


@workload(plan=remap)
def munmap_and_again(g: Guest, plan: Plan) -> None:
    """Map and write a run of pages and read them (the TLB caches each); munmap one page,
    map it again and write new bytes there; make a range read-only; read everything."""
    k = g.boot()
    p = k.spawn()
    base, n = plan["base"], len(plan["data"])
    p.mmap(base, n * PAGE, "rw")
    for i, hexdata in enumerate(plan["data"]):
        p.write(base + i * PAGE, bytes.fromhex(hexdata))
    p.read(base, n * PAGE)
    again = base + plan["again"] * PAGE
    p.munmap(again, PAGE)
    p.mmap(again, PAGE, "rw")
    p.write(again, bytes.fromhex(plan["new"]))
    lo, hi = plan["ro"]
    p.mprotect(base + lo * PAGE, (hi - lo) * PAGE, "r")
    p.read(base, n * PAGE)


# -- reading the machine ------------------------------------------------------------------


def expected(plan: Plan) -> list[bytes]:
    pages = []
    for i, hexdata in enumerate(plan["data"]):
        data = bytes.fromhex(plan["new"] if i == plan["again"] else hexdata)
        pages.append(data + bytes(32 - len(data)))
    return pages


def stale(m: Machine, root: int) -> list[str]:
    """The translations the trusted CPU caches under ``root`` that the page tables no longer
    grant: another frame, or write access the leaf no longer gives."""
    out = []
    for (top, vpn), e in sorted(m.vcpu._v.mmu.tlb.entries.items()):
        if top != root:
            continue
        leaf = m.walk(root, vpn << 12, user=False)
        if leaf is None:
            out.append(f"{vpn << 12:#x} cached as mfn {e.mfn:#x}, the tables map nothing there")
        elif abi.pte_mfn(leaf) != e.mfn:
            now = abi.pte_mfn(leaf)
            out.append(f"{vpn << 12:#x} cached as mfn {e.mfn:#x}, the tables say {now:#x}")
        elif e.writable and not leaf & abi._PAGE_RW:
            out.append(f"{vpn << 12:#x} cached writable, the leaf is read-only")
    return out


def finished(m: Machine) -> None:
    expect(m.completed and 1 in m.processes, "the workload did not run to its end")


# -- the checks ---------------------------------------------------------------------------


@check(munmap_and_again, points=10, name="user: the page mapped again holds the new bytes")
def new_bytes(m: Machine, plan: Plan) -> None:
    finished(m)
    for i, want in enumerate(expected(plan)):
        va = plan["base"] + i * PAGE
        got = m.read_user(1, va, len(want))
        expect(got is not None, f"{va:#x} is not mapped in the page tables", "lesson.stale-tlb")
        expect(
            got == want,
            f"the tables map {va:#x} to a page holding {got!r}, not {want!r}",
            "lesson.stale-tlb",
        )


@check(munmap_and_again, points=10, name="tlb: no translation the CPU caches is stale")
def tlb_coherent(m: Machine, plan: Plan) -> None:
    finished(m)
    root = m.process(1).user_l4
    expect(m.vcpu.user_base == root, "the process's user L4 is not loaded")
    expect(m.vcpu._v.mmu.tlb.entries, "the CPU caches no translation at all")
    bad = stale(m, root)
    expect(not bad, f"stale translations: {'; '.join(bad[:3])}", "lesson.stale-tlb")


@check(munmap_and_again, points=5, name="mprotect: the read-only range is read-only")
def read_only_range(m: Machine, plan: Plan) -> None:
    finished(m)
    root = m.process(1).user_l4
    for i in range(len(plan["data"])):
        leaf = m.walk(root, plan["base"] + i * PAGE)
        expect(leaf is not None, f"page {i} is not mapped")
        rw = bool(leaf and leaf & abi._PAGE_RW)
        lo, hi = plan["ro"]
        expect(rw != (lo <= i < hi), f"page {i} is {'writable' if rw else 'read-only'}")


@check(munmap_and_again, points=5, name="audit: every count adds up, nothing leaked")
def audit_clean(m: Machine, plan: Plan) -> None:
    finished(m)
    bad = m.audit()
    expect(not bad, f"the audit found: {bad[:3]}")
