"""Writable page tables ("ptwr", pv/ro-page-fault.c): a guest kernel's store
through a read-only mapping of one of its own validated L1 tables is emulated
as a checked ``mod_l1_entry`` -- when ``VMASST_TYPE_writable_pagetables`` is on.

L2-L4 tables are never emulated, and a store that fails the L1 checks is not
performed: the guest gets the page fault -- except, for a 32-bit PAE guest, a
4-byte store to the upper half of an entry, which Xen takes for the first of
two halves written the wrong way round and performs with PRESENT cleared. The
stored entry is adjusted as on every other path (``adjust_guest_l1e``). No
TLB flush is done.
"""

from __future__ import annotations

from hypervisor import steps
from hypervisor.abi import _PAGE_PRESENT, _PAGE_RW, Mfn, VMASST_TYPE_writable_pagetables
from hypervisor.console import Refusal
from hypervisor.errors import GuestError
from hypervisor.hw import WalkFault, walk
from hypervisor.mm.domain import PvVcpu
from hypervisor.mm.entries import mod_l1_entry
from hypervisor.mm.explain import frame_owner, type_name
from hypervisor.mm.frames import PageType
from hypervisor.mm.state import XenState
from hypervisor.trace import TrappedWriteRecord

__all__ = ["ptwr_emulate", "ptwr_emulated_update"]


def ptwr_emulate(xen: XenState, v: PvVcpu, va: int, value: int, size: int) -> str | None:
    """Try to emulate a faulting kernel store of ``value`` (``size`` bytes) at
    ``va``: the walk and the eligibility checks (a kernel store, through a
    read-only leaf mapping one of the domain's own live L1s, writable page
    tables on, naturally aligned), then :func:`ptwr_emulated_update` of the
    merged entry. Returns None when emulated, else why not (the fault is then
    delivered). pv/ro-page-fault.c ``pv_ro_page_fault`` -> ``ptwr_do_page_fault``
    -> ``ptwr_emulated_write``."""
    d = v.domain
    if v.in_user_mode:
        return "the store came from user mode"
    try:
        t = walk(xen.mem, v.guest_table, va, levels=d.levels, write=False, user=False, set_ad=False)
    except WalkFault as f:
        return f.why
    if t.leaf & _PAGE_RW:
        return "the leaf entry is writable, but an entry above it is read-only"
    leaf = f"the leaf entry (L1 mfn {t.l1_mfn:#x} slot {t.l1_slot}) maps mfn {t.mfn:#x} read-only"
    pg = xen.frames.get(t.mfn)
    if pg is None or pg.owner != d.domid or pg.type is not PageType.L1 or not pg.type_count:
        what = frame_owner(xen, t.mfn) if pg is None else f"it is {type_name(pg)}"
        return (
            f"{leaf}, and {what}: a write through a read-only mapping faults"
            " (Xen emulates writes to the guest's own live L1 tables only)"
        )
    if not d.assist(VMASST_TYPE_writable_pagetables):
        return (
            f"{leaf}, an L1 table: Xen emulates such writes only with"
            " VMASST_TYPE_writable_pagetables, which is off"
        )
    offset = va & 0xFFF
    if offset % size:
        return "the store is not naturally aligned"
    slot, shift = offset >> 3, (offset & 7) * 8
    old = xen.mem.peek(t.mfn)[slot]
    mask = ((1 << (size * 8)) - 1) << shift
    new = (old & ~mask) | (value << shift)
    return ptwr_emulated_update(xen, v, va, t.mfn, slot, old, new, size)


@steps.swappable
def ptwr_emulated_update(
    xen: XenState, v: PvVcpu, va: int, l1mfn: Mfn, slot: int, old: int, new: int, size: int
) -> str | None:
    """The checked update of a trapped store: entry ``slot`` of ``v``'s
    domain's live L1 ``l1mfn`` goes from ``old`` to ``new`` (``old`` with the
    ``size`` bytes stored at ``va`` merged in), checked exactly like
    ``mmu_update`` but without the fast path (``mod_l1_entry(...,
    fastpath=False)``).

    A refused entry is not written: the refusal is traced
    (:class:`TrappedWriteRecord` with its errno and rule) and logged on the
    console, and the reason returned (the fault is then delivered) -- except a
    32-bit PAE guest's 4-byte store into the upper half of an entry that
    would be present, which is taken for the first of two halves written the
    wrong way round and stored with PRESENT cleared. An emulated store is
    counted and traced; returns None. pv/ro-page-fault.c ``ptwr_emulated_update``.
    """
    d = v.domain
    words = xen.mem.words(l1mfn)
    clock = xen.tracer.clock
    try:
        mod_l1_entry(xen, l1mfn, words, slot, new, d, d, fastpath=False)
    except GuestError as err:
        if not (d.is_32bit and size == 4 and va & 4 and new & _PAGE_PRESENT):
            xen.tracer.emit(
                TrappedWriteRecord(
                    clock, d.domid, v.vcpu_id, va, l1mfn, slot, old, new, -err.errno, err.rule.id
                )
            )
            why = f"trapped write to {va:#x} refused ({err.rule.errno_name}): {err.explain()}"
            d.console.log(
                Refusal(
                    clock, d.domid, v.vcpu_id, "trapped_write", err.errno, err.rule.id, why, va=va
                )
            )
            return why
        new &= ~_PAGE_PRESENT  # an upper-half PAE write, stored not present
        mod_l1_entry(xen, l1mfn, words, slot, new, d, d, fastpath=False)
    xen.stats["trapped_writes"] += 1
    xen.tracer.emit(TrappedWriteRecord(clock, d.domid, v.vcpu_id, va, l1mfn, slot, old, new, 0))
    return None
