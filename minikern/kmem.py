"""The kernel's view of memory: the P2M, the direct map and the allocator.

The domain builder maps every pfn at ``virt_base + pfn * 4096`` (page-table
frames read-only); the kernel keeps that bootstrap direct map as its own view
of memory. It lives in the kernel half of the address space (L4 slot 511),
which every process's L4 shares, so ``va(pfn)`` works whatever is loaded.
"""

from __future__ import annotations

import attrs

from hypervisor import abi
from minikern.alloc import FrameAllocator
from minikern.hypercall import Hypercalls

__all__ = ["KERNEL_PROT", "TABLE_PROT", "KernelMemory"]

P, RW, US, A, D = (
    abi._PAGE_PRESENT,
    abi._PAGE_RW,
    abi._PAGE_USER,
    abi._PAGE_ACCESSED,
    abi._PAGE_DIRTY,
)
KERNEL_PROT = P | RW | US | A
"""A direct-map entry (64-bit PV kernels run in ring 3, so USER is set)."""
TABLE_PROT = P | RW | US | A | D
"""An upper-level entry pointing at a table (Linux ``_PAGE_TABLE``)."""


@attrs.define(eq=False)
class KernelMemory:
    """Everything a recipe step needs: the vCPU, the hypercall queue, the P2M,
    the direct map's base and the frame allocator."""

    vcpu: abi.GuestVCpu
    hc: Hypercalls
    virt_base: int
    p2m: list[int]
    alloc: FrameAllocator
    boot_l4: int
    """pfn of the bootstrap top-level table: the kernel's own base."""
    kernel_half: dict[int, int] = attrs.Factory(dict)
    """The boot L4's kernel-half entries (slot -> value), copied into every process L4."""
    mapcount: dict[int, int] = attrs.Factory(dict)
    """Data pfn -> how many leaves map it (copy-on-write sharing, Linux ``mapcount``)."""

    def va(self, pfn: int) -> int:
        """The direct-map address of ``pfn``."""
        return self.virt_base + pfn * abi.PAGE_SIZE

    def mfn(self, pfn: int) -> int:
        return self.p2m[pfn]

    def pte(self, pfn: int, flags: int) -> int:
        """An entry mapping ``pfn``'s machine frame with ``flags``."""
        return abi.make_pte(self.p2m[pfn], flags)

    def entry_ma(self, table_pfn: int, slot: int) -> int:
        """Machine address of entry ``slot`` of table ``table_pfn`` (an mmu_update ptr)."""
        return (self.p2m[table_pfn] << abi.PAGE_SHIFT) + 8 * slot

    def load_entry(self, table_pfn: int, slot: int) -> int:
        """Read entry ``slot`` of a table through the direct map."""
        return self.vcpu.load(self.va(table_pfn) + 8 * slot)
