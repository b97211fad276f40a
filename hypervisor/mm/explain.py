"""Words for refusals: whose a frame is, what holds its type references, which
flags an entry carries, and hints for the classic confusions.

Only the error paths call these, so they may scan the frame table: a refusal
should say *what* holds a frame ("vCPU 0's kernel base pointer", "L2 mfn 0x181
slot 3"), not only how many references there are. The words follow Xen's
console messages (``gdprintk`` in mm.c), in plain English.
"""

from __future__ import annotations

from hypervisor import rules
from hypervisor.abi import (
    _PAGE_ACCESSED,
    _PAGE_DIRTY,
    _PAGE_GLOBAL,
    _PAGE_NX,
    _PAGE_PCD,
    _PAGE_PRESENT,
    _PAGE_PSE,
    _PAGE_PWT,
    _PAGE_RW,
    _PAGE_USER,
    DOMID_IO,
    DOMID_XEN,
    Mfn,
    pte_mfn,
)
from hypervisor.errors import GuestError
from hypervisor.mm.frames import PageInfo, PageType
from hypervisor.mm.state import IO_FRAMES, XenState

__all__ = [
    "JUNK_MIN_PRESENT",
    "domain_name",
    "flag_names",
    "frame_owner",
    "held_by",
    "holders",
    "looks_like_junk",
    "not_owned",
    "note_validation_failure",
    "type_name",
]

_TYPE_NAMES = {
    PageType.NONE: "untyped",
    PageType.L1: "an L1 table",
    PageType.L2: "an L2 table",
    PageType.L3: "an L3 table",
    PageType.L4: "an L4 table",
    PageType.SEG_DESC: "a descriptor page",
    PageType.SHARED: "a shared page",
    PageType.WRITABLE: "writable memory",
}
_FLAGS = (
    (_PAGE_PRESENT, "P"),
    (_PAGE_RW, "RW"),
    (_PAGE_USER, "US"),
    (_PAGE_PWT, "PWT"),
    (_PAGE_PCD, "PCD"),
    (_PAGE_ACCESSED, "A"),
    (_PAGE_DIRTY, "D"),
    (_PAGE_PSE, "PSE/PAT"),
    (_PAGE_GLOBAL, "G"),
    (_PAGE_NX, "NX"),
)
_LISTED = 4
"""How many holders a message names before "and N more"."""
JUNK_MIN_PRESENT = 16
"""A table with at least this many present entries, one of them refused for
its flags or for naming a frame beyond memory, looks like it was never zeroed."""


def type_name(pg: PageInfo) -> str:
    """``"an L2 table"``, ``"writable memory"``, ``"untyped"``..."""
    extra = " (PAE Xen L2)" if pg.pae_xen_l2 else ""
    return f"{_TYPE_NAMES[pg.type]}{extra}"


def domain_name(domid: int | None) -> str:
    """``d1``, ``DOMID_IO``, ``Xen`` or ``nobody``."""
    if domid is None:
        return "nobody"
    if domid == DOMID_IO:
        return "DOMID_IO"
    if domid == DOMID_XEN:
        return "Xen"
    if domid >= 0x7FF0:
        return f"DOMID {domid:#x}"
    return f"d{domid}"


def frame_owner(xen: XenState, mfn: Mfn) -> str:
    """Whose frame ``mfn`` is, as a clause: ``"mfn 0x244 belongs to d2"``,
    ``"... is free"``, ``"... is I/O memory"`` or ``"... lies beyond memory"``."""
    if not 0 <= mfn < xen.total_frames:
        return f"mfn {mfn:#x} lies beyond the machine's memory ({xen.total_frames:#x} frames)"
    if mfn < IO_FRAMES:
        return f"mfn {mfn:#x} is I/O memory (the first MiB belongs to DOMID_IO)"
    pg = xen.frames.get(mfn)
    if pg is None or not pg.count:
        return f"mfn {mfn:#x} is free (nobody owns it)"
    return f"mfn {mfn:#x} belongs to {domain_name(pg.owner)}"


def not_owned(xen: XenState, mfn: Mfn, domid: int) -> str:
    """Why ``mfn`` is not ``domid``'s: ``"mfn 0x244 belongs to d2, not to d1"``,
    ``"mfn 0x3ff is free (nobody owns it)"``..."""
    text = frame_owner(xen, mfn)
    return f"{text}, not to d{domid}" if " belongs to " in text else text


def flag_names(bits: int) -> str:
    """``"0x18 (PWT|PCD)"``: the bits in hex, then the names of the known ones."""
    names = [name for bit, name in _FLAGS if bits & bit]
    if bits & (0x7FF << 52):
        names.append("bits 52-62")
    if bits & 0xE00:
        names.append("AVAIL")
    return f"{bits:#x} ({'|'.join(names)})" if names else f"{bits:#x}"


def holders(xen: XenState, mfn: Mfn, pg: PageInfo) -> list[str]:
    """What holds the type references of ``mfn``, in words: its pin, base
    pointers, the entries of validated tables pointing at it (parents and
    linear entries), its writable mappings, Xen itself."""
    out: list[str] = []
    if pg.pinned:
        out.append("its pin")
    for d in xen.domains.values():
        who = "" if d.domid == pg.owner else f"d{d.domid} "
        for v in d.vcpus:
            if v.guest_table == mfn:
                out.append(f"{who}vCPU {v.vcpu_id}'s kernel base pointer")
            if v.guest_table_user == mfn:
                out.append(f"{who}vCPU {v.vcpu_id}'s user base pointer")
    if pg.type.is_pagetable:
        out += _entries_to(xen, mfn, {PageType(int(pg.type) + 1), pg.type}, rw_only=False)
    elif pg.type is PageType.WRITABLE:
        if pg.xen_heap:
            out.append("Xen (a Xen-heap page)")
        out += [f"writable mapping {e}" for e in _entries_to(xen, mfn, {PageType.L1}, True)]
    return out


def _entries_to(xen: XenState, mfn: Mfn, levels: set[PageType], rw_only: bool) -> list[str]:
    """``"L2 mfn 0x181 slot 3"`` for every present entry of a validated table
    of one of ``levels`` that points at ``mfn`` (self-links aside)."""
    found = []
    want = _PAGE_PRESENT | _PAGE_RW if rw_only else _PAGE_PRESENT
    for t_mfn, t_pg in xen.frames.items():
        if t_pg.type not in levels or not t_pg.validated or not t_pg.type_count or t_mfn == mfn:
            continue
        words = xen.mem.peek(t_mfn)
        for slot in range(512):
            e = words[slot]
            if e & want == want and pte_mfn(e) == mfn:
                found.append(f"L{int(t_pg.type)} mfn {t_mfn:#x} slot {slot}")
    return found


def held_by(xen: XenState, mfn: Mfn, pg: PageInfo) -> str:
    """``"an L4 table held by its pin and vCPU 0's kernel base pointer (type
    count 2)"``: the frame's type and what holds it."""
    what = type_name(pg)
    if not pg.type_count:
        return f"{what} with type count 0"
    found = holders(xen, mfn, pg)
    if not found:
        return f"{what} (type count {pg.type_count})"
    listed = found[:_LISTED]
    if len(found) > _LISTED:
        listed.append(f"{len(found) - _LISTED} more")
    names = listed[0] if len(listed) == 1 else f"{', '.join(listed[:-1])} and {listed[-1]}"
    return f"{what} held by {names} (type count {pg.type_count})"


def _present(xen: XenState, table: Mfn) -> int:
    words = xen.mem.peek(table)
    return sum(1 for slot in range(512) if words[slot] & _PAGE_PRESENT)


def looks_like_junk(xen: XenState, table: Mfn, refused_entry: int, flags_refused: bool) -> bool:
    """Was the refused entry of ``table`` most likely never written by the
    guest? Yes when it names a frame beyond memory, or when it carries
    disallowed flags in a table with many present entries."""
    if pte_mfn(refused_entry) >= xen.total_frames:
        return True
    return flags_refused and _present(xen, table) >= JUNK_MIN_PRESENT


def note_validation_failure(
    xen: XenState, err: GuestError, level: int, table: Mfn, slot: int, e: int
) -> None:
    """Put entry ``slot`` of the L``level`` ``table`` being validated on the
    error's path; at the innermost table, hint at junk (a frame that was
    never zeroed before it became a table)."""
    flags = err.rule is rules.ENTRY_DISALLOWED_FLAGS
    if not err.path and not err.hint and looks_like_junk(xen, table, e, flags):
        err.hint = (
            f"mfn {table:#x} has {_present(xen, table)} present entries and slot {slot}"
            f" holds {e:#x}: was the frame zeroed before it became a table?"
        )
    err.path.insert(0, (level, table, slot))
