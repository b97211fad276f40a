"""The classic mix-up: the pfn used where an mfn belongs. pfn_to_mfn returns the guest's
own frame number, so every entry names a machine frame the domain does not own."""

from __future__ import annotations

from hypervisor.abi import Mfn, Pfn
from minikern.kmem import KernelMemory


def pfn_to_mfn(km: KernelMemory, pfn: Pfn) -> Mfn:
    return Mfn(pfn)
