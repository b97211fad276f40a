"""Command rules outside the section 9 table (spec sections 4.1, 4.2, 3.2):
foreigndom corner cases, I/O frames, the remaining mmuext commands, and the
update_va_mapping look-up."""

from __future__ import annotations

import errno

import pytest
from hvworld import (
    A_,
    L1,
    L4,
    RW,
    US,
    WRITABLE,
    Pr,
    World,
    assert_frame,
    audit_clean,
    entry,
    entry_ptr,
    pte,
    snapshot,
    stored,
)

from hypervisor import abi

IO = 0x50


def op(cmd: int, arg1: int = 0, arg2: int = 0) -> abi.MmuExtOp:
    return abi.MmuExtOp(cmd, arg1, arg2)


# -- mmu_update --------------------------------------------------------------------------------


def test_no_translate_command_updates_like_a_normal_one(world: World) -> None:
    ptr = world.a.slot_ptr(world.w(0), abi.MMU_PT_UPDATE_NO_TRANSLATE)
    assert world.a.mmu_update([(ptr, pte(world.Q, Pr | RW))]) == 1
    assert world.a.l1e(world.w(0)) == stored(pte(world.Q, Pr | RW))
    assert_frame(world.xen, world.Q, type=WRITABLE, type_count=1)


def test_upper_level_update_with_foreign_data_owner_is_einval(world: World) -> None:
    l2 = world.dom0.fresh()
    world.dom0.pin(2, l2)
    before = snapshot(world.xen)
    world.refused(
        lambda: world.dom0.mmu_update([(entry_ptr(l2, 0), 0)], foreigndom=2),
        errno.EINVAL,
        rule="mmu.foreign-upper-level",
    )
    assert snapshot(world.xen) == before


def test_dom0_maps_io_frame_without_reference_counting(world: World) -> None:
    before = snapshot(world.xen)
    assert world.dom0.map_at(world.dom0.w(0), IO, Pr | RW) == 1
    assert snapshot(world.xen) == before


def test_dom0_maps_io_frame_with_domid_io(world: World) -> None:
    assert world.dom0.map_at(world.dom0.w(0), IO, Pr, foreigndom=abi.DOMID_IO) == 1


def test_unprivileged_guest_may_name_domid_io_but_gets_no_io_access(world: World) -> None:
    world.refused(
        lambda: world.a.map_at(world.w(0), IO, Pr, foreigndom=abi.DOMID_IO),
        errno.EPERM,
        rule="l1.io-no-permission",
    )


def test_domid_io_does_not_let_a_guest_map_ram_it_does_not_own(world: World) -> None:
    world.refused(
        lambda: world.a.map_at(world.w(0), world.X, Pr, foreigndom=abi.DOMID_IO),
        errno.EBUSY,
    )


def test_dom0_may_use_cache_attributes_in_its_l1(world: World) -> None:
    q = world.dom0.fresh()
    assert world.dom0.map_at(world.dom0.w(0), q, Pr | RW | 0x10) == 1


# -- mmuext_op ---------------------------------------------------------------------------------


def test_dom0_pins_another_domains_frame_with_its_domid(world: World) -> None:
    assert world.dom0.pin(1, world.X, foreigndom=2) == 1
    assert_frame(world.xen, world.X, owner=2, type=L1, pinned=True, type_count=1)


@pytest.mark.parametrize(
    ("cmd", "rule"),
    [
        (abi.MMUEXT_NEW_BASEPTR, "baseptr.foreign"),
        (abi.MMUEXT_TLB_FLUSH_LOCAL, "mmuext.foreign-op"),
        (abi.MMUEXT_INVLPG_ALL, "mmuext.foreign-op"),
        (abi.MMUEXT_SET_LDT, "mmuext.foreign-op"),
    ],
)
def test_self_only_commands_with_foreigndom_are_eperm(world: World, cmd: int, rule: str) -> None:
    k_b = world.b.vcpu.cr3
    before = snapshot(world.xen)
    world.refused(lambda: world.dom0.mmuext([op(cmd, k_b)], foreigndom=2), errno.EPERM, rule=rule)
    assert snapshot(world.xen) == before


def test_flush_cache_needs_io_privileges(world: World) -> None:
    world.refused(
        lambda: world.a.mmuext([op(abi.MMUEXT_FLUSH_CACHE)]),
        errno.EACCES,
        rule="mmuext.cache-flush-denied",
    )
    assert world.dom0.mmuext([op(abi.MMUEXT_FLUSH_CACHE)]) == 1


@pytest.mark.parametrize(
    ("base", "ents"),
    [(0x1000_0001, 1), (0x1000_0000, 8193), (1 << 63, 1)],
    ids=["misaligned", "too-many", "non-canonical"],
)
def test_bad_ldt_is_einval(world: World, base: int, ents: int) -> None:
    world.refused(
        lambda: world.a.mmuext([op(abi.MMUEXT_SET_LDT, base, ents)]),
        errno.EINVAL,
        rule="mmuext.bad-ldt",
    )


def test_clear_page_of_table_in_use_is_einval(world: World) -> None:
    world.a.pin(1, world.P)
    world.refused(lambda: world.a.mmuext([op(abi.MMUEXT_CLEAR_PAGE, world.P)]), errno.EINVAL)
    assert_frame(world.xen, world.P, type=L1, type_count=1)


def test_clear_page_zeroes_a_data_frame(world: World) -> None:
    world.a.set_entry(world.Q, 9, 0xABC)
    assert world.a.mmuext([op(abi.MMUEXT_CLEAR_PAGE, world.Q)]) == 1
    assert world.xen.read_frame(world.Q) == bytes(4096)
    assert_frame(world.xen, world.Q, type_count=0, count=1)


def test_copy_page_may_read_a_page_table(world: World) -> None:
    assert world.a.copy_page(world.Q, world.K) == 1
    assert world.xen.read_frame(world.Q) == world.xen.read_frame(world.K)
    assert_frame(world.xen, world.K, type=L4, type_count=2)


def test_copy_page_may_not_write_a_page_table(world: World) -> None:
    world.refused(lambda: world.a.copy_page(world.K2, world.Q), errno.EINVAL)
    assert_frame(world.xen, world.K2, type=L4, type_count=1)


def test_new_user_baseptr_takes_an_l4_reference_and_zero_clears_it(world: World) -> None:
    assert world.a.mmuext([op(abi.MMUEXT_NEW_USER_BASEPTR, world.K2)]) == 1
    assert world.a.vcpu.user_base == world.K2
    assert_frame(world.xen, world.K2, type_count=2)
    assert world.a.mmuext([op(abi.MMUEXT_NEW_USER_BASEPTR, world.K2)]) == 1  # same: no-op
    assert_frame(world.xen, world.K2, type_count=2)
    assert world.a.mmuext([op(abi.MMUEXT_NEW_USER_BASEPTR, 0)]) == 1
    assert world.a.vcpu.user_base == 0
    assert_frame(world.xen, world.K2, type_count=1)


def test_new_user_baseptr_of_writable_frame_is_einval(world: World) -> None:
    world.a.map_at(world.w(0), world.S, Pr | RW)
    world.refused(
        lambda: world.a.mmuext([op(abi.MMUEXT_NEW_USER_BASEPTR, world.S)]),
        errno.EINVAL,
        rule="type.writable-mapped",
    )
    assert world.a.vcpu.user_base == 0


# -- update_va_mapping look-up -------------------------------------------------------------------


def test_update_va_mapping_through_a_linear_l4_slot_finds_no_l1(world: World) -> None:
    s = 5
    world.a.set_entry(world.K, s, pte(world.K, Pr | US | A_))
    va = s << 39 | s << 30 | s << 21
    before = snapshot(world.xen)
    world.refused(
        lambda: world.a.update_va_mapping(va, pte(world.Q, Pr)), errno.EINVAL, rule="uvm.no-l1"
    )
    assert snapshot(world.xen) == before
    assert entry(world.xen, world.K, 0) == 0


def test_update_va_mapping_uses_the_current_tables(world: World) -> None:
    # After switching to K2 (empty), the scratch window has no L1 any more.
    k2 = world.a.fresh()
    world.a.new_baseptr(k2)
    world.refused(
        lambda: world.a.update_va_mapping(world.w(0), pte(world.Q, Pr)),
        errno.EINVAL,
        rule="uvm.no-l1",
    )
    audit_clean(world.xen)


def test_update_va_mapping_otherdomain_maps_foreign_frame_for_dom0(world: World) -> None:
    world.dom0.vcpu.update_va_mapping_otherdomain(world.dom0.w(0), pte(world.X, Pr), 0, 2)
    audit_clean(world.xen)
    assert_frame(world.xen, world.X, count=2, type_count=0)


def test_empty_mmu_update_with_foreign_fd_is_not_checked(world: World) -> None:
    # Xen checks the privilege per request: with no request nothing is refused.
    assert world.a.mmu_update([], foreigndom=2) == 0


def test_empty_mmuext_op_with_foreign_fd_is_eperm(world: World) -> None:
    # ... whereas mmuext_op checks it once, before any op.
    world.refused(
        lambda: world.a.mmuext([], foreigndom=2), errno.EPERM, rule="foreigndom.not-privileged"
    )


def test_mmu_update_into_former_page_table_is_a_plain_write(world: World) -> None:
    world.a.pin(1, world.P)
    world.a.unpin(world.P)
    assert world.a.set_entry(world.P, 4, pte(world.K, Pr | RW)) == 1  # never checked
    assert entry(world.xen, world.P, 4) == pte(world.K, Pr | RW)
    assert_frame(world.xen, world.P, type=WRITABLE, type_count=0, count=1)
    # ... and validating it again checks the entry:
    world.refused(lambda: world.a.pin(1, world.P), errno.EBUSY, rule="l1.writable-pagetable")
