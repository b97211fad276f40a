"""No PAE upper-half fix-up: a 32-bit guest's 4-byte store into the upper half of an
entry, whose merged entry fails the checks, is refused like any other. Xen assumes the
guest wrote the two halves in the wrong order and performs the store with _PAGE_PRESENT
cleared; here the guest takes a page fault Xen would not have given it."""

from __future__ import annotations

from hypervisor.abi import Mfn
from hypervisor.console import Refusal
from hypervisor.errors import GuestError
from hypervisor.mm.domain import PvVcpu
from hypervisor.mm.entries import mod_l1_entry
from hypervisor.mm.state import XenState
from hypervisor.trace import TrappedWriteRecord


def ptwr_emulated_update(
    xen: XenState, v: PvVcpu, va: int, l1mfn: Mfn, slot: int, old: int, new: int, size: int
) -> str | None:
    d = v.domain
    clock = xen.tracer.clock
    try:
        mod_l1_entry(xen, l1mfn, xen.mem.words(l1mfn), slot, new, d, d, fastpath=False)
    except GuestError as err:
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
