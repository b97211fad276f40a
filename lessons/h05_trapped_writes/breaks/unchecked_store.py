"""The emulated store is written without any check: no flags check, no
get_page_from_l1e, no reference taken for the new entry nor dropped for the old one.
One trapped store then maps a page table writable -- here the L1 itself -- and from there
the guest rewrites its own L1 with plain stores that never fault, so Xen never sees them:
it maps another domain's frame and reads it. Xen checks the entry exactly like
mmu_update and refuses it (EBUSY, l1.writable-pagetable): the guest gets the page
fault."""

from __future__ import annotations

from hypervisor.abi import Mfn
from hypervisor.mm.domain import PvVcpu
from hypervisor.mm.state import XenState
from hypervisor.trace import TrappedWriteRecord


def ptwr_emulated_update(
    xen: XenState, v: PvVcpu, va: int, l1mfn: Mfn, slot: int, old: int, new: int, size: int
) -> str | None:
    d = v.domain
    xen.mem.words(l1mfn)[slot] = new
    xen.stats["trapped_writes"] += 1
    record = TrappedWriteRecord(xen.tracer.clock, d.domid, v.vcpu_id, va, l1mfn, slot, old, new, 0)
    xen.tracer.emit(record)
    return None
