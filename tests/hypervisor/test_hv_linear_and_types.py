"""Linear page tables and the type system beyond the section 9 rows (spec
sections 2.4-2.6, 3.6), including the linear-table version knobs."""

from __future__ import annotations

import errno

import pytest
from hvworld import (
    A_,
    L1,
    L2,
    L3,
    RW,
    TOTAL_FRAMES,
    US,
    Pr,
    World,
    assert_frame,
    audit_clean,
    entry,
    entry_ptr,
    pte,
)

from hypervisor import Config, HypercallError, Hypervisor, PageFault, PageType, abi

S_SLOT, T_SLOT, M_SLOT = 5, 9, 7


def test_removing_linear_entry_restores_linear_counters(world: World) -> None:
    world.a.set_entry(world.K, S_SLOT, pte(world.K2, Pr))
    assert world.a.set_entry(world.K, S_SLOT, 0) == 1
    assert_frame(world.xen, world.K, linear=0)
    assert_frame(world.xen, world.K2, linear=0, type_count=1, count=2)


def test_unpinned_linear_target_is_kept_alive_by_the_linear_entry(world: World) -> None:
    world.a.set_entry(world.K, S_SLOT, pte(world.K2, Pr))
    world.a.unpin(world.K2)
    assert_frame(world.xen, world.K2, type_count=1, validated=True, pinned=False, linear=-1)
    world.a.set_entry(world.K, S_SLOT, 0)
    assert_frame(world.xen, world.K2, type_count=0, validated=False, linear=0)


def test_64bit_guest_may_have_linear_l3_entries(world: World) -> None:
    l3a, l3b = world.a.fresh(), world.a.fresh()
    world.a.pin(3, l3a)
    world.a.pin(3, l3b)
    assert world.a.set_entry(l3a, 0, pte(l3b, Pr)) == 1
    assert_frame(world.xen, l3b, type=L3, type_count=2, linear=-1)


def test_same_level_entry_to_unvalidated_frame_is_validated_one_level_down(
    world: World,
) -> None:
    # The ordering trap of 3.6: a zeroed frame is a perfectly good L1.
    z = world.a.fresh()
    assert world.a.set_entry(world.M, M_SLOT, pte(z, Pr)) == 1
    assert_frame(world.xen, z, type=L1, type_count=1, linear=0)


def test_linear_entry_to_unvalidated_l2_shaped_frame_is_refused(world: World) -> None:
    # z holds an L2-style entry to the pinned L1 P. z is not a validated L2, so
    # the linear rule never applies: z is validated as an L1, where that entry
    # would map P writable -- EBUSY from the nested validation.
    world.a.pin(1, world.P)
    z = world.a.fresh()
    world.a.set_entry(z, 0, pte(world.P, Pr | RW | US | A_))
    world.refused(
        lambda: world.a.set_entry(world.M, M_SLOT, pte(z, Pr)),
        errno.EBUSY,
        rule="l1.writable-pagetable",
    )


def test_linear_pt_disabled_refuses_even_self_entries() -> None:
    world = World(Hypervisor(TOTAL_FRAMES, Config(linear_pt=False)))
    world.refused(
        lambda: world.a.set_entry(world.M, M_SLOT, pte(world.M, Pr)),
        errno.EINVAL,
        rule="linear.disabled",
    )


def test_chains_of_linear_tables_allowed_before_xsa_240() -> None:
    world = World(Hypervisor(TOTAL_FRAMES, Config(linear_single_level=False)))
    world.a.set_entry(world.K, S_SLOT, pte(world.K2, Pr))
    assert world.a.set_entry(world.K2, T_SLOT, pte(world.K3, Pr)) == 1
    assert world.xen.frame(world.K3).type_count == 2
    audit_clean(world.xen)


def test_linear_entry_to_another_domains_table_is_einval(world: World) -> None:
    l2 = world.dom0.fresh()
    world.dom0.pin(2, l2)
    world.refused(
        lambda: world.a.set_entry(world.M, M_SLOT, pte(l2, Pr)),
        errno.EINVAL,
        rule="entry.target-not-owned",
    )


def test_pin_l2_fails_with_ebusy_from_an_l1_two_levels_down(world: World) -> None:
    world.a.pin(1, world.P)
    l2, l1 = world.a.fresh(), world.a.fresh()
    world.a.set_entry(l1, 3, pte(world.P, Pr | RW))
    world.a.set_entry(l2, 4, pte(l1, Pr | RW | US | A_))
    world.refused(lambda: world.a.pin(2, l2), errno.EBUSY, rule="l1.writable-pagetable")
    assert_frame(world.xen, l2, type_count=0, validated=False, count=1)
    assert_frame(world.xen, l1, type_count=0, validated=False, count=1)


def test_l2_shared_by_two_l3s_is_validated_once(world: World) -> None:
    l3a, l3b, l2 = world.a.fresh(), world.a.fresh(), world.a.fresh()
    world.a.pin(3, l3a)
    world.a.pin(3, l3b)
    world.a.set_entry(l3a, 0, pte(l2, Pr | RW | US | A_))
    world.a.set_entry(l3b, 1, pte(l2, Pr | RW | US | A_))
    assert_frame(world.xen, l2, type=L2, type_count=2)
    world.a.unpin(l3a)
    assert_frame(world.xen, l2, type=L2, type_count=1, validated=True)


def test_dom0_foreign_mapping_in_pinned_l1_blocks_its_revalidation(world: World) -> None:
    z = world.dom0.fresh()
    world.dom0.pin(1, z)
    world.dom0.mmu_update([(entry_ptr(z, 2), pte(world.X, Pr))], foreigndom=2)
    assert_frame(world.xen, world.X, count=2)
    world.dom0.unpin(z)
    assert_frame(world.xen, world.X, count=1)
    world.refused(lambda: world.dom0.pin(1, z), errno.EBUSY, rule="l1.foreign-frame")
    assert_frame(world.xen, z, type_count=0, validated=False)


def test_type_change_drops_other_domains_stale_writable_translations(world: World) -> None:
    w0 = world.dom0.w(0)
    world.dom0.map_at(w0, world.X, Pr | RW, foreigndom=2)
    world.dom0.vcpu.store(w0, 0)  # dom0 caches a writable translation of X
    world.dom0.update_va_mapping(w0, 0, abi.UVMF_NONE)  # unmapped, not flushed
    world.b.pin(1, world.X)  # X becomes B's L1
    with pytest.raises(PageFault):
        world.dom0.vcpu.store(w0, pte(world.X, Pr | RW))
    assert entry(world.xen, world.X, 0) == 0
    audit_clean(world.xen)


def test_failed_pin_validation_keeps_counts_and_resets_an_unused_type_word() -> None:
    """Spec 2.4 (mm.c:2660-2667): a validation failure leaves the frame untyped
    (NONE, not validated, count 0) -- even one that was writable with count 0 --
    and every count exactly as before."""
    xen = Hypervisor(total_frames=2048)
    dom = xen.create_domain(500)
    vcpu = dom.vcpus[0]
    si = dom.start_info
    pfn = (si.pt_base - si.virt_base) // 4096 + si.nr_pt_frames  # the first free page
    frame, va = dom.initial_p2m[pfn], si.virt_base + pfn * 4096
    vcpu.store(va, frame << 12 | abi._PAGE_PRESENT | abi._PAGE_RW)  # as an L1: maps itself RW
    vcpu.update_va_mapping(va, 0, abi.UVMF_INVLPG)  # its last writable mapping goes
    before = xen.frame(frame)
    assert (before.type, before.type_count, before.validated) == (PageType.WRITABLE, 0, True)

    with pytest.raises(HypercallError) as refused:
        vcpu.mmuext_op([abi.MmuExtOp(abi.MMUEXT_PIN_L1_TABLE, frame)])

    after = xen.frame(frame)
    assert (refused.value.errno, refused.value.done) == (errno.EBUSY, 0)
    assert (after.count, after.type_count, after.pinned) == (before.count, 0, False)
    assert (after.type, after.validated) == (PageType.NONE, False)
    assert xen.audit() == []
