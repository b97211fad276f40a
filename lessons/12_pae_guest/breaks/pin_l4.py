"""Pinned with PIN_L4: the 64-bit pin command on a 32-bit PAE guest. Xen ignores
``MMUEXT_PIN_L4_TABLE`` for a 32-bit domain -- it answers success and pins nothing. The
tree is validated only while it is loaded and unprotected whenever it is not; the first
complaint comes at exit, where ``MMUEXT_UNPIN_TABLE`` of the L3 is refused
(``unpin.not-pinned``), and ``release_tree_pae`` raising zeroes the lesson."""

from __future__ import annotations

from hypervisor import abi
from hypervisor.abi import Pfn
from minikern import recipe
from minikern.kmem import KernelMemory


def pin_tree_pae(km: KernelMemory, l3: Pfn, kernel_l2: Pfn) -> None:
    recipe.make_readonly(km, kernel_l2, abi.UVMF_NONE)
    recipe.make_readonly(km, l3, abi.UVMF_TLB_FLUSH)
    recipe.pin_table(km, l3, 4)
