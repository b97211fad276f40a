"""fork: copy-on-write duplication of an address space.

Both sides end up mapping every shared page read-only; a later write faults
and copies (``vm.copy_on_write``). The child's tree is built and pinned by
the kernel's strategy (``build.build_tree``), then the parent's TLB is flushed
so no stale writable translation survives.

Two styles of write-protecting the parent and writing the child's leaves:

- ``"batched"`` (minikern's): the parent's writable leaves are cleared of RW
  by ``MMU_PT_UPDATE_PRESERVE_AD`` requests, 512 to an ``mmu_update`` (one per
  L1), and the child's leaves are filled with plain stores before it is
  pinned. Cost: O(N/512) hypercalls, no trapped writes.
- ``"linux"``: ``ptep_set_wrprotect`` is a plain store into the live parent L1,
  so each writable page costs a trapped (emulated) write, and the child's
  leaves go out as ``mmu_update`` batches of 31.

Lesson 08's functions live here: :func:`fork_mm` and :func:`wrprotect_parent`.
"""

from __future__ import annotations

from hypervisor import abi
from minikern import steps
from minikern.build import build_tree
from minikern.kmem import KernelMemory
from minikern.pgtable import AddressSpace, store_pte

__all__ = ["FORK_STYLES", "fork_mm", "wrprotect_linux", "wrprotect_parent"]

FORK_STYLES = ("batched", "linux")


@steps.swappable
def wrprotect_parent(km: KernelMemory, mm: AddressSpace) -> None:
    """Queue: every writable leaf of ``mm`` (``mm.writable``) rewritten without
    RW by ``mmu_update`` with ``MMU_PT_UPDATE_PRESERVE_AD``, so Accessed/Dirty
    bits the hardware set meanwhile survive (``mm.set_leaf`` keeps the
    kernel's record)."""
    for vpn in sorted(mm.writable):
        mm.set_leaf(vpn, mm.ptes[vpn], False, abi.MMU_PT_UPDATE_PRESERVE_AD)


def wrprotect_linux(km: KernelMemory, mm: AddressSpace) -> None:
    """Now: clear RW in each writable leaf with a plain store into the live L1
    (Xen traps and emulates each one: ``store_pte``)."""
    for vpn in sorted(mm.writable):
        l1, slot = mm.leaf_slot(vpn)
        store_pte(km, l1, slot, km.load_entry(l1, slot) & ~abi._PAGE_RW)
    mm.writable.clear()


@steps.swappable
def fork_mm(km: KernelMemory, parent: AddressSpace, strategy: str, style: str) -> AddressSpace:
    """A copy-on-write copy of ``parent``'s tree, pinned, in one lazy-MMU batch:
    write-protect the parent (``style`` "batched": :func:`wrprotect_parent`;
    "linux": :func:`wrprotect_linux`), build and pin the child mapping every
    parent page read-only (``build.build_tree`` by ``strategy``), then flush
    this CPU's TLB so no stale writable translation of a shared page survives.
    The caller checked memory and keeps the reference counts."""
    with km.hc.lazy():
        if style == "linux":
            wrprotect_linux(km, parent)
        else:
            wrprotect_parent(km, parent)
        leaves = {vpn: (pfn, False) for vpn, pfn in parent.ptes.items()}
        child = build_tree(km, km.kernel_half, leaves, strategy, style == "linux")
        km.hc.ext(abi.MMUEXT_TLB_FLUSH_LOCAL)
    return child
