"""Helpers shared by several hypercalls: resolving foreigndom, finding frames."""

from __future__ import annotations

from hypervisor import rules
from hypervisor.abi import (
    DOMID_IO,
    DOMID_SELF,
    DOMID_XEN,
    HYPERVISOR_COMPAT_VIRT_START,
    HYPERVISOR_VIRT_END,
    Mfn,
)
from hypervisor.errors import GuestError
from hypervisor.mm.domain import PvDomain
from hypervisor.mm.frames import PageInfo
from hypervisor.mm.state import XenState

__all__ = ["get_pg_owner", "guest_va_ok", "ram_page"]


def get_pg_owner(xen: XenState, d: PvDomain, domid: int) -> PvDomain:
    """Resolve a foreigndom value (``get_pg_owner``): DOMID_SELF is the
    caller; the caller's own numeric id and unknown domains are ESRCH."""
    if domid == DOMID_SELF:
        return d
    if domid == d.domid:
        raise GuestError(rules.FOREIGNDOM_SELF_ID, f"foreigndom {domid} is the caller's own id")
    if domid == DOMID_IO:
        return xen.dom_io
    if domid == DOMID_XEN:
        return xen.dom_xen
    dom = xen.domains.get(domid)
    if dom is None:
        raise GuestError(rules.FOREIGNDOM_UNKNOWN, f"there is no domain {domid}")
    return dom


def ram_page(xen: XenState, mfn: Mfn) -> PageInfo | None:
    """The metadata of an ordinary RAM frame, or None (free, I/O or beyond memory)."""
    return None if xen.is_io(mfn) else xen.frames.get(mfn)


def guest_va_ok(d: PvDomain, va: int) -> bool:
    """A guest virtual address: canonical and outside Xen's hole (64-bit), or
    below Xen's compat area (32-bit)."""
    if d.is_32bit:
        return 0 <= va < HYPERVISOR_COMPAT_VIRT_START
    return 0 <= va < 1 << 47 or HYPERVISOR_VIRT_END <= va < 1 << 64
