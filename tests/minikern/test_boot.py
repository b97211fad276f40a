"""Boot from start_info: P2M, allocator, writable page tables, kernel half."""

from __future__ import annotations

import pytest
from mkhelpers import boot, table

from hypervisor import Hypervisor, abi
from minikern import Kernel
from minikern.kmem import pfn_to_mfn


def test_boot_reads_the_p2m_the_builder_wrote() -> None:
    k = boot()
    assert tuple(k.km.p2m) == k.domain.initial_p2m


def test_boot_frees_every_pfn_after_the_bootstrap_tables() -> None:
    k = boot()
    si = k.domain.start_info
    first_free = (si.pt_base - si.virt_base) // abi.PAGE_SIZE + si.nr_pt_frames
    assert k.free_pages() == si.nr_pages - first_free


def test_boot_enables_writable_page_tables() -> None:
    k = boot()
    assert k.domain.vm_assist >> abi.VMASST_TYPE_writable_pagetables & 1


def test_boot_keeps_the_boot_l4_loaded() -> None:
    k = boot()
    assert k.vcpu.cr3 == pfn_to_mfn(k.km, k.km.boot_l4)


def test_boot_on_a_given_hypervisor_uses_it() -> None:
    xen = Hypervisor(total_frames=8192)
    k = Kernel.boot(nr_pages=2048, hypervisor=xen)
    assert k.hypervisor is xen
    assert k.domain in xen.domains


def test_boot_refuses_an_unknown_strategy() -> None:
    with pytest.raises(ValueError, match="strategy"):
        Kernel.boot(nr_pages=2048, strategy="bsd")


def test_every_process_l4_shares_the_kernel_half(k: Kernel) -> None:
    p = k.spawn()
    boot_l4 = table(k, pfn_to_mfn(k.km, k.km.boot_l4))
    proc_l4 = table(k, pfn_to_mfn(k.km, p.mm.l4))
    assert proc_l4[511] == boot_l4[511] != 0
    assert proc_l4[272:] == boot_l4[272:]


def test_the_user_l4_maps_no_kernel_memory(k: Kernel) -> None:
    p = k.spawn()
    assert not any(table(k, pfn_to_mfn(k.km, p.mm.user_l4))[272:])


def test_spawned_trees_are_pinned_l4s(k: Kernel) -> None:
    p = k.spawn()
    for pfn in (p.mm.l4, p.mm.user_l4):
        info = k.hypervisor.frame(pfn_to_mfn(k.km, pfn))
        assert info.pinned
        assert info.type.name == "L4"
