"""Slot 3 left empty: the new L3 has no kernel L2 (the kernel L2's image is written, but
never linked). Xen requires slot 3 of a PAE L3 to be present -- it holds the L2 with Xen's
mappings -- and refuses the pin (``l3.pae-missing-xen-l2``)."""

from __future__ import annotations

from collections.abc import Mapping

from hypervisor.abi import Pfn
from minikern.kmem import KernelMemory


def pae_pgd_images(
    km: KernelMemory, l3: Pfn, kernel_l2: Pfn, kernel_pmd: Mapping[int, int]
) -> dict[Pfn, dict[int, int]]:
    return {l3: {}, kernel_l2: dict(kernel_pmd)}
