"""``HYPERVISOR_update_va_mapping`` (14) and ``_otherdomain`` (22): change the
L1 entry that maps one virtual address, found through the caller's current
page tables, then flush as ``flags`` ask -- only if the update succeeded.
"""

from __future__ import annotations

from typing import Any

from hypervisor import rules
from hypervisor.abi import _PAGE_PRESENT, _PAGE_PSE, PAGE_SHIFT, UVMF_NONE, Mfn, pte_mfn
from hypervisor.errors import GuestError
from hypervisor.hypercalls.args import as_int
from hypervisor.hypercalls.common import get_pg_owner, guest_va_ok, ram_page
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
        raise GuestError(rules.UVM_BAD_VA, f"{va:#x} is not a guest virtual address")
    table = v.guest_table
    for shift, imask in _WALK[d.levels]:
        e = xen.mem.peek(table)[(va >> shift) & imask] if table else 0
        if not e & _PAGE_PRESENT or (shift == 21 and e & _PAGE_PSE):
            raise GuestError(
                rules.UVM_NO_L1, f"no L1 maps {va:#x} (the walk stops at shift {shift})"
            )
        table = pte_mfn(e)
    pg = ram_page(xen, table)
    if pg is None or pg.owner != d.domid or not pg.type_count or pg.type is not PageType.L1:
        raise GuestError(
            rules.UVM_NO_L1,
            f"the frame mapping {va:#x} (mfn {table:#x}) is not a validated L1 of yours",
        )
    return table, (va >> PAGE_SHIFT) & 511


def _flags(flags: Any) -> tuple[int, int]:
    flags = as_int(flags, 64, "flags")
    if flags & 3 == 3 or flags & ~3 not in (0, 4):
        raise GuestError(rules.UVM_BAD_FLAGS, f"flags {flags:#x}")
    return flags & 3, flags & 4


def _update(xen: XenState, v: PvVcpu, va: Any, val: Any, flags: Any, pg_owner: PvDomain) -> None:
    va = as_int(va, 64, "va")
    val = as_int(val, 64, "val")
    how, scope_all = _flags(flags)
    l1mfn, slot = guest_l1e(xen, v, va)
    mod_l1_entry(xen, l1mfn, xen.mem.words(l1mfn), slot, val, v.domain, pg_owner)
    targets = v.domain.vcpus if scope_all else [v]
    for w in targets:
        if how == 1:
            xen.flush_vcpu(w, "uvmf_tlb_flush")
        elif how == 2:
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
