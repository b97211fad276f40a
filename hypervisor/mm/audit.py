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
    hex_repr,
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

    mfn: int = attrs.field(repr=hex_repr)
    check: str
    message: str


Counts = dict[Mfn, int]


def audit(xen: XenState) -> list[Violation]:
    """Every inconsistency between the stored counters and the machine's
    actual state; empty when all is well. (Cheap when all is well: one pass
    over the frame table and the validated tables; words only for what is
    wrong.)"""
    out: list[Violation] = []
    frames = xen.frames
    gc: Counter[Mfn] = Counter()  # references from entries and base pointers
    tc: Counter[Mfn] = Counter()
    lin: Counts = {}
    for d in xen.domains.values():
        for v in d.vcpus:
            bases = [b for b in (v.guest_table, v.guest_table_user) if b]
            gc.update(bases)
            tc.update(bases)
    live = [m for m, pg in frames.items() if 0 < pg.type < 5 and pg.validated and pg.type_count]
    for mfn in live:
        if frames[mfn].type == 1:
            _count_l1(xen, mfn, out, gc, tc)
        else:
            _count_upper(xen, mfn, out, gc, tc, lin)
    check_linear = xen.config.linear_single_level
    gget, tget, lget = gc.get, tc.get, lin.get
    suspects = [
        mfn
        for mfn, pg in frames.items()
        if pg.count != pg.allocated + pg.xen_heap + pg.pinned + gget(mfn, 0)
        or pg.type_count != pg.xen_heap + pg.pinned + tget(mfn, 0)
        or (check_linear and pg.linear != lget(mfn, 0))
        or (0 < pg.type < 5 and bool(pg.type_count) != pg.validated)
        or (pg.pinned and not pg.type_count)
        or pg.count == 0
    ]
    for mfn in suspects:
        pg = frames[mfn]
        if pg.owner == DOMID_IO and mfn < IO_FRAMES:
            continue
        g = pg.allocated + pg.xen_heap + pg.pinned + gget(mfn, 0)
        t = pg.xen_heap + pg.pinned + tget(mfn, 0)
        out.extend(_frame_violations(xen, mfn, g, t, lget(mfn, 0)))
    for mfn in gc.keys() - frames.keys():
        if gc[mfn] and not xen.is_io(mfn):
            out.append(Violation(mfn, "dangling", f"mfn {mfn:#x} is referenced but free"))
    out.extend(_tlb_violations(xen))
    return out


def _frame_violations(xen: XenState, mfn: Mfn, g: int, t: int, lin: int) -> list[Violation]:
    """What is wrong with one frame's counters, in words."""
    pg = xen.frames[mfn]
    where = f"mfn {mfn:#x} ({pg.type.name})"
    out = []
    if pg.count != g:
        out.append(Violation(mfn, "general-count", f"{where}: count {pg.count}, expected {g}"))
    if pg.type_count != t:
        out.append(
            Violation(mfn, "type-count", f"{where}: type count {pg.type_count}, expected {t}")
        )
    if xen.config.linear_single_level and pg.linear != lin:
        out.append(Violation(mfn, "linear-count", f"{where}: linear {pg.linear}, expected {lin}"))
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
    return out


def _count_l1(
    xen: XenState, mfn: Mfn, out: list[Violation], gc: Counter[Mfn], tc: Counter[Mfn]
) -> None:
    """Count what a validated L1's present entries hold (I/O frames hold
    nothing); an RW entry must map writable memory."""
    total = xen.total_frames
    present = [e for e in xen.mem.peek(mfn) if e & _PAGE_PRESENT]
    pairs = [(e, (e & PTE_MFN_MASK) >> PAGE_SHIFT) for e in present]  # pte_mfn, inlined
    ram: list[tuple[int, Mfn]] = [(e, t) for e, t in pairs if IO_FRAMES <= t < total]  # type: ignore[misc]
    gc.update(t for _e, t in ram)
    writable = [t for e, t in ram if e & _PAGE_RW]
    tc.update(writable)
    frames = xen.frames
    for t in set(writable):
        tpg = frames.get(t)
        if tpg is not None and tpg.type is not PageType.WRITABLE:
            out.extend(_safety_violations(xen, mfn, t))


def _safety_violations(xen: XenState, mfn: Mfn, t: Mfn) -> list[Violation]:
    """Each RW entry of L1 ``mfn`` that maps ``t``, a frame that is not writable memory."""
    name = xen.frames[t].type.name
    return [
        Violation(t, "safety", f"mfn {t:#x} is {name} yet mapped RW by L1 mfn {mfn:#x} slot {slot}")
        for slot, e in enumerate(xen.mem.peek(mfn))
        if e & (_PAGE_PRESENT | _PAGE_RW) == _PAGE_PRESENT | _PAGE_RW and pte_mfn(e) == t
    ]


def _count_upper(
    xen: XenState,
    mfn: Mfn,
    out: list[Violation],
    gc: Counter[Mfn],
    tc: Counter[Mfn],
    lin: Counts,
) -> None:
    """Count what a validated L2-L4's guest entries hold, and check their targets."""
    pg = xen.frames[mfn]
    words = xen.mem.peek(mfn)
    level = int(pg.type)
    d = xen.domains[pg.owner]  # type: ignore[index]
    slots = guest_slots(level, pg, d)
    present = [(slot, e) for slot, e in enumerate(words) if e & _PAGE_PRESENT]
    if len(slots) < 512:
        present = [(slot, e) for slot, e in present if slot in slots]
    for slot, e in present:
        t = pte_mfn(e)
        if t == mfn:
            continue
        gc[t] += 1
        tc[t] += 1
        tpg = xen.frames.get(t)
        if tpg is None:
            continue
        if tpg.type is pg.type:
            lin[mfn] = lin.get(mfn, 0) + 1
            lin[t] = lin.get(t, 0) - 1
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
