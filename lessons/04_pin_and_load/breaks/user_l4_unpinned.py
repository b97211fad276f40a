"""Only the kernel L4 pinned: the user L4 is made read-only but never pinned. Xen still
accepts it as a base (it validates it at NEW_USER_BASEPTR), so everything seems to work,
but the tree is revalidated at every switch and torn down the moment it is unloaded."""

from __future__ import annotations

from hypervisor import abi
from hypervisor.abi import Pfn
from minikern.kmem import KernelMemory
from minikern.recipe import make_readonly, pin_table


def pin_tree(km: KernelMemory, kernel_l4: Pfn, user_l4: Pfn) -> None:
    make_readonly(km, kernel_l4, abi.UVMF_TLB_FLUSH)
    pin_table(km, kernel_l4, 4)
    make_readonly(km, user_l4, abi.UVMF_TLB_FLUSH)
