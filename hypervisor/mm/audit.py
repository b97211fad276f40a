"""The audit: recompute every count from first principles and check the
safety invariant (spec sections 2.2 and 6).

Expected general count of a frame = its allocation + Xen-heap sharing + its
pin + every base pointer naming it + every present entry of a validated table
pointing at it. Expected type count = the same minus the allocation and minus
read-only L1 mappings. The invariant: no RW L1 entry of any validated L1 maps
a frame in use as a page table or descriptor page, and no TLB entry still
grants write access to one.
"""

from __future__ import annotations

from collections import Counter

import attrs

from hypervisor.abi import (
    _PAGE_PRESENT,
    _PAGE_RW,
    DOMID_IO,
    PAGE_SHIFT,
    PTE_MFN_MASK,
    Mfn,
    pte_mfn,
)
from hypervisor.mm.frames import PageType
from hypervisor.mm.state import IO_FRAMES, XenState
from hypervisor.mm.upper import guest_slots

__all__ = ["Violation", "audit"]

_LOWER = {2: PageType.L1, 3: PageType.L2, 4: PageType.L3}


@attrs.frozen
class Violation:
    """One broken invariant: which frame, which check, and the numbers."""

    mfn: int
    check: str
    message: str


def audit(xen: XenState) -> list[Violation]:
    """Every inconsistency between the stored counters and the machine's
    actual state; empty when all is well."""
    out: list[Violation] = []
    gc: Counter[Mfn] = Counter()
    tc: Counter[Mfn] = Counter()
    lin: Counter[Mfn] = Counter()
    frames = xen.frames
    for mfn, pg in frames.items():
        gc[mfn] += pg.allocated + pg.xen_heap + pg.pinned
        tc[mfn] += pg.xen_heap + pg.pinned
    for d in xen.domains.values():
        for v in d.vcpus:
            for base in (v.guest_table, v.guest_table_user):
                if base:
                    gc[base] += 1
                    tc[base] += 1
    for mfn, pg in list(frames.items()):
        if pg.type.is_pagetable and pg.validated and pg.type_count:
            _count_entries(xen, mfn, out, gc, tc, lin)
    for mfn, pg in frames.items():
        if pg.owner == DOMID_IO and mfn < IO_FRAMES:
            continue
        where = f"mfn {mfn:#x} ({pg.type.name})"
        if pg.count != gc[mfn]:
            out.append(
                Violation(mfn, "general-count", f"{where}: count {pg.count}, expected {gc[mfn]}")
            )
        if pg.type_count != tc[mfn]:
            out.append(
                Violation(
                    mfn, "type-count", f"{where}: type count {pg.type_count}, expected {tc[mfn]}"
                )
            )
        if xen.config.linear_single_level and pg.linear != lin[mfn]:
            out.append(
                Violation(mfn, "linear-count", f"{where}: linear {pg.linear}, expected {lin[mfn]}")
            )
        if pg.type.is_pagetable and bool(pg.type_count) != pg.validated:
            out.append(
                Violation(
                    mfn,
                    "validated",
                    f"{where}: validated={pg.validated} with type count {pg.type_count}",
                )
            )
        if pg.pinned and not pg.type_count:
            out.append(Violation(mfn, "pinned", f"{where}: pinned with type count 0"))
        if pg.count == 0:
            out.append(Violation(mfn, "leak", f"{where}: count 0 but not freed"))
    for mfn in gc.keys() - frames.keys():
        if gc[mfn] and not xen.is_io(mfn):
            out.append(Violation(mfn, "dangling", f"mfn {mfn:#x} is referenced but free"))
    out.extend(_tlb_violations(xen))
    return out


def _count_entries(
    xen: XenState,
    mfn: Mfn,
    out: list[Violation],
    gc: Counter[Mfn],
    tc: Counter[Mfn],
    lin: Counter[Mfn],
) -> None:
    pg = xen.frames[mfn]
    words = xen.mem.peek(mfn)
    level = int(pg.type)
    if level == 1:
        for slot in range(512):
            e = words[slot]
            t: Mfn = (e & PTE_MFN_MASK) >> PAGE_SHIFT  # type: ignore[assignment] # pte_mfn
            if not e & _PAGE_PRESENT or xen.is_io(t):
                continue
            gc[t] += 1
            if e & _PAGE_RW:
                tc[t] += 1
                tpg = xen.frames.get(t)
                if tpg is not None and tpg.type is not PageType.WRITABLE:
                    out.append(
                        Violation(
                            t,
                            "safety",
                            f"mfn {t:#x} is {tpg.type.name} yet mapped RW "
                            f"by L1 mfn {mfn:#x} slot {slot}",
                        )
                    )
        return
    d = xen.domains[pg.owner]  # type: ignore[index]
    for slot in guest_slots(level, pg, d):
        e = words[slot]
        t = pte_mfn(e)
        if not e & _PAGE_PRESENT or t == mfn:
            continue
        gc[t] += 1
        tc[t] += 1
        tpg = xen.frames.get(t)
        if tpg is None:
            continue
        if tpg.type is pg.type:
            lin[mfn] += 1
            lin[t] -= 1
        elif tpg.type is not _LOWER[level]:
            out.append(
                Violation(
                    t,
                    "entry-type",
                    f"L{level} mfn {mfn:#x} slot {slot} points at a {tpg.type.name}",
                )
            )
        if not tpg.validated:
            out.append(
                Violation(
                    t,
                    "entry-validated",
                    f"L{level} mfn {mfn:#x} slot {slot} points at an unvalidated table",
                )
            )


def _tlb_violations(xen: XenState) -> list[Violation]:
    out = []
    for d in xen.domains.values():
        for v in d.vcpus:
            for (_root, vpn), entry in v.mmu.tlb.entries.items():
                if not entry.writable:
                    continue
                tpg = xen.frames.get(entry.mfn)
                if (
                    tpg is not None
                    and tpg.type_count
                    and tpg.type
                    not in (
                        PageType.WRITABLE,
                        PageType.NONE,
                    )
                ):
                    out.append(
                        Violation(
                            entry.mfn,
                            "stale-writable-tlb",
                            f"d{d.domid} vCPU{v.vcpu_id} still caches a writable translation "
                            f"of va page {vpn:#x} to {tpg.type.name} mfn {entry.mfn:#x}",
                        )
                    )
    return out
