"""The new entry ORed into the old one (``old | pte``) instead of replacing it. The kernel
asked for the entry without RW; OR puts RW straight back, Xen accepts the (legal) writable
mapping, and after fork parent and child write into the same frame: isolation is gone."""

from __future__ import annotations

from hypervisor.abi import Pfn
from minikern.kmem import KernelMemory


def store_pte(km: KernelMemory, l1: Pfn, slot: int, pte: int) -> None:
    va = km.va(l1) + 8 * slot
    km.vcpu.store(va, km.vcpu.load(va) | pte)
