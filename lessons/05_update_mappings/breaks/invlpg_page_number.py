"""INVLPG of the page number: ``MMUEXT_INVLPG_LOCAL`` takes a virtual *address*, and is
given ``vpn`` instead of ``vpn << 12``. Xen flushes the translation of some page near
address 0 that nobody uses, and the stale one survives."""

from __future__ import annotations

from collections.abc import Sequence

from hypervisor import abi
from minikern import vm
from minikern.kmem import KernelMemory


def flush_tlb(km: KernelMemory, vpns: Sequence[int]) -> None:
    if len(vpns) > vm.FLUSH_CEILING:
        km.hc.ext(abi.MMUEXT_TLB_FLUSH_LOCAL)
        return
    for vpn in vpns:
        km.hc.ext(abi.MMUEXT_INVLPG_LOCAL, vpn)
