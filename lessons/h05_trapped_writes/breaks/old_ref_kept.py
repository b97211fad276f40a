"""The old entry's references are never dropped: the new entry is checked and counted,
but whatever the slot mapped before keeps its general (and, for a writable mapping, its
type) reference forever. Every emulated store over a present entry leaks: a data page
once mapped can never be freed nor become a page table. Xen drops the old entry with
put_page_from_l1e after the write; the counts diverge at the first store over a present
entry."""

from __future__ import annotations

from hypervisor.abi import _PAGE_PRESENT, Mfn
from hypervisor.console import Refusal
from hypervisor.errors import GuestError
from hypervisor.mm import l1
from hypervisor.mm.domain import PvVcpu
from hypervisor.mm.entries import mod_l1_entry
from hypervisor.mm.state import XenState
from hypervisor.trace import TrappedWriteRecord


def ptwr_emulated_update(
    xen: XenState, v: PvVcpu, va: int, l1mfn: Mfn, slot: int, old: int, new: int, size: int
) -> str | None:
    d = v.domain
    clock = xen.tracer.clock
    words = xen.mem.words(l1mfn)
    current = words[slot]
    extra = False
    if current & _PAGE_PRESENT:  # one more reference, so the put below leaves one behind
        try:
            l1.get_page_from_l1e(xen, current, d, d)
            extra = True
        except GuestError:
            pass
    try:
        mod_l1_entry(xen, l1mfn, words, slot, new, d, d, fastpath=False)
    except GuestError as err:
        if d.is_32bit and size == 4 and va & 4 and new & _PAGE_PRESENT:
            new &= ~_PAGE_PRESENT  # the PAE upper half: stored not present
            mod_l1_entry(xen, l1mfn, words, slot, new, d, d, fastpath=False)
            xen.stats["trapped_writes"] += 1
            record = TrappedWriteRecord(clock, d.domid, v.vcpu_id, va, l1mfn, slot, old, new, 0)
            xen.tracer.emit(record)
            return None
        if extra:
            l1.put_page_from_l1e(xen, current, d)
        xen.tracer.emit(
            TrappedWriteRecord(
                clock, d.domid, v.vcpu_id, va, l1mfn, slot, old, new, -err.errno, err.rule.id
            )
        )
        why = f"trapped write to {va:#x} refused ({err.rule.errno_name}): {err.explain()}"
        refusal = Refusal(
            clock, d.domid, v.vcpu_id, "trapped_write", err.errno, err.rule.id, why, va=va
        )
        d.console.log(refusal)
        return why
    xen.stats["trapped_writes"] += 1
    xen.tracer.emit(TrappedWriteRecord(clock, d.domid, v.vcpu_id, va, l1mfn, slot, old, new, 0))
    return None
