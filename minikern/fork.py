"""fork: copy-on-write duplication of an address space.

Both sides end up mapping every shared page read-only; a later write faults
and copies (``vm._copy_on_write``). The child's tree is built and pinned by
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
"""

from __future__ import annotations

from hypervisor import abi
from minikern.build import build_tree, tables_for
from minikern.kmem import KernelMemory
from minikern.pgtable import AddressSpace

__all__ = ["FORK_STYLES", "fork_mm"]

FORK_STYLES = ("batched", "linux")


def wrprotect_batched(km: KernelMemory, mm: AddressSpace) -> None:
    """Queue: every writable leaf of ``mm`` loses RW (Accessed/Dirty kept)."""
    for vpn in sorted(mm.writable):
        mm.set_leaf(vpn, mm.ptes[vpn], False, abi.MMU_PT_UPDATE_PRESERVE_AD)


def wrprotect_linux(km: KernelMemory, mm: AddressSpace) -> None:
    """Now: clear RW in each writable leaf with a plain store into the live L1
    (Xen traps and emulates each one)."""
    for vpn in sorted(mm.writable):
        l1, slot = mm.leaf_slot(vpn)
        addr = km.va(l1) + 8 * slot
        km.vcpu.store(addr, km.vcpu.load(addr) & ~abi._PAGE_RW)
    mm.writable.clear()


def fork_mm(km: KernelMemory, parent: AddressSpace, strategy: str, style: str) -> AddressSpace:
    """A copy-on-write child of ``parent``, pinned; the parent write-protected."""
    km.alloc.ensure(len(tables_for(list(parent.ptes))) + 2)
    with km.hc.lazy():
        if style == "linux":
            wrprotect_linux(km, parent)
        else:
            wrprotect_batched(km, parent)
        for pfn in parent.ptes.values():
            km.mapcount[pfn] += 1
        leaves = {vpn: (pfn, False) for vpn, pfn in parent.ptes.items()}
        child = build_tree(
            km, km.kernel_half, leaves, strategy, leaves_by_mmu_update=style == "linux"
        )
        child.vmas = dict(parent.vmas)
        km.hc.ext(abi.MMUEXT_TLB_FLUSH_LOCAL)
    return child
