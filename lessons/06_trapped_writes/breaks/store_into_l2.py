"""The store lands one level too high: to find the entry, this store_pte walks the loaded
tree from the top and stops at the L2 entry that points at the L1, and writes the new leaf
there. Xen emulates trapped writes only into L1 tables (ptwr): a plain store into a live
L2 is an ordinary page fault ("only L1 writes are emulated"), which the kernel cannot
fix."""

from __future__ import annotations

from hypervisor import abi
from hypervisor.abi import Pfn
from minikern import kmem
from minikern.kmem import KernelMemory


def _entries(km: KernelMemory, pfn: int) -> list[int]:
    raw = km.vcpu.read(km.va(Pfn(pfn)), abi.PAGE_SIZE)
    return [int.from_bytes(raw[i : i + 8], "little") for i in range(0, abi.PAGE_SIZE, 8)]


def store_pte(km: KernelMemory, l1: Pfn, slot: int, pte: int) -> None:
    target = kmem.pfn_to_mfn(km, l1)
    m2p = {int(mfn): pfn for pfn, mfn in enumerate(km.p2m)}
    for e4 in _entries(km, m2p[km.vcpu.cr3])[:256]:
        if not e4 & abi._PAGE_PRESENT:
            continue
        for e3 in _entries(km, m2p[abi.pte_mfn(e4)]):
            if not e3 & abi._PAGE_PRESENT:
                continue
            l2 = m2p[abi.pte_mfn(e3)]
            for s2, e2 in enumerate(_entries(km, l2)):
                if e2 & abi._PAGE_PRESENT and abi.pte_mfn(e2) == target:
                    km.vcpu.store(km.va(Pfn(l2)) + 8 * s2, pte)
                    return
