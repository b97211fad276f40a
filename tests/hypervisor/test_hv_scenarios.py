"""Spec section 9, "Conformance scenarios" #1-#60: one named test per row.

Each test checks the errno, ``done`` and the resulting counts of the frames
the row names; every hypercall made through the ``world`` helpers is followed
by ``xen.audit() == []`` (see conftest). Frame names (K, P, Q, R, S, T, C, M,
K2, K3, X) and scratch VAs ``w(i)`` are the fixture's.
"""

from __future__ import annotations

import errno

import pytest
from hvworld import (
    A_,
    BIT7,
    D_,
    L1,
    L2,
    L3,
    L4,
    NX,
    PCD,
    PWT,
    RW,
    US,
    WRITABLE,
    G,
    Pr,
    World,
    assert_frame,
    audit_clean,
    entry,
    entry_ptr,
    frame_key,
    pte,
    stored,
)

from hypervisor import abi
from hypervisor.mm.frames import PageType

PSE = BIT7
M_SLOT = 7
"""The slot of M used by the L2 scenarios."""
S_SLOT = 5
"""A free guest slot of K (K only uses slot 511)."""
T_SLOT = 9
"""A free guest slot of K2/K3."""


def bootstrap_l3(world: World) -> int:
    """The L3 that K's slot 511 points at (the bootstrap region's L3)."""
    return entry(world.xen, world.K, 511) >> 12 & ((1 << 40) - 1)


# -- pinning: #1-#9 -------------------------------------------------------------------


def test_01_pin_l1_of_fresh_frame_validates_and_pins_it(world: World) -> None:
    assert world.a.pin(1, world.P) == 1
    assert_frame(world.xen, world.P, type=L1, type_count=1, validated=True, pinned=True, count=2)


def test_02_second_pin_of_pinned_l1_is_einval_and_changes_nothing(world: World) -> None:
    world.a.pin(1, world.P)
    with world.unchanged(world.P):
        world.refused(lambda: world.a.pin(1, world.P), errno.EINVAL, rule="pin.already-pinned")
    assert_frame(world.xen, world.P, type_count=1, count=2)


def test_03_pin_l2_of_pinned_l1_is_einval(world: World) -> None:
    world.a.pin(1, world.P)
    with world.unchanged(world.P):
        world.refused(lambda: world.a.pin(2, world.P), errno.EINVAL, rule="type.mismatch")


def test_04_unpin_of_only_pinned_l1_devalidates_it(world: World) -> None:
    world.a.pin(1, world.P)
    assert world.a.unpin(world.P) == 1
    assert_frame(world.xen, world.P, type_count=0, validated=False, pinned=False, count=1)


def test_05_unpin_of_unpinned_frame_is_einval(world: World) -> None:
    world.a.pin(1, world.P)
    world.a.unpin(world.P)
    with world.unchanged(world.P):
        world.refused(lambda: world.a.unpin(world.P), errno.EINVAL, rule="unpin.not-pinned")


def test_06_pin_l1_of_another_domains_frame_is_einval(world: World) -> None:
    with world.unchanged(world.X):
        world.refused(lambda: world.a.pin(1, world.X), errno.EINVAL, rule="pin.not-owned")


def test_07_pin_l1_of_frame_mapped_rw_is_einval(world: World) -> None:
    world.a.map_at(world.w(0), world.P, Pr | RW)
    with world.unchanged(world.P):
        world.refused(lambda: world.a.pin(1, world.P), errno.EINVAL, rule="type.writable-mapped")
    assert_frame(world.xen, world.P, type=WRITABLE, type_count=1)


def test_08_pin_l1_of_frame_mapped_read_only_succeeds(world: World) -> None:
    world.a.map_at(world.w(0), world.P, Pr)
    assert world.a.pin(1, world.P) == 1
    # allocation + the read-only mapping + the pin
    assert_frame(world.xen, world.P, type=L1, type_count=1, count=3, pinned=True)


def test_09_dropping_rw_then_pinning_changes_type_and_flushes_tlbs(world: World) -> None:
    w = world.w(0)
    world.a.map_at(w, world.P, Pr | RW)
    world.a.vcpu.store(w, 0)  # caches a writable translation of P
    world.a.update_va_mapping(w, pte(world.P, Pr), abi.UVMF_NONE)
    assert_frame(world.xen, world.P, type=WRITABLE, type_count=0)
    flushes = world.xen.stats().tlb_flushes
    assert world.a.pin(1, world.P) == 1
    assert_frame(world.xen, world.P, type=L1, type_count=1, pinned=True, validated=True)
    assert world.xen.stats().tlb_flushes > flushes
    assert any(
        r.kind == "tlb_flush" and r.reason == "type_change" and r.domid == 1
        for r in world.xen.trace.records
    )
    assert world.a.vcpu.tlb_size == 0


# -- mapping a page table, foreign and special frames: #10-#21 -------------------------


def test_10_mmu_update_mapping_pinned_l1_rw_is_ebusy(world: World) -> None:
    world.a.pin(1, world.P)
    with world.unchanged(world.P):
        world.refused(
            lambda: world.a.map_at(world.w(1), world.P, Pr | RW),
            errno.EBUSY,
            done=0,
            rule="l1.writable-pagetable",
        )
    assert world.a.l1e(world.w(1)) == 0


def test_11_update_va_mapping_pinned_l1_rw_is_ebusy(world: World) -> None:
    world.a.pin(1, world.P)
    with world.unchanged(world.P):
        world.refused(
            lambda: world.a.update_va_mapping(world.w(1), pte(world.P, Pr | RW)),
            errno.EBUSY,
            rule="l1.writable-pagetable",
        )


def test_12_read_only_mapping_of_pinned_l1_takes_only_a_general_ref(world: World) -> None:
    world.a.pin(1, world.P)
    before = world.xen.frame(world.P)
    assert world.a.map_at(world.w(1), world.P, Pr) == 1
    assert_frame(world.xen, world.P, type=L1, type_count=before.type_count, count=before.count + 1)


def test_13_mapping_foreign_frame_as_self_is_ebusy_even_read_only(world: World) -> None:
    with world.unchanged(world.X):
        world.refused(
            lambda: world.a.map_at(world.w(0), world.X, Pr), errno.EBUSY, rule="l1.foreign-frame"
        )


def test_14_unprivileged_foreign_mapping_is_eperm(world: World) -> None:
    with world.unchanged(world.X):
        world.refused(
            lambda: world.a.map_at(world.w(0), world.X, Pr, foreigndom=world.b.dom.domid),
            errno.EPERM,
            done=0,
            rule="foreigndom.not-privileged",
        )


def test_15_dom0_maps_foreign_frame_rw_with_fd_of_owner(world: World) -> None:
    before = world.xen.frame(world.X)
    assert world.dom0.map_at(world.dom0.w(0), world.X, Pr | RW, foreigndom=2) == 1
    assert_frame(
        world.xen,
        world.X,
        owner=2,
        type=WRITABLE,
        type_count=before.type_count + 1,
        count=before.count + 1,
    )


def test_16_owner_cannot_pin_frame_while_dom0_maps_it_rw(world: World) -> None:
    world.dom0.map_at(world.dom0.w(0), world.X, Pr | RW, foreigndom=2)
    with world.unchanged(world.X):
        world.refused(lambda: world.b.pin(1, world.X), errno.EINVAL, rule="type.writable-mapped")
    world.dom0.unmap(world.dom0.w(0))
    assert world.b.pin(1, world.X) == 1
    assert_frame(world.xen, world.X, type=L1, type_count=1, pinned=True)


def test_17_dom0_mapping_foreign_frame_as_self_is_ebusy(world: World) -> None:
    with world.unchanged(world.X):
        world.refused(
            lambda: world.dom0.map_at(world.dom0.w(0), world.X, Pr),
            errno.EBUSY,
            rule="l1.foreign-frame",
        )


def test_18_mapping_free_frame_is_ebusy(world: World) -> None:
    free = world.xen.total_frames - 1
    assert world.xen.frame(free).owner is None
    with world.unchanged(free):
        world.refused(
            lambda: world.a.map_at(world.w(0), free, Pr), errno.EBUSY, rule="l1.free-frame"
        )
    assert world.xen.frame(free).owner is None


def test_19_unprivileged_mapping_of_io_frame_is_eperm(world: World) -> None:
    world.refused(
        lambda: world.a.map_at(world.w(0), 0x50, Pr), errno.EPERM, rule="l1.io-no-permission"
    )
    assert world.a.l1e(world.w(0)) == 0


@pytest.mark.parametrize("bad", [PCD, PWT, BIT7], ids=["PCD", "PWT", "PAT"])
def test_20_cache_attribute_in_unprivileged_l1_is_einval(world: World, bad: int) -> None:
    with world.unchanged(world.Q):
        world.refused(
            lambda: world.a.map_at(world.w(0), world.Q, Pr | RW | bad),
            errno.EINVAL,
            rule="entry.disallowed-flags",
        )


def test_21_global_bit_is_allowed_in_l1(world: World) -> None:
    assert world.a.map_at(world.w(0), world.Q, Pr | RW | G) == 1
    assert_frame(world.xen, world.Q, type=WRITABLE, type_count=1, count=2)


# -- flags above L1: #22-#24 ------------------------------------------------------------


def test_22_pse_in_l2_is_einval(world: World) -> None:
    with world.unchanged(world.M, world.Q):
        world.refused(
            lambda: world.a.set_entry(world.M, M_SLOT, pte(world.Q, Pr | RW | PSE)),
            errno.EINVAL,
            rule="entry.disallowed-flags",
        )


def test_23_global_bit_in_l2_is_einval(world: World) -> None:
    with world.unchanged(world.M, world.Q):
        world.refused(
            lambda: world.a.set_entry(world.M, M_SLOT, pte(world.Q, Pr | RW | G)),
            errno.EINVAL,
            rule="entry.disallowed-flags",
        )


def test_24_pse_in_l3_is_einval(world: World) -> None:
    # "validated L3": the bootstrap L3 (reachable from K); slot 0 is free.
    l3 = bootstrap_l3(world)
    with world.unchanged(l3, world.R):
        world.refused(
            lambda: world.a.set_entry(l3, 0, pte(world.R, Pr | RW | PSE)),
            errno.EINVAL,
            rule="entry.disallowed-flags",
        )


# -- L2 entries: #25-#32 ----------------------------------------------------------------


def test_25_l2_entry_to_fresh_frame_validates_it_as_l1(world: World) -> None:
    val = pte(world.Q, Pr | RW | US | A_)
    assert world.a.set_entry(world.M, M_SLOT, val) == 1
    assert_frame(world.xen, world.Q, type=L1, type_count=1, validated=True, pinned=False, count=2)
    assert entry(world.xen, world.M, M_SLOT) & US


def test_25b_l2_entry_without_user_is_stored_with_user(world: World) -> None:
    # The row says "stored entry gains US": visible only when the guest omits it.
    assert world.a.set_entry(world.M, M_SLOT, pte(world.Q, Pr | RW | A_)) == 1
    assert entry(world.xen, world.M, M_SLOT) == pte(world.Q, Pr | RW | A_ | US)


def test_26_clearing_l2_entry_devalidates_its_l1_before_returning(world: World) -> None:
    world.a.set_entry(world.M, M_SLOT, pte(world.Q, Pr | RW | US | A_))
    assert world.a.set_entry(world.M, M_SLOT, 0) == 1
    assert_frame(world.xen, world.Q, type_count=0, validated=False, count=1)


def test_27_l2_entry_to_frame_mapped_rw_is_einval(world: World) -> None:
    world.a.map_at(world.w(0), world.R, Pr | RW)
    with world.unchanged(world.M, world.R):
        world.refused(
            lambda: world.a.set_entry(world.M, M_SLOT, pte(world.R, Pr | RW)),
            errno.EINVAL,
            rule="type.writable-mapped",
        )
    assert entry(world.xen, world.M, M_SLOT) == 0


def test_28_nested_l1_validation_error_surfaces_and_leaks_nothing(world: World) -> None:
    world.a.pin(1, world.P)
    world.a.set_entry(world.R, 5, pte(world.P, Pr | RW))  # R is plain data: verbatim write
    with world.unchanged(world.M, world.P):
        world.refused(
            lambda: world.a.set_entry(world.M, M_SLOT, pte(world.R, Pr)),
            errno.EBUSY,
            rule="l1.writable-pagetable",
        )
    assert_frame(world.xen, world.R, type_count=0, validated=False, count=1)


def test_29_l2_entry_to_another_domains_frame_is_einval(world: World) -> None:
    with world.unchanged(world.M, world.X):
        world.refused(
            lambda: world.a.set_entry(world.M, M_SLOT, pte(world.X, Pr)),
            errno.EINVAL,
            rule="entry.target-not-owned",
        )


def test_30_read_only_l2_entry_to_another_pinned_l2_is_linear(world: World) -> None:
    m2 = world.a.fresh()
    world.a.pin(2, m2)
    before = world.xen.frame(m2)
    assert world.a.set_entry(world.M, M_SLOT, pte(m2, Pr)) == 1
    assert_frame(world.xen, m2, type_count=before.type_count + 1, count=before.count + 1, linear=-1)
    assert_frame(world.xen, world.M, linear=1)


def test_31_rw_linear_l2_entry_is_einval(world: World) -> None:
    m2 = world.a.fresh()
    world.a.pin(2, m2)
    with world.unchanged(world.M, m2):
        world.refused(
            lambda: world.a.set_entry(world.M, M_SLOT, pte(m2, Pr | RW)),
            errno.EINVAL,
            rule="linear.writable",
        )


def test_32_l2_entry_to_itself_takes_no_references(world: World) -> None:
    with world.unchanged(world.M):
        assert world.a.set_entry(world.M, M_SLOT, pte(world.M, Pr)) == 1
    assert entry(world.xen, world.M, M_SLOT) & ~US == pte(world.M, Pr)


# -- L4 entries and linear L4s: #33-#39 ----------------------------------------------------


def test_33_read_only_self_entry_in_current_l4_takes_no_references(world: World) -> None:
    with world.unchanged(world.K):
        assert world.a.set_entry(world.K, S_SLOT, pte(world.K, Pr | US | A_)) == 1
    assert entry(world.xen, world.K, S_SLOT) == pte(world.K, Pr | US | A_)


def test_34_making_self_entry_writable_is_einval_and_entry_stays_read_only(
    world: World,
) -> None:
    world.a.set_entry(world.K, S_SLOT, pte(world.K, Pr | US | A_))
    with world.unchanged(world.K):
        world.refused(
            lambda: world.a.set_entry(world.K, S_SLOT, pte(world.K, Pr | RW | US | A_)),
            errno.EINVAL,
            rule="linear.writable",
        )
    assert entry(world.xen, world.K, S_SLOT) == pte(world.K, Pr | US | A_)


def test_35_read_only_l4_entry_to_another_pinned_l4_is_linear(world: World) -> None:
    before = world.xen.frame(world.K2)
    assert world.a.set_entry(world.K, S_SLOT, pte(world.K2, Pr)) == 1
    assert_frame(world.xen, world.K2, type_count=before.type_count + 1, linear=-1)
    assert_frame(world.xen, world.K, linear=1)


def test_36_linear_target_may_not_get_linear_entries_itself(world: World) -> None:
    world.a.set_entry(world.K, S_SLOT, pte(world.K2, Pr))
    with world.unchanged(world.K2, world.K3):
        world.refused(
            lambda: world.a.set_entry(world.K2, T_SLOT, pte(world.K3, Pr)),
            errno.EINVAL,
            rule="linear.chain",
        )


def test_37_table_with_linear_entries_may_not_become_a_linear_target(world: World) -> None:
    world.a.set_entry(world.K, S_SLOT, pte(world.K2, Pr))
    with world.unchanged(world.K, world.K3):
        world.refused(
            lambda: world.a.set_entry(world.K3, T_SLOT, pte(world.K, Pr)),
            errno.EINVAL,
            rule="linear.chain",
        )


@pytest.mark.parametrize("slot", [256, 258, 271])
@pytest.mark.parametrize("val", [0, pte(0x300, Pr)], ids=["zero", "present"])
def test_38_xen_slots_of_l4_are_einval_whatever_the_value(
    world: World, slot: int, val: int
) -> None:
    stored = entry(world.xen, world.K, slot)
    with world.unchanged(world.K):
        world.refused(
            lambda: world.a.set_entry(world.K, slot, val), errno.EINVAL, rule="l4.xen-slot"
        )
    assert entry(world.xen, world.K, slot) == stored


def test_39_l4_entry_to_validated_l2_is_einval(world: World) -> None:
    world.a.pin(2, world.Q)
    with world.unchanged(world.K, world.Q):
        world.refused(
            lambda: world.a.set_entry(world.K, S_SLOT, pte(world.Q, Pr)),
            errno.EINVAL,
            rule="entry.target-wrong-type",
        )


# -- base pointers: #40-#46 --------------------------------------------------------------


def build_unvalidated_l4(world: World) -> tuple[int, int, int, int]:
    """A never-validated L4 tree, written as plain data: a copy of K (so the
    guest keeps running on it) plus slot 0 -> L3 -> L2 -> L1 mapping C read-only.
    Returns (l4, l3, l2, l1). None of the frames has an RW mapping."""
    l4, l3, l2, l1 = (world.a.fresh() for _ in range(4))
    world.a.copy_page(l4, world.K)
    world.a.set_entry(l4, 0, pte(l3, Pr | RW | US | A_))
    world.a.set_entry(l3, 0, pte(l2, Pr | RW | US | A_))
    world.a.set_entry(l2, 0, pte(l1, Pr | RW | US | A_))
    world.a.set_entry(l1, 0, pte(world.C, Pr | US))
    return l4, l3, l2, l1


def test_40_new_baseptr_validates_a_never_validated_tree(world: World) -> None:
    k2, l3, l2, l1 = build_unvalidated_l4(world)
    assert world.xen.frame(k2).type_count == 0
    world.a.vcpu.load(world.a.va_of_pfn(0))  # fill the TLB
    assert world.a.new_baseptr(k2) == 1
    assert world.a.vcpu.cr3 == k2
    assert_frame(world.xen, k2, type=L4, type_count=1, validated=True, pinned=False)
    assert_frame(world.xen, l3, type=L3, type_count=1, validated=True)
    assert_frame(world.xen, l2, type=L2, type_count=1, validated=True)
    assert_frame(world.xen, l1, type=L1, type_count=1, validated=True)
    assert_frame(world.xen, world.C, count=2, type_count=0)
    assert_frame(world.xen, world.K, type_count=1, pinned=True)
    assert world.a.vcpu.tlb_size == 0


def test_41_new_baseptr_of_frame_mapped_rw_is_einval(world: World) -> None:
    world.a.map_at(world.w(0), world.S, Pr | RW)
    with world.unchanged(world.S, world.K):
        world.refused(
            lambda: world.a.new_baseptr(world.S), errno.EINVAL, rule="type.writable-mapped"
        )
    assert world.a.vcpu.cr3 == world.K


def test_42_new_baseptr_of_validated_l1_is_einval(world: World) -> None:
    world.a.pin(1, world.P)
    with world.unchanged(world.P, world.K):
        world.refused(lambda: world.a.new_baseptr(world.P), errno.EINVAL, rule="type.mismatch")
    assert world.a.vcpu.cr3 == world.K


def test_43_reloading_current_base_flushes_without_count_changes(world: World) -> None:
    world.a.vcpu.load(world.a.va_of_pfn(0))
    assert world.a.vcpu.tlb_size > 0
    with world.unchanged():
        assert world.a.new_baseptr(world.K) == 1
    assert world.a.vcpu.tlb_size == 0


def test_44_unpinning_the_current_base_is_allowed(world: World) -> None:
    assert world.a.unpin(world.K) == 1
    assert_frame(world.xen, world.K, type=L4, type_count=1, validated=True, pinned=False)


def test_45_unpinned_current_base_still_cannot_be_mapped_rw(world: World) -> None:
    world.a.unpin(world.K)
    with world.unchanged(world.K):
        world.refused(
            lambda: world.a.map_at(world.w(0), world.K, Pr | RW),
            errno.EBUSY,
            rule="l1.writable-pagetable",
        )


def test_46_switching_away_from_unpinned_base_devalidates_its_tree(world: World) -> None:
    # Natural reading: K2 is a copy of K (so the guest keeps running after the
    # switch), and K additionally owns a private L3 (R) in a free slot, which the
    # teardown must devalidate; the shared bootstrap L3 survives through K2.
    world.a.set_entry(world.K, S_SLOT, pte(world.R, Pr | US | A_))
    k2 = world.a.fresh()
    world.a.copy_page(k2, world.K)
    world.a.set_entry(k2, S_SLOT, 0)  # the copy shares K's tree but not R
    world.a.unpin(world.K)
    shared_l3 = bootstrap_l3(world)
    assert_frame(world.xen, world.R, type=L3, type_count=1)
    assert world.a.new_baseptr(k2) == 1
    assert_frame(world.xen, world.K, type_count=0, validated=False)
    assert_frame(world.xen, world.R, type_count=0, validated=False, count=1)
    assert_frame(world.xen, shared_l3, type=L3, type_count=1, validated=True)
    assert world.a.map_at(world.w(0), world.K, Pr | RW) == 1
    assert_frame(world.xen, world.K, type=WRITABLE, type_count=1)


# -- unpin order: #47-#49 ----------------------------------------------------------------


def link_pinned_l1_into_m(world: World) -> None:
    """M[M_SLOT] -> P, P pinned: P has type count 2 (pin + M's entry)."""
    world.a.pin(1, world.P)
    world.a.set_entry(world.M, M_SLOT, pte(world.P, Pr | RW | US | A_))
    assert_frame(world.xen, world.P, type_count=2)


def test_47_unpinning_l1_still_linked_from_l2_keeps_it_validated(world: World) -> None:
    link_pinned_l1_into_m(world)
    assert world.a.unpin(world.P) == 1
    assert_frame(world.xen, world.P, type=L1, type_count=1, validated=True, pinned=False)


def test_48_unpinned_linked_l1_becomes_mappable_once_unlinked(world: World) -> None:
    link_pinned_l1_into_m(world)
    world.a.unpin(world.P)
    world.refused(
        lambda: world.a.map_at(world.w(0), world.P, Pr | RW),
        errno.EBUSY,
        rule="l1.writable-pagetable",
    )
    assert world.a.set_entry(world.M, M_SLOT, 0) == 1
    assert_frame(world.xen, world.P, type_count=0, validated=False)
    assert world.a.map_at(world.w(0), world.P, Pr | RW) == 1
    assert_frame(world.xen, world.P, type=WRITABLE, type_count=1)


def test_49_unpinning_l2_devalidates_it_but_pinned_l1_survives(world: World) -> None:
    link_pinned_l1_into_m(world)
    assert world.a.unpin(world.M) == 1
    assert_frame(world.xen, world.M, type_count=0, validated=False, pinned=False)
    assert_frame(world.xen, world.P, type=L1, type_count=1, validated=True, pinned=True)


# -- mmu_update batches and plain writes: #50-#59 ------------------------------------------


def test_50_batch_stops_at_first_bad_request_and_keeps_earlier_ones(world: World) -> None:
    reqs = [
        (world.a.slot_ptr(world.w(0)), pte(world.Q, Pr | RW)),
        (world.a.slot_ptr(world.w(1)), pte(world.R, Pr | RW | PCD)),
        (world.a.slot_ptr(world.w(2)), pte(world.S, Pr | RW)),
    ]
    world.refused(
        lambda: world.a.mmu_update(reqs), errno.EINVAL, done=1, rule="entry.disallowed-flags"
    )
    assert world.a.l1e(world.w(0)) == stored(pte(world.Q, Pr | RW))
    assert world.a.l1e(world.w(1)) == 0
    assert world.a.l1e(world.w(2)) == 0
    assert_frame(world.xen, world.Q, type=WRITABLE, type_count=1)
    assert_frame(world.xen, world.R, type_count=0, count=1)
    assert_frame(world.xen, world.S, type_count=0, count=1)


def test_51_command_4_in_ptr_is_enosys_with_done_at_its_index(world: World) -> None:
    reqs = [
        (world.a.slot_ptr(world.w(0)), pte(world.Q, Pr)),
        (world.a.slot_ptr(world.w(1)) | 4, pte(world.R, Pr)),
    ]
    world.refused(
        lambda: world.a.mmu_update(reqs), errno.ENOSYS, done=1, rule="mmu.unknown-command"
    )
    assert world.a.l1e(world.w(1)) == 0


def test_52_ptr_in_another_domains_frame_is_einval(world: World) -> None:
    with world.unchanged():
        world.refused(
            lambda: world.a.set_entry(world.X, 0, pte(world.Q, Pr)),
            errno.EINVAL,
            rule="mmu.ptr-frame-not-owned",
        )
    assert world.xen.read_frame(world.X) == bytes(4096)


def test_53_mmu_update_into_unused_frame_is_a_verbatim_write(world: World) -> None:
    junk = 0xDEAD_BEEF_0000_0FFF  # not a valid entry: it is never checked
    assert world.a.set_entry(world.S, 3, junk) == 1
    assert entry(world.xen, world.S, 3) == junk
    assert_frame(world.xen, world.S, type=WRITABLE, type_count=0, count=1)


def test_53b_mmu_update_into_rw_mapped_frame_is_a_verbatim_write(world: World) -> None:
    world.a.map_at(world.w(0), world.S, Pr | RW)
    junk = 0x8000_0000_0000_00FF
    assert world.a.set_entry(world.S, 511, junk) == 1
    assert world.a.vcpu.load(world.w(0) + 511 * 8) == junk
    assert_frame(world.xen, world.S, type=WRITABLE, type_count=1, count=2)


def test_54_mmu_update_into_descriptor_page_is_einval(world: World) -> None:
    # The simulator has no set_gdt, so the GDT frame G1 is made white-box:
    # type seg_desc, count 1, plus the general reference a GDT holds. The audit
    # cannot account for a GDT holder, so the state is restored before auditing.
    g1 = world.S
    pg = world.xen.state.frames[g1]
    pg.type, pg.type_count, pg.validated = PageType.SEG_DESC, 1, True
    pg.count += 1
    before = frame_key(world.xen, g1)
    try:
        with pytest.raises(Exception) as info:
            world.a.vcpu.mmu_update([(entry_ptr(g1, 0), 0x1234)])
        assert frame_key(world.xen, g1) == before
        assert world.xen.read_frame(g1) == bytes(4096)
    finally:
        pg.type, pg.type_count = PageType.WRITABLE, 0
        pg.count -= 1
    err = info.value
    assert getattr(err, "errno", None) == errno.EINVAL
    assert getattr(err, "rule", None) == "mmu.ptr-frame-wrong-type"
    audit_clean(world.xen)


def test_55_machphys_update_sets_m2p_entry(world: World) -> None:
    ptr = world.P << 12 | abi.MMU_MACHPHYS_UPDATE
    assert world.a.mmu_update([(ptr, 0x1234)]) == 1
    assert world.xen.m2p(world.P) == 0x1234


def test_56_machphys_on_foreign_frame_is_einval(world: World) -> None:
    m2p = world.xen.m2p(world.X)
    world.refused(
        lambda: world.a.mmu_update([(world.X << 12 | abi.MMU_MACHPHYS_UPDATE, 7)]),
        errno.EINVAL,
        rule="machphys.not-owned",
    )
    assert world.xen.m2p(world.X) == m2p


def test_56b_machphys_with_foreign_page_table_owner_is_eperm(world: World) -> None:
    pfd_b = (world.b.dom.domid + 1) << 16 | abi.DOMID_SELF
    ptr = world.X << 12 | abi.MMU_MACHPHYS_UPDATE
    m2p = world.xen.m2p(world.X)
    world.refused(lambda: world.a.mmu_update([(ptr, 7)], pfd_b), errno.EPERM)
    # even the control domain may not: MACHPHYS is for the caller's own tables
    world.refused(
        lambda: world.dom0.mmu_update([(ptr, 7)], pfd_b),
        errno.EPERM,
        rule="machphys.foreign-pfd",
    )
    assert world.xen.m2p(world.X) == m2p


def test_57_preserve_ad_keeps_accessed_and_dirty(world: World) -> None:
    w = world.w(0)
    world.a.map_at(w, world.Q, Pr | RW | A_ | D_)
    ptr = world.a.slot_ptr(w, abi.MMU_PT_UPDATE_PRESERVE_AD)
    assert world.a.mmu_update([(ptr, pte(world.Q, Pr | RW))]) == 1
    assert world.a.l1e(w) == stored(pte(world.Q, Pr | RW | A_ | D_))
    assert_frame(world.xen, world.Q, type=WRITABLE, type_count=1, count=2)


def test_58_whitelisted_flag_change_takes_fast_path_without_ref_changes(world: World) -> None:
    w = world.w(0)
    world.a.map_at(w, world.Q, Pr | RW)
    with world.unchanged():
        assert world.a.map_at(w, world.Q, Pr | RW | A_ | NX) == 1
    assert world.a.l1e(w) == stored(pte(world.Q, Pr | RW | A_ | NX))


def test_59_dropping_rw_drops_the_writable_type_ref(world: World) -> None:
    w = world.w(0)
    world.a.map_at(w, world.Q, Pr | RW)
    assert_frame(world.xen, world.Q, type_count=1, count=2)
    assert world.a.map_at(w, world.Q, Pr) == 1
    assert_frame(world.xen, world.Q, type=WRITABLE, type_count=0, count=2)


def test_60_mmuext_batch_stops_at_double_pin(world: World) -> None:
    ops = [abi.MmuExtOp(abi.MMUEXT_PIN_L1_TABLE, m) for m in (world.P, world.P, world.Q)]
    with world.unchanged(world.Q):
        world.refused(lambda: world.a.mmuext(ops), errno.EINVAL, done=1, rule="pin.already-pinned")
    assert_frame(world.xen, world.P, type=L1, type_count=1, pinned=True)


def test_scenarios_use_l2_slot_of_m_that_starts_empty(world: World) -> None:
    """Guard for the fixture: M is a pinned, empty L2 and K uses only slot 511."""
    assert_frame(world.xen, world.M, type=L2, type_count=1, pinned=True)
    assert entry(world.xen, world.M, M_SLOT) == 0
    assert entry(world.xen, world.K, S_SLOT) == 0
    assert [s for s in range(256) if entry(world.xen, world.K, s)] == []
    audit_clean(world.xen)
