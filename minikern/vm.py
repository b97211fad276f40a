"""mmap, munmap, mprotect and the page-fault handler of one address space.

VMAs are ranges (``mm.vmas``, a :class:`~minikern.vma.VmaMap`), and the work
of ``mmap``/``munmap``/``mprotect`` is proportional to the pages actually
present (``mm.ptes``), never to the length asked: mapping 128 TiB is one range.
Anonymous memory is demand-zero: mmap records the VMA, and the first touch
faults a zeroed frame in (``populate=True`` maps every page at once, Linux's
``MAP_POPULATE``). All
leaf changes are batched ``mmu_update`` requests (PRESERVE_AD for mprotect, so
Accessed/Dirty bits the hardware set meanwhile survive), followed by the TLB
flush they need: INVLPG per page up to :data:`FLUSH_CEILING` pages, one full
flush beyond.

Lesson functions here: :func:`flush_tlb` (05) and :func:`copy_on_write` (09).
"""

from __future__ import annotations

from collections.abc import Sequence

from hypervisor import abi
from hypervisor.abi import Pfn
from minikern import steps
from minikern.args import choice_arg
from minikern.build import tables_for
from minikern.errors import SegmentationFault, panic
from minikern.kmem import KernelMemory
from minikern.pgtable import AddressSpace
from minikern.recipe import free_frame, zero_frame

__all__ = [
    "FLUSH_CEILING",
    "PROTS",
    "copy_on_write",
    "do_mmap",
    "do_mprotect",
    "do_munmap",
    "flush_tlb",
    "handle_fault",
    "put_data",
]

PROTS = ("r", "rw")
FLUSH_CEILING = 33
"""x86's ``tlb_single_page_flush_ceiling``: beyond it, flush everything."""


def page_range(va: int, length: int, limit: int) -> range:
    """The vpns of ``[va, va + length)``: ``va`` page-aligned, inside user space
    (below ``limit``: ``mm.user_limit``)."""
    for name, value in (("va", va), ("length", length)):
        if type(value) is not int:
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not 0 <= va < limit or va % abi.PAGE_SIZE:
        raise ValueError(f"va must be page-aligned and below {limit:#x}, not {va:#x}")
    if not 0 < length <= limit - va:
        raise ValueError(
            f"length must be > 0 and end by {limit:#x} (at most {limit - va:#x} "
            f"from va {va:#x}), not {length:#x}"
        )
    return range(va >> abi.PAGE_SHIFT, (va + length + abi.PAGE_SIZE - 1) >> abi.PAGE_SHIFT)


def _check_prot(prot: str) -> None:
    choice_arg("prot", prot, PROTS)


def _require_mapped(mm: AddressSpace, vpns: range, what: str) -> None:
    hole = mm.vmas.first_hole(vpns.start, vpns.stop)
    if hole is not None:
        raise SegmentationFault(hole << abi.PAGE_SHIFT, f"{what} of a page that was never mapped")


def present_in(mm: AddressSpace, vpns: range) -> list[int]:
    """The pages of ``vpns`` that have a frame mapped, in order; the cost is
    the smaller of the range and the pages present, never the length asked."""
    if len(vpns) <= len(mm.ptes):
        return [vpn for vpn in vpns if vpn in mm.ptes]
    return sorted(vpn for vpn in mm.ptes if vpn in vpns)


@steps.swappable
def flush_tlb(km: KernelMemory, vpns: Sequence[int]) -> None:
    """Queue the TLB flush the changed leaves of ``vpns`` (virtual page numbers
    of the loaded tree) need: ``MMUEXT_INVLPG_LOCAL`` of each page's address
    up to :data:`FLUSH_CEILING` pages, one ``MMUEXT_TLB_FLUSH_LOCAL`` beyond
    (Linux's ``flush_tlb_mm_range`` makes the same trade)."""
    if len(vpns) > FLUSH_CEILING:
        km.hc.ext(abi.MMUEXT_TLB_FLUSH_LOCAL)
        return
    for vpn in vpns:
        km.hc.ext(abi.MMUEXT_INVLPG_LOCAL, vpn << abi.PAGE_SHIFT)


def put_data(km: KernelMemory, pfns: Sequence[Pfn]) -> None:
    """Drop one mapping of each data frame; free those nobody maps any more."""
    for pfn in pfns:
        left = km.mapcount[pfn] - 1
        if left:
            km.mapcount[pfn] = left
        else:
            del km.mapcount[pfn]
            free_frame(km, pfn)


def do_mmap(
    km: KernelMemory, mm: AddressSpace, va: int, length: int, prot: str, populate: bool = False
) -> None:
    """Map ``[va, va+length)`` with ``prot``, replacing what was there (MAP_FIXED).
    With ``populate``, every page gets its frame now (memory checked first)."""
    vpns = page_range(va, length, mm.user_limit)
    _check_prot(prot)
    if populate:
        km.alloc.ensure(len(vpns))
        km.alloc.ensure(len(tables_for(list(vpns), mm.levels) - mm.tables.keys()) + len(vpns))
    old = present_in(mm, vpns)
    if old:
        unmap_pages(km, mm, old)
    mm.vmas.set(vpns.start, vpns.stop, prot)
    if populate:
        with km.hc.lazy():
            for vpn in vpns:
                pfn = km.alloc.alloc()
                zero_frame(km, pfn)
                km.mapcount[pfn] = 1
                mm.ensure_l1(vpn)
                mm.set_leaf(vpn, pfn, prot == "rw", abi.MMU_NORMAL_PT_UPDATE)


def do_munmap(km: KernelMemory, mm: AddressSpace, va: int, length: int) -> None:
    """Unmap ``[va, va+length)``; every page of it must be mapped."""
    vpns = page_range(va, length, mm.user_limit)
    _require_mapped(mm, vpns, "munmap")
    unmap_pages(km, mm, present_in(mm, vpns))
    mm.vmas.set(vpns.start, vpns.stop, None)


def unmap_pages(km: KernelMemory, mm: AddressSpace, present: list[int]) -> None:
    """Clear the leaves of the ``present`` pages, prune emptied tables (unlink,
    unpin, make writable), flush the TLB -- one batch -- then free the frames."""
    gone: list[Pfn] = []
    with km.hc.lazy():
        dropped = [mm.clear_leaf(vpn) for vpn in present]
        for l1_index in sorted({vpn >> 9 for vpn in present}):
            gone += mm.prune(l1_index << 9)
        flush_tlb(km, present)
    put_data(km, dropped)
    for pfn in gone:
        free_frame(km, pfn)


def do_mprotect(km: KernelMemory, mm: AddressSpace, va: int, length: int, prot: str) -> None:
    """Change the protection of mapped pages; a shared (copy-on-write) page
    stays read-only until the write fault copies it."""
    vpns = page_range(va, length, mm.user_limit)
    _check_prot(prot)
    _require_mapped(mm, vpns, "mprotect")
    mm.vmas.set(vpns.start, vpns.stop, prot)
    changed: list[int] = []
    with km.hc.lazy():
        for vpn in present_in(mm, vpns):
            pfn = mm.ptes[vpn]
            rw = prot == "rw" and km.mapcount[pfn] == 1
            if rw != (vpn in mm.writable):
                mm.set_leaf(vpn, pfn, rw, abi.MMU_PT_UPDATE_PRESERVE_AD)
                changed.append(vpn)
        if changed:
            flush_tlb(km, changed)


def handle_fault(km: KernelMemory, mm: AddressSpace, va: int, write: bool) -> None:
    """Resolve a user page fault at ``va`` or raise SegmentationFault."""
    vpn = va >> abi.PAGE_SHIFT
    prot = mm.vmas.find(vpn) if 0 <= va < mm.user_limit else None
    if prot is None:
        raise SegmentationFault(va, "no mapping at this address")
    if write and prot != "rw":
        raise SegmentationFault(va, "write to a read-only mapping")
    if vpn not in mm.ptes:
        _demand_zero(km, mm, vpn, prot == "rw")
    elif write and vpn not in mm.writable:
        copy_on_write(km, mm, vpn)
    else:
        raise panic(f"trap: fault at {va:#x} on a page mapped as it should be")


def _demand_zero(km: KernelMemory, mm: AddressSpace, vpn: int, rw: bool) -> None:
    """First touch: a zeroed frame, mapped with the VMA's protection."""
    km.alloc.ensure(mm.missing_tables(vpn) + 1)
    pfn = km.alloc.alloc()
    zero_frame(km, pfn)
    km.mapcount[pfn] = 1
    with km.hc.lazy():
        mm.ensure_l1(vpn)
        mm.set_leaf(vpn, pfn, rw, abi.MMU_NORMAL_PT_UPDATE)


@steps.swappable
def copy_on_write(km: KernelMemory, mm: AddressSpace, vpn: int) -> None:
    """The write fault on a shared (copy-on-write) page ``vpn`` of ``mm``: if
    others still map its frame (``km.mapcount``), copy it into a new frame for
    the writer alone and move one reference over; if the writer is its last
    user, reuse it. Either way, remap the page writable and INVLPG it, in one
    lazy-MMU batch."""
    old = mm.ptes[vpn]
    new = old
    if km.mapcount[old] > 1:
        km.alloc.ensure(1)
        new = km.alloc.alloc()
        km.vcpu.write(km.va(new), km.vcpu.read(km.va(old), abi.PAGE_SIZE))
        km.mapcount[old] -= 1
        km.mapcount[new] = 1
    with km.hc.lazy():
        mm.set_leaf(vpn, new, True, abi.MMU_NORMAL_PT_UPDATE)
        flush_tlb(km, [vpn])
