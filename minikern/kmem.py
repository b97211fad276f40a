"""The kernel's view of memory: the P2M, the direct map and the allocator.

The domain builder maps every pfn at ``virt_base + pfn * 4096`` (page-table
frames read-only); the kernel keeps that bootstrap direct map as its own view
of memory. It lives in the kernel half of the address space (L4 slot 511),
which every process's L4 shares, so ``va(pfn)`` works whatever is loaded.
On a 32-bit PAE guest the direct map starts at ``0xC0000000`` (L3 slot 3),
and every process's own kernel L2 copies the boot kernel L2's entries, so it
works whatever is loaded there too.

Lesson 01's functions live here: :func:`pfn_to_mfn` (the P2M lookup),
:func:`pfn_pte` (an entry for a pfn) and :func:`map_page` (one mapping by
``update_va_mapping``).
"""

from __future__ import annotations

import attrs

from hypervisor import abi
from hypervisor.abi import Mfn, Pfn, VAddr
from minikern import steps
from minikern.alloc import FrameAllocator
from minikern.hypercall import Hypercalls

__all__ = [
    "KERNEL_PROT",
    "KERNEL_PROT_PAE",
    "TABLE_PROT",
    "KernelMemory",
    "map_page",
    "pfn_pte",
    "pfn_to_mfn",
]

KERNEL_PROT = abi._PAGE_PRESENT | abi._PAGE_RW | abi._PAGE_USER | abi._PAGE_ACCESSED
"""A direct-map entry (64-bit PV kernels run in ring 3, so USER is set; left
out, Xen would add it itself)."""
KERNEL_PROT_PAE = abi._PAGE_PRESENT | abi._PAGE_RW | abi._PAGE_ACCESSED
"""A direct-map entry of a 32-bit PAE kernel: it runs in ring 1, so its own
memory has no USER bit and user code (ring 3) cannot touch it."""
TABLE_PROT = KERNEL_PROT | abi._PAGE_DIRTY
"""An upper-level entry pointing at a table (Linux ``_PAGE_TABLE``)."""


@attrs.define(eq=False)
class KernelMemory:
    """Everything a recipe step needs: the vCPU, the hypercall queue, the P2M,
    the direct map's base and the frame allocator."""

    vcpu: abi.GuestVCpu
    hc: Hypercalls
    virt_base: int
    p2m: list[Mfn]
    """pfn -> mfn, as the toolstack left it at ``start_info.mfn_list``."""
    alloc: FrameAllocator
    boot_l4: Pfn
    """pfn of the bootstrap top-level table (the L4, or a PAE guest's L3): the
    kernel's own base."""
    kernel_half: dict[int, int] = attrs.Factory(dict)
    """The boot L4's kernel-half entries (slot -> value), copied into every process
    L4. On a PAE guest: the guest slots of the boot kernel L2 (L3 slot 3),
    copied into every process's own kernel L2."""
    mapcount: dict[Pfn, int] = attrs.Factory(dict)
    """Data pfn -> how many leaves map it (copy-on-write sharing, Linux ``mapcount``)."""
    pae: bool = False
    """A 32-bit PAE guest: the L3 on top, one base per vCPU, kernel in ring 1."""

    @property
    def kernel_prot(self) -> int:
        """The flags of a direct-map entry: :data:`KERNEL_PROT` or :data:`KERNEL_PROT_PAE`."""
        return KERNEL_PROT_PAE if self.pae else KERNEL_PROT

    def va(self, pfn: Pfn) -> VAddr:
        """The direct-map address of ``pfn``."""
        return VAddr(self.virt_base + pfn * abi.PAGE_SIZE)

    def entry_ma(self, table_pfn: Pfn, slot: int) -> int:
        """Machine address of entry ``slot`` of table ``table_pfn`` (an mmu_update ptr)."""
        return abi.mfn_maddr(pfn_to_mfn(self, table_pfn)) + 8 * slot

    def load_entry(self, table_pfn: Pfn, slot: int) -> int:
        """Read entry ``slot`` of a table through the direct map."""
        return self.vcpu.load(self.va(table_pfn) + 8 * slot)


@steps.swappable
def pfn_to_mfn(km: KernelMemory, pfn: Pfn) -> Mfn:
    """The machine frame behind guest frame ``pfn``: entry ``pfn`` of the P2M
    (``km.p2m``). Every entry a PV guest hands Xen names machine frames; the
    guest's own frame numbers mean nothing to the hardware."""
    return km.p2m[pfn]


@steps.swappable
def pfn_pte(km: KernelMemory, pfn: Pfn, flags: int) -> int:
    """A page-table entry mapping guest frame ``pfn`` with ``flags`` (``_PAGE_*``
    bits): the machine frame number in bits 12-51, the flags below."""
    return abi.make_pte(pfn_to_mfn(km, pfn), flags)


@steps.swappable
def map_page(km: KernelMemory, va: VAddr, pfn: Pfn, flags: int, uvmf: int) -> None:
    """Queue: map ``va`` to guest frame ``pfn`` with ``flags`` by
    ``update_va_mapping`` (``uvmf``: the ``UVMF_*`` TLB flush to do after).
    The L1 entry for ``va`` must exist in the loaded tree."""
    km.hc.uvm(va, pfn_pte(km, pfn, flags), uvmf)
