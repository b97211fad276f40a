"""``HYPERVISOR_mmu_update`` (number 1): checked page-table writes in batches.

Each request is ``(ptr, val)``: ``ptr & 7`` is the command, ``ptr & ~7`` the
machine address of an entry. The batch stops at the first failing request;
earlier ones stay applied and ``done`` says how many there were.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from hypervisor import rules, steps
from hypervisor.abi import (
    _PAGE_GLOBAL,
    _PAGE_PRESENT,
    _PAGE_RW,
    _PAGE_USER,
    DOMID_IO,
    DOMID_SELF,
    DOMID_XEN,
    PAGE_SHIFT,
    PTE_MFN_MASK,
    Mfn,
    MmuUpdate,
    maddr_mfn,
    maddr_slot,
)
from hypervisor.errors import GuestError
from hypervisor.hypercalls.args import as_int, as_sequence, mmu_request
from hypervisor.hypercalls.common import get_pg_owner, ram_page
from hypervisor.hypercalls.dispatch import hypercall
from hypervisor.mm.adjust import GUEST_KERNEL
from hypervisor.mm.domain import PvDomain, PvVcpu
from hypervisor.mm.entries import AD, mod_l1_entry, mod_upper_entry
from hypervisor.mm.explain import held_by, not_owned
from hypervisor.mm.frames import PageInfo, PageType
from hypervisor.mm.l1 import get_page_from_l1e, put_page_from_l1e
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
    After a request into a live L1, the requests that follow it into the same
    L1 -- the common batch -- go through :func:`_l1_run`."""
    i, n = 0, len(reqs)
    while i < n:
        try:
            l1mfn = _request(xen, reqs[i], batch)
        except GuestError as err:
            err.done = i
            raise
        i += 1
        if l1mfn is not None:
            i = _l1_run(xen, reqs, i, l1mfn, batch)


def _request(xen: XenState, r: Any, batch: _Batch) -> Mfn | None:
    """One request, checked in Xen's order. Returns the frame it updated if
    that is a live L1 and a run of updates into it may follow."""
    ptr, val = mmu_request(r)
    cmd = ptr & 7
    if cmd > 3:
        raise GuestError(rules.MMU_UNKNOWN_COMMAND, f"ptr {ptr:#x} carries command {cmd}")
    if cmd == 1:
        _machphys_update(xen, ptr, val, batch)
        return None
    if batch.denied:
        raise _xsm_refusal(batch)
    pg = _normal_update(xen, ptr, val, batch, cmd == 2)
    return maddr_mfn(ptr) if pg.type is L1 and pg.type_count else None


def _l1_run(xen: XenState, reqs: Sequence[Any], i: int, l1mfn: Mfn, batch: _Batch) -> int:
    """Apply requests from index ``i`` on while each is a well-formed
    MMU_NORMAL_PT_UPDATE (or MMU_PT_UPDATE_PRESERVE_AD, which keeps the
    slot's A/D bits) of an entry of ``l1mfn``, a live L1 of the page-table
    owner; return the index of the first request that is not
    (the general path takes it from there). A refusal carries its index.

    Each entry is ``mod_l1_entry``'s work with everything looked up once per
    run and its common case inlined: a present entry with allowed flags,
    adjusted (``adjust_guest_l1e``), either equal to the old one but for
    harmless flags (the fast path), or mapping FD's own frame read-only or
    writable once more (``get_page_from_l1e``); and the entry it replaces did
    not hold its frame's last reference (``put_page_from_l1e``). Every other
    entry goes through ``mod_l1_entry`` itself. The L1 stays live during the
    run: no L1 entry holds a page-table type reference.
    """
    l1pg, words = xen.frames[l1mfn], xen.mem.words(l1mfn)
    pt_dom, pg_dom = batch.pt_owner, batch.pg_owner
    made, fast_l1 = xen.frames.made, xen.fast_l1
    l1_mask, pv64, fd = pt_dom.l1_mask, pt_dom.pv64, pg_dom.domid
    base = l1mfn << PAGE_SHIFT
    try:
        for i in range(i, len(reqs)):  # noqa: B020 -- the run goes on from i; the handler reads it
            r = reqs[i]
            if type(r) is not MmuUpdate:
                return i
            ptr, val = r.ptr, r.val
            # ptr: command 0 (NORMAL_PT_UPDATE) or 2 (PT_UPDATE_PRESERVE_AD), an
            # entry of this L1 (so in range)
            if (
                type(ptr) is not int
                or ptr & ~0xFFA != base
                or type(val) is not int
                or not 0 <= val < U64
                or not l1pg.type_count
            ):
                return i
            slot = (ptr & 0xFF8) >> 3  # maddr_slot, inlined
            ol1e = words[slot]
            kept = ol1e & AD if ptr & 2 else 0  # PRESERVE_AD keeps the slot's A/D bits
            if val & _PAGE_PRESENT and not val & l1_mask:
                nl1e = val
                if pv64:  # adjust_guest_l1e
                    if not nl1e & _PAGE_USER:
                        nl1e |= GUEST_KERNEL | _PAGE_USER
                    if not nl1e & GUEST_KERNEL:
                        nl1e |= _PAGE_GLOBAL | _PAGE_USER
                if not (ol1e ^ nl1e) & fast_l1:
                    words[slot] = nl1e | kept
                    continue
                # (a record not made yet reads None: mod_l1_entry's path makes it)
                pg = made((nl1e & PTE_MFN_MASK) >> PAGE_SHIFT)  # type: ignore[arg-type]
                if (
                    pg is not None
                    and pg.owner == fd
                    and not pg.xen_heap
                    and (not nl1e & _PAGE_RW or (pg.type_count and pg.type is WRITABLE))
                ):
                    pg.count += 1
                    if nl1e & _PAGE_RW:
                        pg.type_count += 1
                    words[slot] = nl1e | kept
                    if ol1e & _PAGE_PRESENT:  # (I/O frames have no metadata: old None)
                        old = made((ol1e & PTE_MFN_MASK) >> PAGE_SHIFT)  # type: ignore[arg-type]
                        if old is not None and old.count > 1:
                            if ol1e & _PAGE_RW:
                                old.type_count -= 1
                            old.count -= 1
                        else:
                            put_page_from_l1e(xen, ol1e, pt_dom)
                    continue
            mod_l1_entry(xen, l1mfn, words, slot, val, pt_dom, pg_dom, bool(ptr & 2))
    except GuestError as err:
        err.done = i
        raise
    return len(reqs)


@steps.plain_variant(_l1_run, inlines=[get_page_from_l1e, get_page_type, put_page_type])
def _l1_run_plain(xen: XenState, reqs: Sequence[Any], i: int, l1mfn: Mfn, batch: _Batch) -> int:
    """:func:`_l1_run` with nothing inlined: no run at all, every request
    takes the general path (``mod_l1_entry``, ``get_page_from_l1e``, ...) as in
    Xen's loop; bound while a function it inlines is swapped. The same
    behaviour, slower. mm.c ``do_mmu_update``."""
    return i


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
