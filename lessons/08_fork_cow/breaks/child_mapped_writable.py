"""The child's leaves writable: the child's tree maps every shared frame with RW. Xen
allows it (a data frame may be mapped writable many times), but the child's first write
goes into the frame the parent still uses: the parent sees the child's write."""

from __future__ import annotations

from hypervisor import abi
from minikern import fork
from minikern.build import build_tree
from minikern.kmem import KernelMemory
from minikern.pgtable import AddressSpace


def fork_mm(km: KernelMemory, parent: AddressSpace, strategy: str, style: str) -> AddressSpace:
    with km.hc.lazy():
        if style == "linux":
            fork.wrprotect_linux(km, parent)
        else:
            fork.wrprotect_parent(km, parent)
        leaves = {vpn: (pfn, True) for vpn, pfn in parent.ptes.items()}
        child = build_tree(km, km.kernel_half, leaves, strategy, style == "linux")
        km.hc.ext(abi.MMUEXT_TLB_FLUSH_LOCAL)
    return child
