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

import weakref
from collections import Counter
from collections.abc import Sequence

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
WRITABLE = PageType.WRITABLE


@attrs.frozen
class Violation:
    """One broken invariant: which frame, which check, and the numbers."""

    mfn: int = attrs.field(repr=hex_repr)
    check: str
    message: str


Counts = dict[Mfn, int]


@attrs.frozen
class _Held:
    """What the entries of one table hold, read from its exact bytes: ``key``
    (its level and layout, then the bytes), the frame of every general
    reference (``held``) and type reference (``typed``) its entries take, and
    for an L1 the distinct frames it maps RW (``rw``), for an L2-L4 the
    ``(slot, target)`` of each entry (``pairs``)."""

    key: tuple[int, bool, bool, bytes]
    held: tuple[Mfn, ...]
    typed: tuple[Mfn, ...]
    rw: tuple[Mfn, ...]
    pairs: tuple[tuple[int, Mfn], ...]


_MEMO: weakref.WeakKeyDictionary[XenState, dict[Mfn, _Held]] = weakref.WeakKeyDictionary()
"""Per machine: each live table's :class:`_Held`, as of the bytes it was
read from. A table is read again whenever its bytes (or its level or layout)
differ, so the audit stays a full recount: only re-reading identical bytes
is skipped."""


def audit(xen: XenState) -> list[Violation]:
    """Every inconsistency between the stored counters and the machine's
    actual state; empty when all is well. (Cheap when all is well: one pass
    over the frame table, the references of each live table counted in C and
    remembered by the table's bytes, words only for what is wrong.)"""
    out: list[Violation] = []
    frames = xen.frames
    held: list[Mfn] = []  # one item per general reference from entries and base pointers
    typed: list[Mfn] = []
    lin: Counts = {}
    for d in xen.domains.values():
        for v in d.vcpus:
            bases = [b for b in (v.guest_table, v.guest_table_user) if b]
            held += bases
            typed += bases
    not_writable = {m: pg for m, pg in frames.items() if pg.type is not WRITABLE}
    live = [
        m for m, pg in not_writable.items() if 0 < pg.type < 5 and pg.validated and pg.type_count
    ]
    memo = _MEMO.setdefault(xen, {})
    seen: dict[Mfn, _Held] = {}
    for mfn in live:
        pg = frames[mfn]
        table = seen[mfn] = _held_by(xen, mfn, memo.get(mfn))
        held += table.held
        typed += table.typed
        if pg.type == 1:
            if not not_writable.keys().isdisjoint(table.rw):
                for target in table.rw:
                    if target in not_writable:
                        out.extend(_safety_violations(xen, mfn, target))
        else:
            _check_upper(xen, mfn, table, out, lin)
    _MEMO[xen] = seen
    gc: Counter[Mfn] = Counter(held)
    tc: Counter[Mfn] = Counter(typed)
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
    for mfn in [m for m in gc if m not in frames]:
        if gc[mfn] and not xen.is_io(mfn):
            out.append(Violation(mfn, "dangling", f"mfn {mfn:#x} is referenced but free"))
    out.extend(_tlb_violations(xen))
    return out


def _held_by(xen: XenState, mfn: Mfn, known: _Held | None) -> _Held:
    """What live table ``mfn``'s entries hold: ``known`` if it was read from
    the very same bytes (and level and layout), else read afresh."""
    pg = xen.frames[mfn]
    d = xen.domains[pg.owner]  # type: ignore[index]
    key = (int(pg.type), pg.pae_xen_l2, d.is_32bit, xen.mem.peek(mfn).tobytes())
    if known is not None and known.key == key:
        return known
    if key[0] == 1:
        return _read_l1(xen, key)
    return _read_upper(xen, mfn, key, guest_slots(key[0], pg, d))


def _read_l1(xen: XenState, key: tuple[int, bool, bool, bytes]) -> _Held:
    """A validated L1's present entries: each RAM frame it maps holds a general
    reference, and a type reference if mapped RW (I/O frames hold nothing)."""
    total = xen.total_frames
    present = [e for e in memoryview(key[3]).cast("Q") if e & _PAGE_PRESENT]
    pairs = [(e, (e & PTE_MFN_MASK) >> PAGE_SHIFT) for e in present]  # pte_mfn, inlined
    ram: list[tuple[int, Mfn]] = [(e, t) for e, t in pairs if IO_FRAMES <= t < total]  # type: ignore[misc]
    writable = tuple(t for e, t in ram if e & _PAGE_RW)
    return _Held(key, tuple(t for _e, t in ram), writable, tuple(set(writable)), ())


def _read_upper(
    xen: XenState, mfn: Mfn, key: tuple[int, bool, bool, bytes], slots: Sequence[int]
) -> _Held:
    """A validated L2-L4's present guest entries (``slots``), but those naming
    the table itself: each holds a general and a type reference."""
    words = memoryview(key[3]).cast("Q")
    present = [(slot, e) for slot, e in enumerate(words) if e & _PAGE_PRESENT]
    if len(slots) < 512:
        inside = set(slots)
        present = [(slot, e) for slot, e in present if slot in inside]
    pairs = tuple((slot, t) for slot, e in present if (t := pte_mfn(e)) != mfn)
    targets = tuple(t for _slot, t in pairs)
    return _Held(key, targets, targets, (), pairs)


def _check_upper(xen: XenState, mfn: Mfn, table: _Held, out: list[Violation], lin: Counts) -> None:
    """Check the targets of a validated L2-L4's entries: a table of the level
    below (or of its own level: a linear entry, counted in ``lin``), validated."""
    pg = xen.frames[mfn]
    level = int(pg.type)
    for slot, t in table.pairs:
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


def _safety_violations(xen: XenState, mfn: Mfn, t: Mfn) -> list[Violation]:
    """Each RW entry of L1 ``mfn`` that maps ``t``, a frame that is not writable memory."""
    name = xen.frames[t].type.name
    return [
        Violation(t, "safety", f"mfn {t:#x} is {name} yet mapped RW by L1 mfn {mfn:#x} slot {slot}")
        for slot, e in enumerate(xen.mem.peek(mfn))
        if e & (_PAGE_PRESENT | _PAGE_RW) == _PAGE_PRESENT | _PAGE_RW and pte_mfn(e) == t
    ]


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
