"""The page-table recipe, one small step per lesson function.

The 2011 recipe for a table frame: **zero** it, **fill** its entries through
the direct map while it is still plain data, **make it read-only** (its own
direct-map entry loses RW), **pin** it (Xen validates the tree) or **link** it
into a live parent, **load** it as a base. Teardown mirrors it: switch away,
**unpin**, **make it writable** again, **free** it.

Steps that talk to Xen only *queue* their request (``km.hc``); whoever runs
the recipe decides where the batch ends. Each is swappable (``minikern.steps``).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from hypervisor import abi
from hypervisor.abi import Pfn
from minikern import steps
from minikern.kmem import TABLE_PROT, KernelMemory, map_page, pfn_pte, pfn_to_mfn

__all__ = [
    "JUNK",
    "PIN_CMD",
    "fill_table",
    "free_frame",
    "link_table",
    "load_base",
    "make_readonly",
    "make_writable",
    "pin_table",
    "unlink_table",
    "unpin_table",
    "zero_frame",
]

JUNK = b"\x01" * abi.PAGE_SIZE
"""Freed frames are filled with this (xv6's ``memset(pa, 1, PGSIZE)``): as a
table every entry would be present with an absurd mfn, so a frame used as a
table without being zeroed fails validation loudly."""
PIN_CMD = {
    1: abi.MMUEXT_PIN_L1_TABLE,
    2: abi.MMUEXT_PIN_L2_TABLE,
    3: abi.MMUEXT_PIN_L3_TABLE,
    4: abi.MMUEXT_PIN_L4_TABLE,
}
"""Table level -> the ``mmuext_op`` command that pins a table of that level."""


@steps.swappable
def zero_frame(km: KernelMemory, pfn: Pfn) -> None:
    """Zero ``pfn`` with plain stores through the direct map (it must still be
    writable: a dirty frame could fail validation later)."""
    km.vcpu.write(km.va(pfn), bytes(abi.PAGE_SIZE))


@steps.swappable
def fill_table(km: KernelMemory, pfn: Pfn, entries: Mapping[int, int]) -> None:
    """Write ``entries`` (slot -> entry value) into the freshly zeroed table
    frame ``pfn`` with plain stores, while it is still plain data: no
    hypercall at all."""
    image = bytearray(abi.PAGE_SIZE)
    for slot, value in entries.items():
        struct.pack_into("<Q", image, 8 * slot, value)
    km.vcpu.write(km.va(pfn), bytes(image))


@steps.swappable
def make_readonly(km: KernelMemory, pfn: Pfn, uvmf: int) -> None:
    """Queue: drop RW from ``pfn``'s own direct-map entry (``update_va_mapping``,
    then the ``uvmf`` flush). A frame Xen is to use as a table may not be
    mapped writable anywhere."""
    map_page(km, km.va(pfn), pfn, km.kernel_prot & ~abi._PAGE_RW, uvmf)


@steps.swappable
def pin_table(km: KernelMemory, pfn: Pfn, level: int) -> None:
    """Queue: ``MMUEXT_PIN_Ln_TABLE`` of ``pfn`` as a level-``level`` table --
    Xen validates the tree below it and keeps it typed until unpinned."""
    km.hc.ext(PIN_CMD[level], pfn_to_mfn(km, pfn))


@steps.swappable
def link_table(km: KernelMemory, parent: Pfn, slot: int, child: Pfn) -> None:
    """Queue: point entry ``slot`` of live table ``parent`` at table ``child``
    (``mmu_update``; Xen validates ``child`` as the level below)."""
    km.hc.mmu(km.entry_ma(parent, slot) | abi.MMU_NORMAL_PT_UPDATE, pfn_pte(km, child, TABLE_PROT))


@steps.swappable
def unlink_table(km: KernelMemory, parent: Pfn, slot: int) -> None:
    """Queue: clear entry ``slot`` of live table ``parent``."""
    km.hc.mmu(km.entry_ma(parent, slot) | abi.MMU_NORMAL_PT_UPDATE, 0)


@steps.swappable
def load_base(km: KernelMemory, kernel_l4: Pfn, user_l4: Pfn | None) -> None:
    """Now: ``MMUEXT_NEW_BASEPTR`` of ``kernel_l4`` and ``MMUEXT_NEW_USER_BASEPTR``
    of ``user_l4`` (mfn 0 for none) in one ``mmuext_op``, after any queued work.
    A 32-bit PAE guest (``km.pae``) has one base per vCPU, its L3 (passed as
    ``kernel_l4``), and no user base: Xen refuses NEW_USER_BASEPTR there with
    EINVAL, so with ``user_l4`` None only NEW_BASEPTR goes."""
    ops: list[tuple[int, int]] = [(abi.MMUEXT_NEW_BASEPTR, pfn_to_mfn(km, kernel_l4))]
    if user_l4 is not None or not km.pae:
        user = pfn_to_mfn(km, user_l4) if user_l4 is not None else 0
        ops.append((abi.MMUEXT_NEW_USER_BASEPTR, user))
    km.hc.now(*ops)


@steps.swappable
def unpin_table(km: KernelMemory, pfn: Pfn) -> None:
    """Queue: ``MMUEXT_UNPIN_TABLE`` of ``pfn``."""
    km.hc.ext(abi.MMUEXT_UNPIN_TABLE, pfn_to_mfn(km, pfn))


@steps.swappable
def make_writable(km: KernelMemory, pfn: Pfn, uvmf: int) -> None:
    """Queue: give ``pfn``'s direct-map entry RW back (Xen allows it only once
    the frame is no longer a table), then the ``uvmf`` flush."""
    map_page(km, km.va(pfn), pfn, km.kernel_prot, uvmf)


@steps.swappable
def free_frame(km: KernelMemory, pfn: Pfn) -> None:
    """Junk-fill ``pfn`` through the direct map and return it to the allocator.
    Any queued work is issued first: the frame must really be writable now."""
    km.hc.flush()
    km.vcpu.write(km.va(pfn), JUNK)
    km.alloc.release(pfn)
