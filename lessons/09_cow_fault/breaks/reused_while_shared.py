"""Reused while still shared: the fault never copies; it maps the shared frame writable
for the writer. The write goes into the frame the other process still maps: the other
process sees it (isolation broken)."""

from __future__ import annotations

from hypervisor import abi
from minikern import vm
from minikern.kmem import KernelMemory
from minikern.pgtable import AddressSpace


def copy_on_write(km: KernelMemory, mm: AddressSpace, vpn: int) -> None:
    with km.hc.lazy():
        mm.set_leaf(vpn, mm.ptes[vpn], True, abi.MMU_NORMAL_PT_UPDATE)
        vm.flush_tlb(km, [vpn])
