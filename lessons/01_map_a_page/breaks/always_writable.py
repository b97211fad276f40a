"""Flags ignored: pfn_pte always sets _PAGE_RW, so the kernel can never make a page-table
frame read-only, and Xen refuses to pin a table that is still mapped writable."""

from __future__ import annotations

from hypervisor import abi
from hypervisor.abi import Pfn
from minikern import kmem
from minikern.kmem import KernelMemory


def pfn_pte(km: KernelMemory, pfn: Pfn, flags: int) -> int:
    return abi.make_pte(kmem.pfn_to_mfn(km, pfn), flags | abi._PAGE_RW)
