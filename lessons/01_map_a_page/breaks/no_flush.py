"""The flush forgotten: map_page updates the entry but never asks Xen for the TLB flush
it was given, so the CPU keeps reading the page the address mapped before."""

from __future__ import annotations

from hypervisor import abi
from hypervisor.abi import Pfn, VAddr
from minikern import kmem
from minikern.kmem import KernelMemory


def map_page(km: KernelMemory, va: VAddr, pfn: Pfn, flags: int, uvmf: int) -> None:
    km.hc.uvm(va, kmem.pfn_pte(km, pfn, flags), abi.UVMF_NONE)
