"""The entry named by its virtual address: an ``mmu_update`` request's ``ptr`` is the
*machine* address of the entry (the L1's mfn << 12, plus 8 * slot), with the command in
its low bits. Given the direct-map address instead, Xen reads it as a frame the domain
does not own and refuses the request (``mmu.ptr-frame-not-owned``)."""

from __future__ import annotations

from hypervisor.abi import Pfn
from minikern.kmem import KernelMemory


def set_pte(km: KernelMemory, l1: Pfn, slot: int, pte: int, cmd: int) -> None:
    km.hc.mmu((km.va(l1) + 8 * slot) | cmd, pte)
