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

from hypervisor.abi import _PAGE_PRESENT, _PAGE_RW, VMASST_TYPE_writable_pagetables
from hypervisor.console import Refusal
from hypervisor.errors import GuestError
from hypervisor.hw import WalkFault, walk
from hypervisor.mm.domain import PvVcpu
from hypervisor.mm.entries import mod_l1_entry
from hypervisor.mm.explain import frame_owner, type_name
from hypervisor.mm.frames import PageType
from hypervisor.mm.state import XenState
from hypervisor.trace import TrappedWriteRecord

__all__ = ["ptwr_emulate"]


def ptwr_emulate(xen: XenState, v: PvVcpu, va: int, value: int, size: int) -> str | None:
    """Try to emulate a faulting kernel store of ``size`` bytes. Returns None
    when emulated, else why not (the fault is then delivered)."""
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
    words = xen.mem.words(t.mfn)
    old = words[slot]
    mask = ((1 << (size * 8)) - 1) << shift
    new = (old & ~mask) | (value << shift)
    clock = xen.tracer.clock
    try:
        mod_l1_entry(xen, t.mfn, words, slot, new, d, d, fastpath=False)
    except GuestError as err:
        if not (d.is_32bit and size == 4 and va & 4 and new & _PAGE_PRESENT):
            xen.tracer.emit(
                TrappedWriteRecord(
                    clock, d.domid, v.vcpu_id, va, t.mfn, slot, old, new, -err.errno, err.rule.id
                )
            )
            why = f"trapped write to {va:#x} refused ({err.rule.errno_name}): {err.explain()}"
            d.console.log(
                Refusal(
                    clock, d.domid, v.vcpu_id, "trapped_write", err.errno, err.rule.id, why, va=va
                )
            )
            return why
        new &= ~_PAGE_PRESENT  # ptwr_emulated_update: an upper-half PAE write, stored not present
        mod_l1_entry(xen, t.mfn, words, slot, new, d, d, fastpath=False)
    xen.stats["trapped_writes"] += 1
    xen.tracer.emit(TrappedWriteRecord(clock, d.domid, v.vcpu_id, va, t.mfn, slot, old, new, 0))
    return None
