"""``HYPERVISOR_mmuext_op`` (number 26): pin and unpin tables, load base
pointers, flush TLBs, clear and copy pages. Each command is a small handler
registered in :data:`COMMANDS`; the batch stops at the first failure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypervisor import rules
from hypervisor.abi import DOMID_IO, DOMID_SELF, DOMID_XEN, Mfn, MmuExtCmd
from hypervisor.errors import GuestError
from hypervisor.hypercalls.args import as_int, as_sequence, mmuext_request
from hypervisor.hypercalls.common import addr_ok, get_pg_owner, ram_page
from hypervisor.hypercalls.dispatch import hypercall
from hypervisor.mm.domain import PvDomain, PvVcpu
from hypervisor.mm.explain import held_by, not_owned, type_name
from hypervisor.mm.frames import PageInfo, PageType
from hypervisor.mm.refs import get_page, get_page_type, put_page, put_page_and_type
from hypervisor.mm.state import XenState
from hypervisor.rules import Rule

__all__ = ["COMMANDS", "do_mmuext_op"]

Op = Callable[[XenState, PvVcpu, PvDomain, int, int], None]
COMMANDS: dict[int, Op] = {}
WRITABLE = PageType.WRITABLE
PIN_TYPE = {0: PageType.L1, 1: PageType.L2, 2: PageType.L3, 3: PageType.L4}
ZERO_BLOCK_PTR = 0xBAD0BAD0BAD0BAD0
"""What Xen stores as the LDT base of an LDT with no entries."""


def command(*numbers: int) -> Callable[[Op], Op]:
    def deco(fn: Op) -> Op:
        for n in numbers:
            COMMANDS[n] = fn
        return fn

    return deco


@hypercall(26, "mmuext_op", 1, 2)
def do_mmuext_op(xen: XenState, v: PvVcpu, ops: Any, foreigndom: Any = DOMID_SELF) -> int:
    """mm.c ``do_mmuext_op``. Returns the number of ops done. Checked in Xen's
    order: the op array (EFAULT), foreigndom (ESRCH; DOMID_IO and DOMID_XEN
    count as PV domains), XSM (EPERM unless the caller is privileged), then
    each op in turn."""
    d = v.domain
    fd = as_int(foreigndom, 32, "foreigndom")
    ops = as_sequence(ops, "ops")
    pg_owner = get_pg_owner(xen, d, fd & 0xFFFF)
    if pg_owner is not d and not d.privileged:
        raise GuestError(
            rules.FOREIGNDOM_NOT_PRIVILEGED, f"d{d.domid} may not act on {_name(pg_owner)}"
        )
    xen.stats["requests"] += len(ops)
    for i, op in enumerate(ops):
        cmd = arg1 = -1
        try:
            cmd, arg1, arg2 = mmuext_request(op)
            handler = COMMANDS.get(cmd)
            if handler is None:
                raise GuestError(rules.MMUEXT_UNKNOWN_COMMAND, f"command {cmd}")
            handler(xen, v, pg_owner, arg1, arg2)
        except GuestError as err:
            err.done = i
            err.context = _context(i, len(ops), cmd, arg1)
            raise
    return len(ops)


def _name(d: PvDomain) -> str:
    return {DOMID_IO: "DOMID_IO", DOMID_XEN: "DOMID_XEN"}.get(d.domid, f"d{d.domid}")


def _context(i: int, n: int, cmd: int, arg1: int) -> str:
    """``"MMUEXT_PIN_L1_TABLE of mfn 0x1234"`` (with the op's index in a batch)."""
    try:
        name = MmuExtCmd(cmd).name
    except ValueError:
        return f"mmuext_op op {i}" if n > 1 else "mmuext_op"
    where = f" (op {i} of {n})" if n > 1 else ""
    if cmd in _MFN_COMMANDS:
        return f"{name} of mfn {arg1:#x}{where}"
    return f"{name}{where}"


_MFN_COMMANDS = {0, 1, 2, 3, 4, 5, 15, 16, 17}


def _owned(xen: XenState, mfn: Mfn, owner: PvDomain, refuse: Rule, role: str = "") -> PageInfo:
    """Take a general reference on ``mfn`` for ``owner`` or refuse with rule
    ``refuse`` (mm.c ``get_page_from_gfn``). Released with ``put_page``.
    ``role`` names the argument in the message (``"the source: "``). The first
    MiB, DOMID_IO's, has no frame-table entries here, so it is never found
    (see docs/faithfulness/audit.md)."""
    pg = ram_page(xen, mfn)
    if not get_page(pg, owner.domid):
        raise GuestError(refuse, f"{role}{not_owned(xen, mfn, owner.domid)}")
    assert pg is not None
    return pg


def _get_page_and_type(
    xen: XenState, mfn: Mfn, owner: PvDomain, t: PageType, refuse: Rule, role: str = ""
) -> PageInfo:
    """A general and a type-``t`` reference together, or neither: ``refuse``
    when ``owner`` does not own the frame, the type's own rule otherwise
    (mm.h ``get_page_and_type``). Released with ``put_page_and_type``."""
    pg = _owned(xen, mfn, owner, refuse, role)
    try:
        get_page_type(xen, mfn, pg, t)
    except GuestError:
        put_page(xen, mfn, pg)
        raise
    return pg


def _get_top(xen: XenState, mfn: Mfn, owner: PvDomain, refuse: Rule, how: str) -> PageInfo:
    """:func:`_get_page_and_type` for a top-level table (an L4, or a PAE L3),
    with a hint when the frame is most likely not the top-level table the
    guest meant: ``how`` (``"NEW_BASEPTR"``) made it one."""
    t = PageType.L3 if owner.is_32bit else PageType.L4
    pg = ram_page(xen, mfn)
    before = None if pg is None else (pg.type, pg.type_count)
    try:
        return _get_page_and_type(xen, mfn, owner, t, refuse)
    except GuestError as err:
        if before is not None and err.rule.id.split(".")[0] in _TOP_CONFUSIONS:
            _top_hint(err, mfn, t, how, *before)
        raise


_TOP_CONFUSIONS = {"entry", "type", "l1", "l4"}
"""Rule areas whose refusals, when a frame fails to become a top-level table,
suggest it is not one (the PAE- and linear-specific rules do not)."""


def _top_hint(
    err: GuestError, mfn: Mfn, t: PageType, how: str, was: PageType, was_count: int
) -> None:
    """ "Is this your top-level table?" for a frame that failed to become one."""
    ask = f"is mfn {mfn:#x} your top-level table?"
    if was_count and was is not t:
        hint = f"{ask} It is in use as {type_name(PageInfo(None, type=was))}."
    elif err.path:
        slot = err.path[0][2]
        hint = f"{ask} {how} validated it as an L{int(t)} table, and its slot {slot} failed."
    else:
        return
    err.hint = f"{hint} {err.hint}" if err.hint else hint


def _self_only(v: PvVcpu, pg_owner: PvDomain) -> None:
    if pg_owner is not v.domain:
        raise GuestError(rules.MMUEXT_FOREIGN_OP, f"foreigndom names d{pg_owner.domid}")


def _make_pin(t: PageType) -> Op:
    """MMUEXT_PIN_Ln_TABLE: validate as Ln and hold it with a pin (not nested)."""

    def pin(xen: XenState, v: PvVcpu, pg_owner: PvDomain, arg1: int, _arg2: int) -> None:
        if t is PageType.L4 and pg_owner.is_32bit:
            return  # PIN_L4 on a 32-bit guest: a silent no-op
        mfn = Mfn(arg1)
        if t is (PageType.L3 if pg_owner.is_32bit else PageType.L4):
            pg = _get_top(xen, mfn, pg_owner, rules.PIN_NOT_OWNED, f"PIN_L{int(t)}_TABLE")
        else:
            pg = _get_page_and_type(xen, mfn, pg_owner, t, rules.PIN_NOT_OWNED)
        if pg.pinned:
            put_page_and_type(xen, mfn, pg)
            raise GuestError(
                rules.PIN_ALREADY_PINNED, f"mfn {mfn:#x} is already pinned as {type_name(pg)}"
            )
        pg.pinned = True

    pin.__doc__ = f"MMUEXT_PIN_L{int(t)}_TABLE (mm.c do_mmuext_op)."
    return pin


for _cmd, _t in PIN_TYPE.items():
    COMMANDS[_cmd] = _make_pin(_t)


@command(4)
def _unpin(xen: XenState, v: PvVcpu, pg_owner: PvDomain, arg1: int, _arg2: int) -> None:
    """MMUEXT_UNPIN_TABLE: drop the pin's references. Being the current base,
    or being referenced by other tables, is *not* checked."""
    mfn = Mfn(arg1)
    pg = _owned(xen, mfn, pg_owner, rules.UNPIN_NOT_OWNED)
    if not pg.pinned:
        put_page(xen, mfn, pg)
        raise GuestError(rules.UNPIN_NOT_PINNED, f"mfn {mfn:#x} is {held_by(xen, mfn, pg)}")
    pg.pinned = False
    put_page_and_type(xen, mfn, pg)
    put_page(xen, mfn, pg)


@command(5)
def _new_baseptr(xen: XenState, v: PvVcpu, pg_owner: PvDomain, arg1: int, _arg2: int) -> None:
    """MMUEXT_NEW_BASEPTR (mm.c ``new_guest_cr3``): takes its own top-level
    type reference, validating the tree if needed -- no pin required."""
    mfn = Mfn(arg1)
    if pg_owner is not v.domain:
        raise GuestError(rules.BASEPTR_FOREIGN, f"foreigndom names d{pg_owner.domid}")
    old = v.guest_table
    if mfn == old:
        _load(xen, v, mfn)
        return
    _get_top(xen, mfn, v.domain, rules.BASEPTR_NOT_OWNED, "NEW_BASEPTR")
    v.guest_table = mfn
    if not v.in_user_mode:
        _load(xen, v, mfn)
    if old:
        put_page_and_type(xen, old, xen.frames[old])


def _load(xen: XenState, v: PvVcpu, mfn: Mfn) -> None:
    v.mmu.root = mfn
    xen.flush_vcpu(v, "new_baseptr")


@command(15)
def _new_user_baseptr(xen: XenState, v: PvVcpu, pg_owner: PvDomain, arg1: int, _a: int) -> None:
    """MMUEXT_NEW_USER_BASEPTR: the L4 used in user mode (64-bit only); 0 clears
    it. A 32-bit guest's op is refused while it is translated
    (x86_64/compat/mm.c ``compat_mmuext_op``), before any other check of it."""
    mfn = Mfn(arg1)
    if v.domain.is_32bit:
        raise GuestError(rules.BASEPTR_NO_USER_BASE_32, f"d{v.domain.domid} is a 32-bit guest")
    if pg_owner is not v.domain:
        raise GuestError(rules.BASEPTR_FOREIGN, f"foreigndom names d{pg_owner.domid}")
    old = v.guest_table_user
    if mfn == old:
        return
    if mfn:
        _get_top(xen, mfn, v.domain, rules.BASEPTR_NOT_OWNED, "NEW_USER_BASEPTR")
    v.guest_table_user = mfn
    if old:
        put_page_and_type(xen, old, xen.frames[old])


def _canonical(va: int) -> bool:
    """``is_canonical_address`` (48-bit virtual addresses)."""
    return va < 1 << 47 or va >= (1 << 64) - (1 << 47)


def _vcpus_in(d: PvDomain, mask: int) -> list[PvVcpu]:
    return [w for w in d.vcpus if mask >> w.vcpu_id & 1]


def _make_flush(scope: str, per_va: bool) -> Op:
    """MMUEXT_TLB_FLUSH_* / MMUEXT_INVLPG_* (LOCAL, MULTI with a vCPU bitmap in
    arg2, ALL). INVLPG of an address it cannot name is a silent no-op: locally
    a non-canonical one (``paging_invlpg``), elsewhere one failing
    ``__addr_ok``."""
    va_ok = _canonical if scope == "local" else addr_ok

    def flush(xen: XenState, v: PvVcpu, pg_owner: PvDomain, arg1: int, arg2: int) -> None:
        _self_only(v, pg_owner)
        d = v.domain
        targets = {"local": [v], "multi": _vcpus_in(d, arg2), "all": d.vcpus}[scope]
        reason = f"{'invlpg' if per_va else 'tlb_flush'}_{scope}"
        for w in targets:
            if not per_va:
                xen.flush_vcpu(w, reason)
            elif va_ok(arg1):
                xen.flush_va(w, arg1, reason)

    return flush


for _cmd, (_scope, _per_va) in {
    6: ("local", False),
    7: ("local", True),
    8: ("multi", False),
    9: ("multi", True),
    10: ("all", False),
    11: ("all", True),
}.items():
    COMMANDS[_cmd] = _make_flush(_scope, _per_va)


@command(12, 18)
def _flush_cache(xen: XenState, v: PvVcpu, pg_owner: PvDomain, _arg1: int, _arg2: int) -> None:
    """MMUEXT_FLUSH_CACHE(_GLOBAL): only with I/O privileges."""
    _self_only(v, pg_owner)
    if not v.domain.privileged:
        raise GuestError(
            rules.MMUEXT_CACHE_FLUSH_DENIED, f"d{v.domain.domid} has no I/O privileges"
        )


@command(13)
def _set_ldt(xen: XenState, v: PvVcpu, pg_owner: PvDomain, base: int, ents: int) -> None:
    """MMUEXT_SET_LDT: record the LDT (its frames would be typed lazily on use).
    At most 8192 entries; with entries, the base must be page aligned and pass
    ``__addr_ok`` (where the table ends is not checked); with none, the base is
    ignored (Xen stores ``ZERO_BLOCK_PTR``). A changed LDT drops the old LDT's
    shadow mappings, which this model does not create, so no flush is needed."""
    _self_only(v, pg_owner)
    if ents > 8192:
        why = f"{ents} entries is more than 8192"
    elif ents and base & 0xFFF:
        why = f"base {base:#x} is not page aligned"
    elif ents and not addr_ok(base):
        why = f"base {base:#x} is not a guest address (below 2^47 or above Xen's hole)"
    else:
        v.ldt_base, v.ldt_ents = (base if ents else ZERO_BLOCK_PTR), ents
        return
    raise GuestError(rules.MMUEXT_BAD_LDT, why)


@command(16)
def _clear_page(xen: XenState, v: PvVcpu, pg_owner: PvDomain, arg1: int, _arg2: int) -> None:
    """MMUEXT_CLEAR_PAGE: zero a frame that can take the writable type."""
    mfn = Mfn(arg1)
    pg = _get_page_and_type(xen, mfn, pg_owner, WRITABLE, rules.PAGE_NOT_OWNED)
    xen.mem.zero(mfn)
    put_page_and_type(xen, mfn, pg)


@command(17)
def _copy_page(xen: XenState, v: PvVcpu, pg_owner: PvDomain, arg1: int, arg2: int) -> None:
    """MMUEXT_COPY_PAGE: copy ``arg2`` (any type) over ``arg1`` (must take writable)."""
    dst, src = Mfn(arg1), Mfn(arg2)
    spg = _owned(xen, src, pg_owner, rules.PAGE_NOT_OWNED, "the source: ")
    try:
        dpg = _get_page_and_type(
            xen, dst, pg_owner, WRITABLE, rules.PAGE_NOT_OWNED, "the destination: "
        )
    except GuestError:
        put_page(xen, src, spg)
        raise
    xen.mem.copy(dst, src)
    put_page_and_type(xen, dst, dpg)
    put_page(xen, src, spg)


@command(19, 20)
def _superpages(xen: XenState, v: PvVcpu, pg_owner: PvDomain, _arg1: int, _arg2: int) -> None:
    """MMUEXT_MARK_SUPER / UNMARK_SUPER: removed in Xen 4.10."""
    raise GuestError(rules.MMUEXT_NO_SUPERPAGES, "")
