"""The table left writable: make_readonly rewrites the frame's direct-map entry with the
same flags it had, _PAGE_RW included. Xen refuses to pin (or link) a frame as a table
while a writable mapping of it exists: ``type.writable-mapped``."""

from __future__ import annotations

from hypervisor.abi import Pfn
from minikern import kmem
from minikern.kmem import KERNEL_PROT, KernelMemory


def make_readonly(km: KernelMemory, pfn: Pfn, uvmf: int) -> None:
    kmem.map_page(km, km.va(pfn), pfn, KERNEL_PROT, uvmf)
