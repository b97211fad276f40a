"""The flags Xen ORs into the entries it installs (pv/mm.h ``adjust_guest_l1e``
... ``adjust_guest_l4e``), and the cache attributes it forces on I/O mappings.

A 64-bit PV kernel runs in ring 3, like its user code, so the hardware must let
ring 3 through every one of the guest's entries: Xen adds USER to every present
entry of a 64-bit guest. An L1 entry the guest wrote without USER (a kernel
mapping) gets USER plus Xen's private marker ``_PAGE_GUEST_KERNEL`` (pte bit 52);
an L1 entry without that marker gets GLOBAL too, so user mappings survive the
kernel/user page-table switch in the TLB. An L4 entry always gains ACCESSED.
Kernel memory is then hidden from user code only by the *user* L4
(``MMUEXT_NEW_USER_BASEPTR``), which maps no kernel memory at all.

32-bit PAE guests run their kernel in ring 1: their L1/L2 entries are kept as
written and their L3 entries gain USER|RW (removed again when an L3 is torn
down or fails validation, ``unadjust_guest_l3e``).

The adjustments are applied wherever Xen installs an entry: validation
(``promote_l*_table``), ``mod_l*_entry`` and trapped writes. The guest reads its
entries back adjusted.
"""

from __future__ import annotations

from hypervisor.mm.domain import PvDomain

__all__ = [
    "GUEST_KERNEL",
    "adjust_guest_l1e",
    "adjust_guest_upper",
    "io_cache_flip",
    "unadjust_guest_l3e",
]

P, RW, US, PWT, PCD, A, PAT, G = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x80, 0x100
GUEST_KERNEL = 1 << 52
"""``_PAGE_GUEST_KERNEL`` (x86_64/page.h: flag bit 12, i.e. pte bit 52): an L1
entry Xen made user-accessible for a 64-bit guest kernel's own mapping."""
_CACHE_ATTRS = PAT | PCD | PWT
_UC = PCD | PWT
_CACHEABLE = frozenset({0, 1, 5})
"""PAT indices (PAT<<2 | PCD<<1 | PWT) that Xen's PAT (XEN_MSR_PAT) makes
potentially cacheable: WB, WT and WP."""


def adjust_guest_l1e(e: int, d: PvDomain) -> int:
    """pv/mm.h ``adjust_guest_l1e``: a 64-bit guest's present L1 entry without
    USER gains USER|GUEST_KERNEL; one without GUEST_KERNEL gains GLOBAL|USER."""
    if e & P and d.pv64:
        if not e & US:
            e |= GUEST_KERNEL | US
        if not e & GUEST_KERNEL:
            e |= G | US
    return e


def adjust_guest_upper(level: int, e: int, d: PvDomain) -> int:
    """pv/mm.h ``adjust_guest_l2e/l3e/l4e`` for a present entry at ``level`` 2-4:
    64-bit: L2/L3 gain USER, L4 USER|ACCESSED; PAE: L3 gains USER|RW, L4 ACCESSED."""
    if not e & P:
        return e
    if level == 4:
        return e | A | (US if d.pv64 else 0)
    if d.pv64:
        return e | US
    return e | US | RW if level == 3 else e


def unadjust_guest_l3e(e: int, d: PvDomain) -> int:
    """pv/mm.h ``unadjust_guest_l3e``: a PAE L3 entry loses USER|RW|ACCESSED."""
    if not d.pv64 and e & P:
        return e & ~(US | RW | A)
    return e


def io_cache_flip(e: int) -> int:
    """The cache bits Xen flips in an entry mapping I/O memory (the I/O branch
    of mm.c ``get_page_from_l1e``, ``opt_mmio_relax`` off, the default): a
    potentially cacheable mapping is forced to UC. Returns the bits to XOR."""
    index = (e >> 5 & 4) | (e >> 3 & 3)
    return (e & _CACHE_ATTRS) ^ _UC if index in _CACHEABLE else 0
