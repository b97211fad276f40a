"""``HYPERVISOR_update_va_mapping`` (14) and ``_otherdomain`` (22): change the
L1 entry that maps one virtual address, found through the caller's current
page tables, then flush as ``flags`` ask -- only if the update succeeded.

``flags & 3`` is the flush (0 none, 1 the whole TLB, 2 this page, 3 none);
``flags & ~3`` the vCPUs flushed: 0 this one, ``UVMF_ALL`` all of the
domain's, any other value the guest address of a vCPU bitmap. A bitmap that
cannot be read is EFAULT, with the entry already changed.
"""

from __future__ import annotations

from typing import Any

from hypervisor import rules
from hypervisor.abi import (
    _PAGE_PRESENT,
    _PAGE_PSE,
    PAGE_SHIFT,
    UVMF_ALL,
    UVMF_FLUSHTYPE_MASK,
    UVMF_INVLPG,
    UVMF_LOCAL,
    UVMF_NONE,
    UVMF_TLB_FLUSH,
    Mfn,
    pte_mfn,
)
from hypervisor.errors import GuestError
from hypervisor.hypercalls.args import as_int
from hypervisor.hypercalls.common import get_pg_owner, guest_va_ok, ram_page, vcpumask
from hypervisor.hypercalls.dispatch import hypercall
from hypervisor.mm.domain import PvDomain, PvVcpu
from hypervisor.mm.entries import mod_l1_entry
from hypervisor.mm.frames import PageType
from hypervisor.mm.state import XenState

__all__ = ["do_update_va_mapping", "do_update_va_mapping_otherdomain", "guest_l1e"]

_WALK = {4: ((39, 511), (30, 511), (21, 511)), 3: ((30, 3), (21, 511))}


def guest_l1e(xen: XenState, v: PvVcpu, va: int) -> tuple[Mfn, int]:
    """``(l1 mfn, slot)`` of the L1 entry mapping ``va`` in the vCPU's kernel
    tables (``map_guest_l1e``); EINVAL when there is no validated L1 of the
    caller's for it. Walks the tables, never the TLB."""
    d = v.domain
    if not guest_va_ok(d, va):
        raise GuestError(rules.UVM_BAD_VA, f"va {va:#x} {_not_guest(d, va)}")
    table = v.guest_table
    if not table:
        raise GuestError(rules.UVM_NO_L1, f"vCPU {v.vcpu_id} has no base pointer loaded")
    level = d.levels
    for shift, imask in _WALK[d.levels]:
        slot = (va >> shift) & imask
        e = xen.mem.peek(table)[slot]
        if not e & _PAGE_PRESENT or (shift == 21 and e & _PAGE_PSE):
            what = "is not present" if not e & _PAGE_PRESENT else "maps a superpage"
            raise GuestError(
                rules.UVM_NO_L1,
                f"the walk for va {va:#x} stops at L{level} mfn {table:#x} slot {slot}: "
                f"the entry {what}",
            )
        table = pte_mfn(e)
        level -= 1
    pg = ram_page(xen, table)
    if pg is None or pg.owner != d.domid or not pg.type_count or pg.type is not PageType.L1:
        raise GuestError(
            rules.UVM_NO_L1,
            f"the L2 entry for va {va:#x} names mfn {table:#x}, which is not a validated L1"
            f" of d{d.domid}",
        )
    return table, (va >> PAGE_SHIFT) & 511


def _not_guest(d: PvDomain, va: int) -> str:
    """Why ``va`` is not a guest virtual address of ``d``."""
    if d.is_32bit:
        return "lies in Xen's compat area (a 32-bit guest ends at 0xf5800000)"
    if 1 << 47 <= va < 0xFFFF800000000000:
        return "is not canonical (bits 47-63 must all be equal)"
    return "lies in Xen's hole (0xffff800000000000-0xffff87ffffffffff)"


def _update(xen: XenState, v: PvVcpu, va: Any, val: Any, flags: Any, pg_owner: PvDomain) -> None:
    """mm.c ``__do_update_va_mapping``: the entry first, then the flush."""
    va = as_int(va, 64, "va")
    val = as_int(val, 64, "val")
    flags = as_int(flags, 64, "flags")
    l1mfn, slot = guest_l1e(xen, v, va)
    mod_l1_entry(xen, l1mfn, xen.mem.words(l1mfn), slot, val, v.domain, pg_owner)
    how = flags & UVMF_FLUSHTYPE_MASK
    if how not in (UVMF_TLB_FLUSH, UVMF_INVLPG):
        return  # UVMF_NONE, or 3: no flush, and the scope is never looked at
    scope = flags & ~UVMF_FLUSHTYPE_MASK
    if scope == UVMF_LOCAL:
        targets = [v]
    elif scope == UVMF_ALL:
        targets = v.domain.vcpus
    else:
        found = vcpumask(xen, v, scope)
        if found is None:
            raise GuestError(
                rules.UVM_BAD_VCPUMASK,
                f"the vCPU bitmap at {scope:#x} cannot be read (the entry was already written)",
            )
        targets = found
    for w in targets:
        if how == UVMF_TLB_FLUSH:
            xen.flush_vcpu(w, "uvmf_tlb_flush")
        else:
            xen.flush_va(w, va, "uvmf_invlpg")


@hypercall(14, "update_va_mapping", 2, 3)
def do_update_va_mapping(
    xen: XenState, v: PvVcpu, va: Any, val: Any, flags: Any = UVMF_NONE
) -> None:
    """mm.c ``do_update_va_mapping``."""
    _update(xen, v, va, val, flags, v.domain)


@hypercall(22, "update_va_mapping_otherdomain", 4, 4)
def do_update_va_mapping_otherdomain(
    xen: XenState, v: PvVcpu, va: Any, val: Any, flags: Any, domid: Any
) -> None:
    """mm.c ``do_update_va_mapping_otherdomain``: FD = ``domid`` for the mapped
    frame; the L1 is still the caller's."""
    d = v.domain
    pg_owner = get_pg_owner(xen, d, as_int(domid, 16, "domid"))
    if pg_owner is not d and not d.privileged:
        raise GuestError(
            rules.FOREIGNDOM_NOT_PRIVILEGED, f"d{d.domid} may not map d{pg_owner.domid}"
        )
    _update(xen, v, va, val, flags, pg_owner)
