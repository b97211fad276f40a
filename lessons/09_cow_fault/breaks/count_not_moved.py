"""The reference count not moved: the writer gets its copy, but the old frame's count is
not dropped. When the other process writes the page later it is the frame's last user,
yet the kernel thinks it is still shared and copies again; the old frame is never freed
(a leak)."""

from __future__ import annotations

from hypervisor import abi
from minikern import vm
from minikern.kmem import KernelMemory
from minikern.pgtable import AddressSpace


def copy_on_write(km: KernelMemory, mm: AddressSpace, vpn: int) -> None:
    old = mm.ptes[vpn]
    new = old
    if km.mapcount[old] > 1:
        km.alloc.ensure(1)
        new = km.alloc.alloc()
        km.vcpu.write(km.va(new), km.vcpu.read(km.va(old), abi.PAGE_SIZE))
        km.mapcount[new] = 1
    with km.hc.lazy():
        mm.set_leaf(vpn, new, True, abi.MMU_NORMAL_PT_UPDATE)
        vm.flush_tlb(km, [vpn])
