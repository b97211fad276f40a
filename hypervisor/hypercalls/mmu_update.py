"""``HYPERVISOR_mmu_update`` (number 1): checked page-table writes in batches.

Each request is ``(ptr, val)``: ``ptr & 7`` is the command, ``ptr & ~7`` the
machine address of an entry. The batch stops at the first failing request;
earlier ones stay applied and ``done`` says how many there were.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from hypervisor import rules
from hypervisor.abi import (
    DOMID_IO,
    DOMID_SELF,
    DOMID_XEN,
    PAGE_SHIFT,
    Mfn,
    MmuUpdate,
    maddr_mfn,
    maddr_slot,
)
from hypervisor.errors import GuestError
from hypervisor.hypercalls.args import as_int, as_sequence, mmu_request
from hypervisor.hypercalls.common import get_pg_owner, ram_page
from hypervisor.hypercalls.dispatch import hypercall
from hypervisor.mm.domain import PvDomain, PvVcpu
from hypervisor.mm.entries import mod_l1_entry, mod_upper_entry
from hypervisor.mm.explain import held_by, not_owned
from hypervisor.mm.frames import PageInfo, PageType
from hypervisor.mm.refs import get_page_type, put_page_type
from hypervisor.mm.state import IO_FRAMES, XenState

__all__ = ["do_mmu_update"]

L1, WRITABLE = PageType.L1, PageType.WRITABLE
UPPER = (PageType.L2, PageType.L3, PageType.L4)
U64 = 1 << 64


@attrs.define
class _Batch:
    """The state of one mmu_update call: who is who, and what it has done."""

    caller: PvDomain
    pt_owner: PvDomain
    pg_owner: PvDomain
    denied: bool
    """The caller names another domain and is not privileged (XSM says no)."""
    flush: bool = False
    """An L2-L4 entry changed: flush the page-table owner's TLBs at the end."""


def _pt_owner(xen: XenState, d: PvDomain, pfd: int) -> PvDomain:
    """The page-table owner from the high half of foreigndom (PFD+1; 0 = self),
    looked up with ``rcu_lock_domain_by_id``: only real domains, so DOMID_SELF,
    DOMID_IO and DOMID_XEN there are ESRCH."""
    if pfd == 0:
        return d
    domid = pfd - 1
    if domid == d.domid:
        return d
    dom = xen.domains.get(domid)
    if dom is None:
        raise GuestError(rules.FOREIGNDOM_UNKNOWN, f"there is no domain {domid} (page-table owner)")
    return dom


@hypercall(1, "mmu_update", 1, 2)
def do_mmu_update(xen: XenState, v: PvVcpu, reqs: Any, foreigndom: Any = DOMID_SELF) -> int:
    """mm.c ``do_mmu_update``. Returns the number of requests done. Checked in
    Xen's order: the request array (EFAULT), PFD then FD (ESRCH); then per
    request its command (ENOSYS), XSM (EPERM) and the command's own checks."""
    d = v.domain
    fd = as_int(foreigndom, 32, "foreigndom")
    reqs = as_sequence(reqs, "reqs")
    pt_owner = _pt_owner(xen, d, fd >> 16)
    pg_owner = get_pg_owner(xen, d, fd & 0xFFFF)
    xen.stats["requests"] += len(reqs)
    foreign = (pg_owner is not d and pg_owner is not xen.dom_io) or pt_owner is not d
    batch = _Batch(d, pt_owner, pg_owner, foreign and not d.privileged)
    try:
        _apply(xen, reqs, batch)
    except GuestError as err:
        if len(reqs) > 1:
            err.context = f"mmu_update request {err.done} of {len(reqs)}"
        raise
    finally:
        if batch.flush and xen.config.flush_on_l2plus_update:
            xen.flush_domain(pt_owner, "l2plus_update")
    return len(reqs)


def _apply(xen: XenState, reqs: Sequence[Any], batch: _Batch) -> None:
    """Apply the requests in order; a refusal carries its index as ``done``.

    Consecutive requests into the same live L1 -- the common batch -- skip the
    frame lookup: the frame's metadata object is remembered and its state
    (still an L1 in use) re-read for every request. Frames on an owner's
    allocation list are never freed, so the remembered object stays valid.
    """
    last_mfn = -1
    last_pg: PageInfo | None = None
    last_words: memoryview | None = None
    pt_owner, pg_owner, denied = batch.pt_owner, batch.pg_owner, batch.denied
    i = 0
    try:
        for i, r in enumerate(reqs):  # noqa: B007 -- i is read in the handler
            if type(r) is MmuUpdate:  # the common, well-formed request, read inline
                ptr, val = r.ptr, r.val
                if not (
                    type(ptr) is int and type(val) is int and 0 <= ptr < U64 and 0 <= val < U64
                ):
                    ptr, val = mmu_request(r)
            else:
                ptr, val = mmu_request(r)
            mfn: Mfn = ptr >> PAGE_SHIFT  # type: ignore[assignment] # maddr_mfn, inlined
            if (
                not denied
                and mfn == last_mfn
                and not ptr & 7
                and last_pg is not None
                and last_words is not None
                and last_pg.type is L1
                and last_pg.type_count
            ):
                slot = (ptr & 0xFF8) >> 3  # maddr_slot, inlined
                mod_l1_entry(xen, mfn, last_words, slot, val, pt_owner, pg_owner)
                continue
            cmd = ptr & 7
            if cmd > 3:
                raise GuestError(rules.MMU_UNKNOWN_COMMAND, f"ptr {ptr:#x} carries command {cmd}")
            if cmd == 1:
                _machphys_update(xen, ptr, val, batch)
                continue
            if denied:
                raise _xsm_refusal(batch)
            pg = _normal_update(xen, ptr, val, batch, cmd == 2)
            if pg.type is L1 and pg.type_count:
                last_mfn, last_pg, last_words = mfn, pg, xen.mem.words(mfn)
    except GuestError as err:
        err.done = i
        raise


def _xsm_refusal(batch: _Batch) -> GuestError:
    """XSM: an unprivileged caller named another domain (checked per request)."""
    caller = batch.caller.domid
    if batch.pg_owner is not batch.caller:
        return GuestError(
            rules.FOREIGNDOM_NOT_PRIVILEGED, f"d{caller} may not update d{batch.pg_owner.domid}"
        )
    return GuestError(
        rules.FOREIGNDOM_NOT_PRIVILEGED,
        f"d{caller} may not update d{batch.pt_owner.domid}'s tables",
    )


def _normal_update(xen: XenState, ptr: int, val: int, batch: _Batch, preserve_ad: bool) -> PageInfo:
    """One MMU_NORMAL_PT_UPDATE / PRESERVE_AD / NO_TRANSLATE request."""
    pt_owner, pg_owner = batch.pt_owner, batch.pg_owner
    mfn, slot = maddr_mfn(ptr), maddr_slot(ptr)
    pg = ram_page(xen, mfn)
    if pg is None or pg.owner != pt_owner.domid or not pg.count:
        raise GuestError(
            rules.MMU_PTR_FRAME_NOT_OWNED, f"ptr {ptr:#x}: {not_owned(xen, mfn, pt_owner.domid)}"
        )
    t = pg.type
    if pg.type_count and pg.validated:
        if t is L1:
            mod_l1_entry(xen, mfn, xen.mem.words(mfn), slot, val, pt_owner, pg_owner, preserve_ad)
        elif t in UPPER:
            if pg_owner is not pt_owner:
                raise GuestError(
                    rules.MMU_FOREIGN_UPPER_LEVEL,
                    f"L{int(t)} mfn {mfn:#x} updated with foreigndom d{pg_owner.domid}",
                )
            mod_upper_entry(xen, int(t), mfn, pg, slot, val, pt_owner, preserve_ad)
            batch.flush = True
        elif t is WRITABLE:
            xen.mem.words(mfn)[slot] = val
        else:
            raise GuestError(
                rules.MMU_PTR_FRAME_WRONG_TYPE,
                f"mfn {mfn:#x} is {held_by(xen, mfn, pg)}",
            )
        return pg
    # Not in use as anything: a plain store, under a temporary writable type.
    get_page_type(xen, mfn, pg, WRITABLE)
    xen.mem.words(mfn)[slot] = val
    put_page_type(xen, mfn, pg)
    return pg


def _machphys_update(xen: XenState, ptr: int, val: int, batch: _Batch) -> None:
    """MMU_MACHPHYS_UPDATE: ``M2P[maddr_mfn(ptr)] = val``. The page-table owner
    must be the caller (EPERM); XSM checks FD unless it is DOMID_IO (EPERM); the
    frame must belong to FD (EINVAL) -- with DOMID_IO, an I/O frame of RAM."""
    if batch.pt_owner is not batch.caller:
        raise GuestError(
            rules.MACHPHYS_FOREIGN_PFD,
            f"MACHPHYS_UPDATE with page-table owner d{batch.pt_owner.domid}",
        )
    if batch.denied:
        raise _xsm_refusal(batch)
    mfn = maddr_mfn(ptr)
    if batch.pg_owner is xen.dom_io:
        owned = 0 <= mfn < IO_FRAMES  # the first MiB: RAM that DOMID_IO owns
    else:
        pg = ram_page(xen, mfn)
        owned = pg is not None and pg.owner == batch.pg_owner.domid and pg.count > 0
    if not owned:
        raise GuestError(rules.MACHPHYS_NOT_OWNED, not_owned(xen, mfn, batch.pg_owner.domid))
    xen.m2p[mfn] = val


def _name(d: PvDomain) -> str:
    return {DOMID_IO: "DOMID_IO", DOMID_XEN: "DOMID_XEN"}.get(d.domid, f"d{d.domid}")
