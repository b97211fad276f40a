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
from hypervisor.hw import WalkFault
from hypervisor.mm.domain import PvDomain, PvVcpu
from hypervisor.mm.frames import PageInfo
from hypervisor.mm.state import XenState

__all__ = ["addr_ok", "copy_from_guest", "get_pg_owner", "guest_va_ok", "ram_page", "vcpumask"]


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
    if d.pv64:
        return 0 <= va < 1 << 47 or HYPERVISOR_VIRT_END <= va < 1 << 64
    return 0 <= va < HYPERVISOR_COMPAT_VIRT_START


def addr_ok(va: int) -> bool:
    """``__addr_ok``: an address Xen lets a guest hand it (below 2^47 or above
    Xen's hole), the same test for 32-bit guests."""
    return 0 <= va < 1 << 47 or HYPERVISOR_VIRT_END <= va < 1 << 64


def copy_from_guest(xen: XenState, v: PvVcpu, va: int, n: int) -> bytes | None:
    """``n`` bytes at guest virtual address ``va``, read as Xen's
    ``copy_from_guest`` does: through the vCPU's current (kernel) page tables
    and its TLB, with the guest's rights. None when the range is not a guest
    address or a page of it is not mapped (Xen: the copy faults, EFAULT)."""
    if not (addr_ok(va) and addr_ok(va + n - 1)):
        return None
    out = bytearray()
    while len(out) < n:
        off = va & 0xFFF
        chunk = min(n - len(out), 4096 - off)
        try:
            mfn = v.mmu.translate(va, write=False, user=False)
        except WalkFault:
            return None
        if xen.mem.is_ram(mfn):
            out += xen.mem.page(mfn)[off : off + chunk]
        else:
            out += b"\xff" * chunk
        va += chunk
    return bytes(out)


def vcpumask(xen: XenState, v: PvVcpu, ptr: int) -> list[PvVcpu] | None:
    """The vCPUs named by the bitmap at guest address ``ptr`` (mm.c
    ``vcpumask_to_pcpumask``): one word per 64 vCPUs (32 for a 32-bit guest),
    read only as far as the domain has vCPUs. None if a word cannot be read."""
    d = v.domain
    width = 32 if d.is_32bit else 64
    targets: list[PvVcpu] = []
    for first in range(0, len(d.vcpus), width):
        raw = copy_from_guest(xen, v, ptr + first // 8, width // 8)
        if raw is None:
            return None
        bits = int.from_bytes(raw, "little")
        targets += [w for w in d.vcpus[first : first + width] if bits >> (w.vcpu_id - first) & 1]
    return targets
