"""Accessed/Dirty dropped: each writable leaf is rewritten with ``MMU_NORMAL_PT_UPDATE``
and a fresh entry, so the Accessed and Dirty bits the hardware set in it are lost. Nothing
fails at once, but the kernel can no longer tell which pages were written (page-out,
msync and the page cache rely on Dirty)."""

from __future__ import annotations

from hypervisor import abi
from minikern.kmem import KernelMemory
from minikern.pgtable import AddressSpace


def wrprotect_parent(km: KernelMemory, mm: AddressSpace) -> None:
    for vpn in sorted(mm.writable):
        mm.set_leaf(vpn, mm.ptes[vpn], False, abi.MMU_NORMAL_PT_UPDATE)
