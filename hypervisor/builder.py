"""The domain builder: the dom0-style start-of-day state of spec section 8.

Layout of the domain's pseudo-physical pages (all mapped at
``virt_base + pfn * 4096``):

    pfn 0 ..              the P2M array (one 8-byte mfn per pfn)   RW
    next                  start_info                               RW
    pt_base ..            bootstrap page tables, top level first   read-only
    the rest              free for the guest, zero-filled          RW

The tables are written as plain data and their state is set directly, as
Xen's own builder does (``dom0_construct_pv``, then
``mark_pv_pt_pages_rdonly``): every frame of the region takes the references
of its one bootstrap mapping as it is allocated (writable for data); each
table frame is then typed and validated with one type reference from its
parent entry, and the top level with two, its pin and vCPU 0's base pointer.
The counts are exactly those that validating the tree through a pin would
give (tests/hypervisor/test_hv_builder.py compares the two), the entries are
stored as validation adjusts them, and Xen's own slots are filled.
"""

from __future__ import annotations

import struct
from array import array

import attrs

from hypervisor import abi
from hypervisor.hw import Mmu
from hypervisor.mm.adjust import GUEST_KERNEL, adjust_guest_upper
from hypervisor.mm.domain import PvDomain, PvVcpu
from hypervisor.mm.frames import PageType
from hypervisor.mm.state import XenState
from hypervisor.mm.upper import LEVEL_TYPE, init_xen_l4_slots, init_xen_pae_l2_slots

__all__ = ["BuiltDomain", "VIRT_BASE", "build_domain"]

P, RW, US, A, D = (
    abi._PAGE_PRESENT,
    abi._PAGE_RW,
    abi._PAGE_USER,
    abi._PAGE_ACCESSED,
    abi._PAGE_DIRTY,
)
VIRT_BASE = {64: 0xFFFFFFFF80000000, 32: 0xC0000000}
"""Where the bootstrap region starts: Linux's ``__START_KERNEL_map`` for 64-bit
guests, ``PAGE_OFFSET`` for 32-bit ones."""
_VIRT_END = {64: 1 << 64, 32: abi.HYPERVISOR_COMPAT_VIRT_START}
_SHIFTS = {64: (39, 30, 21), 32: (30, 21)}
_L1_PROT = {64: P | RW | A | US | GUEST_KERNEL, 32: P | RW | A}
"""dom0_build.c ``L1_PROT`` (the kernel's own mappings, already marked as Xen's
``adjust_guest_l1e`` would) and ``COMPAT_L1_PROT``."""
_UPPER_PROT = {64: P | RW | A | D | US, 32: P | RW | A | D}


@attrs.frozen
class BuiltDomain:
    domain: PvDomain
    start_info: abi.StartInfo
    p2m: tuple[int, ...]


def _tables_needed(virt_base: int, nr_pages: int, width: int) -> list[int]:
    """How many tables each level needs to map ``nr_pages`` pages, top first."""
    end = virt_base + nr_pages * abi.PAGE_SIZE - 1
    counts = [1]
    for shift in _SHIFTS[width]:
        counts.append((end >> shift) - (virt_base >> shift) + 1)
    return counts


def build_domain(
    xen: XenState, domid: int, nr_pages: int, privileged: bool, width: int, nr_vcpus: int
) -> BuiltDomain:
    """Allocate, lay out, map and validate a new domain (``dom0_construct_pv``)."""
    if width not in (32, 64):
        raise ValueError(f"guest_width must be 32 or 64, not {width!r}")
    if nr_vcpus < 1:
        raise ValueError("a domain needs at least one vCPU")
    virt_base = VIRT_BASE[width]
    counts = _tables_needed(virt_base, nr_pages, width)
    p2m_frames = -(-nr_pages * 8 // abi.PAGE_SIZE)
    nr_pt = sum(counts)
    first_free = p2m_frames + 1 + nr_pt
    if nr_pages < first_free + 1 or virt_base + nr_pages * abi.PAGE_SIZE > _VIRT_END[width]:
        raise ValueError(f"a {width}-bit domain cannot be built with {nr_pages} pages")
    mfns = xen.alloc_frames(domid, nr_pages, mapped_writable=True)
    (shinfo,) = xen.alloc_frames(domid, 1)
    d = PvDomain(domid, privileged=privileged, guest_width=width)
    if width == 32:
        d.vm_assist |= 1 << abi.VMASST_TYPE_pae_extended_cr3
    d.vcpus = [PvVcpu(i, d, Mmu(xen.mem, d.levels)) for i in range(nr_vcpus)]
    xen.domains[domid] = d
    _share_xen_page(xen, shinfo)
    xen.m2p.update(zip(mfns, range(len(mfns)), strict=True))
    _write_p2m(xen, mfns)
    pt_pfn = p2m_frames + 1
    _write_tables(xen, d, mfns, virt_base, counts, pt_pfn)
    info = abi.StartInfo(
        nr_pages=nr_pages,
        virt_base=virt_base,
        pt_base=virt_base + pt_pfn * abi.PAGE_SIZE,
        nr_pt_frames=nr_pt,
        mfn_list=virt_base,
        shared_info=shinfo << abi.PAGE_SHIFT,
        flags=1 if privileged else 0,  # SIF_PRIVILEGED
        magic=f"xen-3.0-{'x86_64' if width == 64 else 'x86_32p'}",
        first_p2m_pfn=0,
        nr_p2m_frames=p2m_frames,
    )
    _write_start_info(xen, mfns[p2m_frames], info)
    _mark_tables(xen, d, mfns, counts, pt_pfn)
    return BuiltDomain(d, info, tuple(mfns))


def _share_xen_page(xen: XenState, mfn: abi.Mfn) -> None:
    """shared_info: a Xen-heap page shared writable with its domain."""
    pg = xen.frames[mfn]
    pg.allocated, pg.xen_heap = False, True
    pg.type, pg.type_count, pg.validated = PageType.WRITABLE, 1, True


def _write_p2m(xen: XenState, mfns: list[abi.Mfn]) -> None:
    for i in range(0, len(mfns), 512):
        chunk = mfns[i : i + 512]
        xen.mem.words(mfns[i // 512])[: len(chunk)] = memoryview(
            struct.pack(f"<{len(chunk)}Q", *chunk)
        ).cast("Q")


def _write_tables(
    xen: XenState, d: PvDomain, mfns: list[abi.Mfn], virt_base: int, counts: list[int], pt_pfn: int
) -> None:
    """Fill the bootstrap tables, a whole frame at a time: every page mapped,
    the table frames themselves read-only, upper entries as validation
    adjusts them (``adjust_guest_l2e/l3e/l4e``), then Xen's own slots.
    ``counts`` is the number of tables per level, top first; the tables of
    each level follow each other from ``pt_pfn`` on, and each covers a
    contiguous range of ``virt_base``'s region (which starts on an L2
    boundary)."""
    width = d.guest_width
    shifts = (*_SHIFTS[width], 12)  # what one entry of each level covers
    first = pt_pfn
    for level_i in range(len(counts) - 1):
        shift = shifts[level_i]
        level = d.levels - level_i
        mask = 3 if width == 32 and level_i == 0 else 511
        prot = adjust_guest_upper(level, P if level == 3 and width == 32 else _UPPER_PROT[width], d)
        below = first + counts[level_i]
        children = [abi.make_pte(mfns[below + n], prot) for n in range(counts[level_i + 1])]
        start = (virt_base >> shift) & mask  # slot of the first child in the first table
        _fill(xen, [mfns[first + n] for n in range(counts[level_i])], start, children)
        first = below
    leaves = _leaves(mfns, _L1_PROT[width])
    for pfn in range(pt_pfn, pt_pfn + sum(counts)):
        leaves[pfn] &= ~RW
    _fill(xen, [mfns[first + n] for n in range(counts[-1])], 0, leaves)


def _leaves(mfns: list[abi.Mfn], prot: int) -> array[int]:
    """``make_pte(mfn, prot)`` of every frame, in order, computed on all of
    them at once: the frame numbers, as one little-endian integer of 64-bit
    lanes, shifted left by PAGE_SHIFT (each lane's mfn < 2**52, so no bit
    crosses into the next lane), ORed with ``prot`` repeated in every lane
    (which touches only the flag bits, 0-11 and 52-63)."""
    n = len(mfns)
    lanes = int.from_bytes(array("Q", mfns), "little") << abi.PAGE_SHIFT
    lanes |= int.from_bytes(prot.to_bytes(8, "little") * n, "little")
    return array("Q", lanes.to_bytes(8 * n, "little"))


def _fill(
    xen: XenState, tables: list[abi.Mfn], start: int, entries: list[int] | array[int]
) -> None:
    """Write ``entries`` into consecutive slots of ``tables``, from slot
    ``start`` of the first, 512 to a table, one slice assignment per frame."""
    pos = 0
    for n, mfn in enumerate(tables):
        slot = start if n == 0 else 0
        chunk = entries[pos : pos + 512 - slot]
        xen.mem.words(mfn)[slot : slot + len(chunk)] = (
            chunk if isinstance(chunk, array) else array("Q", chunk)
        )
        pos += len(chunk)


def _write_start_info(xen: XenState, mfn: int, info: abi.StartInfo) -> None:
    """``struct start_info`` in guest memory, at Xen's offsets."""
    page = xen.mem.page(mfn)
    page[0:32] = info.magic.encode().ljust(32, b"\0")
    struct.pack_into("<QQI", page, 32, info.nr_pages, info.shared_info, info.flags)
    struct.pack_into("<QQQ", page, 88, info.pt_base, info.nr_pt_frames, info.mfn_list)
    struct.pack_into("<QQ", page, 1152, info.first_p2m_pfn, info.nr_p2m_frames)


def _mark_tables(
    xen: XenState, d: PvDomain, mfns: list[abi.Mfn], counts: list[int], pt_pfn: int
) -> None:
    """Type and validate the bootstrap tables directly (dom0_build.c
    ``mark_pv_pt_pages_rdonly``): each holds the allocation, its read-only
    mapping and, below the top, its parent entry's general and type
    references; the top level instead holds a pin and vCPU 0's base pointer
    (type count 2) and is loaded. A PAE guest's L2 in slot 3 of the L3 is
    Xen's L2 (``PGT_pae_xen_l2``) and gets Xen's slots."""
    pfn = pt_pfn
    for level_i, n in enumerate(counts):
        level = d.levels - level_i
        for _ in range(n):
            pg = xen.frames[mfns[pfn]]
            pg.type, pg.type_count, pg.count = LEVEL_TYPE[level], 1, 3
            pfn += 1
    top = mfns[pt_pfn]
    pg = xen.frames[top]
    pg.type_count, pg.count, pg.pinned = 2, 4, True
    if d.is_32bit:
        xen_l2 = mfns[pt_pfn + 1]
        xen.frames[xen_l2].pae_xen_l2 = True
        init_xen_pae_l2_slots(xen.mem.words(xen_l2))
    else:
        init_xen_l4_slots(xen.mem.words(top))
    v0 = d.vcpus[0]
    v0.guest_table = top
    v0.mmu.load_root(top)
