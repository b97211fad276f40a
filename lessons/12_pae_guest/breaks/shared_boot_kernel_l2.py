"""Slot 3 points at the boot kernel L2, as a 64-bit tree shares its kernel half. Xen lets
the L2 in slot 3 of a PAE L3 belong to one L3 only (it holds Xen's own slots), so the pin
of the new L3 is refused (``l3.pae-xen-l2-shared``)."""

from __future__ import annotations

from collections.abc import Mapping

from hypervisor.abi import Pfn
from minikern import boot, kmem
from minikern.kmem import KernelMemory


def pae_pgd_images(
    km: KernelMemory, l3: Pfn, kernel_l2: Pfn, kernel_pmd: Mapping[int, int]
) -> dict[Pfn, dict[int, int]]:
    shared = boot.kernel_l2_of(km, km.boot_l4)
    return {
        l3: {boot.PAE_KERNEL_L3_SLOT: kmem.pfn_pte(km, shared, kmem.TABLE_PROT)},
        kernel_l2: dict(kernel_pmd),
    }
