"""The shared frame freed while the other process maps it: after copying the page for the
writer, the fault frees the old frame instead of dropping one reference. The other
process still maps that frame: it now reads the allocator's junk, and the next page the
kernel allocates lands there too."""

from __future__ import annotations

from hypervisor import abi
from minikern import recipe, vm
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
    if new != old:
        km.mapcount[old] -= 1
        recipe.free_frame(km, old)
