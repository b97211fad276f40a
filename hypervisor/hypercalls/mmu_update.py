"""``HYPERVISOR_mmu_update`` (number 1): checked page-table writes in batches.

Each request is ``(ptr, val)``: ``ptr & 7`` is the command, ``ptr & ~7`` the
machine address of an entry. The batch stops at the first failing request;
earlier ones stay applied and ``done`` says how many there were.
"""

from __future__ import annotations

from typing import Any

from hypervisor.abi import DOMID_SELF
from hypervisor.errors import GuestError
from hypervisor.hypercalls.args import as_int, as_sequence, mmu_request
from hypervisor.hypercalls.common import get_pg_owner, ram_page
from hypervisor.hypercalls.dispatch import hypercall
from hypervisor.mm.domain import PvDomain, PvVcpu
from hypervisor.mm.entries import mod_l1_entry, mod_upper_entry
from hypervisor.mm.frames import PageType
from hypervisor.mm.refs import get_page_type, put_page_type
from hypervisor.mm.state import XenState

__all__ = ["do_mmu_update"]

L1, WRITABLE = PageType.L1, PageType.WRITABLE
UPPER = (PageType.L2, PageType.L3, PageType.L4)


def _pt_owner(xen: XenState, d: PvDomain, pfd: int) -> PvDomain:
    """The page-table owner from the high half of foreigndom (PFD+1; 0 = self)."""
    if pfd == 0:
        return d
    domid = pfd - 1
    if domid in (d.domid, DOMID_SELF):
        return d
    dom = xen.domains.get(domid)
    if dom is None:
        raise GuestError("foreigndom.unknown", f"there is no domain {domid} (page-table owner)")
    return dom


@hypercall(1, "mmu_update", 1, 2)
def do_mmu_update(xen: XenState, v: PvVcpu, reqs: Any, foreigndom: Any = DOMID_SELF) -> int:
    """mm.c ``do_mmu_update``. Returns the number of requests done."""
    d = v.domain
    fd = as_int(foreigndom, 32, "foreigndom")
    pg_owner = get_pg_owner(xen, d, fd & 0xFFFF)
    pt_owner = _pt_owner(xen, d, fd >> 16)
    reqs = as_sequence(reqs, "reqs")
    xen.stats["requests"] += len(reqs)
    needs_priv = (pg_owner is not d and pg_owner is not xen.dom_io) or pt_owner is not d
    flush = False
    i = 0
    try:
        for i, r in enumerate(reqs):  # noqa: B007 -- i is the done count on failure
            ptr, val = mmu_request(r)
            if needs_priv and not d.privileged:
                raise GuestError(
                    "foreigndom.not-privileged", f"d{d.domid} may not update d{pg_owner.domid}"
                )
            cmd = ptr & 7
            if cmd == 0 or cmd == 2 or cmd == 3:
                flush |= _normal_update(xen, ptr, val, pt_owner, pg_owner, cmd == 2)
            elif cmd == 1:
                _machphys_update(xen, d, ptr, val, pt_owner, pg_owner)
            else:
                raise GuestError("mmu.unknown-command", f"ptr {ptr:#x} carries command {cmd}")
    except GuestError as err:
        err.done = i
        if len(reqs) > 1:
            err.context = f"mmu_update request {i} of {len(reqs)}"
        raise
    finally:
        if flush and xen.config.flush_on_l2plus_update:
            xen.flush_domain(pt_owner, "l2plus_update")
    return len(reqs)


def _normal_update(
    xen: XenState, ptr: int, val: int, pt_owner: PvDomain, pg_owner: PvDomain, preserve_ad: bool
) -> bool:
    """One MMU_NORMAL_PT_UPDATE / PRESERVE_AD / NO_TRANSLATE request. Returns
    True if an L2-L4 entry changed (Xen then flushes at the end of the batch)."""
    mfn = ptr >> 12
    slot = (ptr & 0xFF8) >> 3
    pg = ram_page(xen, mfn)
    if pg is None or pg.owner != pt_owner.domid or not pg.count:
        raise GuestError(
            "mmu.ptr-frame-not-owned",
            f"ptr {ptr:#x} lies in mfn {mfn:#x}, which d{pt_owner.domid} does not own",
        )
    t = pg.type
    if pg.type_count and pg.validated:
        if t is L1:
            mod_l1_entry(xen, xen.mem.words(mfn), slot, val, pt_owner, pg_owner, preserve_ad)
            return False
        if t in UPPER:
            if pg_owner is not pt_owner:
                raise GuestError(
                    "mmu.foreign-upper-level",
                    f"L{int(t)} mfn {mfn:#x} updated with foreigndom d{pg_owner.domid}",
                )
            mod_upper_entry(xen, int(t), mfn, pg, slot, val, pt_owner, preserve_ad)
            return True
        if t is WRITABLE:
            xen.mem.words(mfn)[slot] = val
            return False
        raise GuestError(
            "mmu.ptr-frame-wrong-type", f"mfn {mfn:#x} is a {t.name.lower()} page in use"
        )
    # Not in use as anything: a plain store, under a temporary writable type.
    get_page_type(xen, mfn, pg, WRITABLE)
    xen.mem.words(mfn)[slot] = val
    put_page_type(xen, mfn, pg)
    return False


def _machphys_update(
    xen: XenState, d: PvDomain, ptr: int, val: int, pt_owner: PvDomain, pg_owner: PvDomain
) -> None:
    """MMU_MACHPHYS_UPDATE: ``M2P[ptr >> 12] = val``, for the owner only."""
    if pt_owner is not d:
        raise GuestError(
            "machphys.foreign-pfd", f"MACHPHYS_UPDATE with page-table owner d{pt_owner.domid}"
        )
    mfn = ptr >> 12
    pg = ram_page(xen, mfn)
    if pg is None or pg.owner != pg_owner.domid or not pg.count:
        raise GuestError("machphys.not-owned", f"mfn {mfn:#x} is not owned by d{pg_owner.domid}")
    xen.m2p[mfn] = val
