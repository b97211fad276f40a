"""The kernel L2 left writable: only the L3 is made read-only before the pin. Pinning the
L3 validates its slot 3, and the kernel L2 there is still mapped writable in the direct
map, so Xen refuses the pin (``type.writable-mapped``)."""

from __future__ import annotations

from hypervisor import abi
from hypervisor.abi import Pfn
from minikern import recipe
from minikern.kmem import KernelMemory


def pin_tree_pae(km: KernelMemory, l3: Pfn, kernel_l2: Pfn) -> None:
    recipe.make_readonly(km, l3, abi.UVMF_TLB_FLUSH)
    recipe.pin_table(km, l3, 3)
