"""Only the entries written: write_tables stores each entry into the new frame but never
zeroes it first. A fresh frame from boot is zero, so the first tree works; a frame the
kernel freed before comes back junk-filled (0x01 in every byte), and every slot not
written reads as a present entry naming machine frame 0x101010101... masked to a frame of
the first MiB, which belongs to DOMID_IO: Xen refuses the tree when it validates it
(``l1.io-no-permission``)."""

from __future__ import annotations

from collections.abc import Mapping

from hypervisor.abi import Pfn
from minikern.kmem import KernelMemory


def write_tables(km: KernelMemory, images: Mapping[Pfn, Mapping[int, int]]) -> None:
    for pfn, entries in images.items():
        for slot, value in entries.items():
            km.vcpu.store(km.va(pfn) + 8 * slot, value)
