"""Refusals and faults teach: they name what holds a frame, hint at the classic
confusions, and write every frame, address and entry in hex."""

from __future__ import annotations

import errno
import random
import re

import pytest
from hvworld import A_, RW, US, Pr, World, entry_ptr, pte
from rule_scenarios import SCENARIOS, newest_refusal

from hypervisor import HypercallError, Hypervisor, PageFault, abi
from hypervisor.mm.explain import JUNK_MIN_PRESENT

DECIMAL_NUMBER = re.compile(r"\b(mfn|ptr|va|entry|frame) [0-9]+\b(?!\.)")


def fault_of(call: object) -> PageFault:
    with pytest.raises(PageFault) as info:
        call()  # type: ignore[operator]
    return info.value


# -- what holds a frame ---------------------------------------------------------------------------


def test_mapping_rw_an_unpinned_but_loaded_l4_names_the_base_pointer_holding_it(
    world: World,
) -> None:
    ptr = world.a.slot_ptr(world.w(0))
    world.a.new_baseptr(world.K2)
    world.a.unpin(world.K2)
    err = world.refused(
        lambda: world.a.mmu_update([(ptr, pte(world.K2, Pr | RW))]),
        errno.EBUSY,
        rule="l1.writable-pagetable",
    )
    assert "held by vCPU 0's kernel base pointer (type count 1)" in str(err)
    assert "unpin" not in str(err).split(";")[0]


def test_a_type_change_refusal_names_the_pin_and_the_parent_entry(world: World) -> None:
    world.a.pin(1, world.P)
    world.a.set_entry(world.M, 3, pte(world.P, Pr | RW | US | A_))
    err = world.refused(
        lambda: world.a.mmuext([abi.MmuExtOp(abi.MMUEXT_CLEAR_PAGE, world.P)]),
        errno.EINVAL,
        rule="type.in-use",
    )
    assert f"held by its pin and L2 mfn {world.M:#x} slot 3 (type count 2)" in str(err)


def test_a_type_change_refusal_names_the_user_base_pointer(world: World) -> None:
    world.a.mmuext([abi.MmuExtOp(abi.MMUEXT_NEW_USER_BASEPTR, world.K3)])
    world.a.unpin(world.K3)
    err = world.refused(lambda: world.a.pin(1, world.K3), errno.EINVAL, rule="type.mismatch")
    assert "held by vCPU 0's user base pointer" in str(err)


def test_unpinning_a_frame_that_is_not_pinned_says_what_it_is(world: World) -> None:
    world.a.set_entry(world.M, 0, pte(world.P, Pr))
    err = world.refused(lambda: world.a.unpin(world.P), errno.EINVAL, rule="unpin.not-pinned")
    assert f"mfn {world.P:#x} is an L1 table held by L2 mfn {world.M:#x} slot 0" in str(err)


# -- hints for the classic confusions -------------------------------------------------------------


def test_new_baseptr_of_an_untyped_l3_asks_whether_it_is_the_top_level_table(
    world: World,
) -> None:
    l3, l2 = world.a.fresh(), world.a.fresh()
    world.a.pin(2, l2)
    world.a.set_entry(l3, 0, pte(l2, Pr | RW | US | A_))
    err = world.refused(lambda: world.a.new_baseptr(l3), errno.EINVAL)
    assert f"Hint: is mfn {l3:#x} your top-level table?" in str(err)
    assert "NEW_BASEPTR validated it as an L4 table, and its slot 0 failed" in str(err)


def test_pin_l4_of_a_pinned_l1_says_it_is_in_use_as_an_l1(world: World) -> None:
    world.a.pin(1, world.P)
    err = world.refused(lambda: world.a.pin(4, world.P), errno.EINVAL, rule="type.mismatch")
    assert str(err).endswith(
        f"is mfn {world.P:#x} your top-level table? It is in use as an L1 table."
    )


def test_pinning_an_l1_that_validates_gives_no_hint(world: World) -> None:
    world.a.map_at(world.w(0), world.P, Pr | RW)
    err = world.refused(lambda: world.a.pin(1, world.P), errno.EINVAL)
    assert "Hint" not in str(err)


def test_validating_a_frame_full_of_junk_asks_whether_it_was_zeroed(world: World) -> None:
    junk = world.a.fresh()
    rnd = random.Random(6)
    world.a.mmu_update([(entry_ptr(junk, s), rnd.getrandbits(64) | Pr) for s in range(512)])
    err = world.refused(lambda: world.a.pin(1, junk), errno.EINVAL)
    assert f"mfn {junk:#x} has 512 present entries" in str(err)
    assert str(err).endswith("was the frame zeroed before it became a table?")


def test_one_deliberately_bad_entry_is_not_called_junk(world: World) -> None:
    l1 = world.a.fresh()
    world.a.set_entry(l1, 5, pte(world.Q, Pr | 0x10))  # PCD: refused, but written on purpose
    assert JUNK_MIN_PRESENT > 1
    err = world.refused(lambda: world.a.pin(1, l1), errno.EINVAL, rule="entry.disallowed-flags")
    assert "zeroed" not in str(err)


def test_a_kernel_write_to_a_read_only_data_page_says_the_leaf_is_read_only(
    world: World,
) -> None:
    world.a.map_at(world.w(0), world.Q, Pr)
    l1, slot = world.a.l1_slot(world.w(0))
    why = fault_of(lambda: world.a.vcpu.store(world.w(0), 1)).reason
    assert why.startswith(f"the leaf entry (L1 mfn {l1:#x} slot {slot}) maps mfn {world.Q:#x}")
    assert "read-only" in why
    assert "writable page tables" not in why


def test_the_read_only_leaf_reason_is_the_same_without_writable_pagetables(
    world: World,
) -> None:
    world.a.map_at(world.w(0), world.Q, Pr)
    with_ptwr = fault_of(lambda: world.a.vcpu.store(world.w(0), 1)).reason
    world.a.vcpu.vm_assist(abi.VMASST_CMD_disable, abi.VMASST_TYPE_writable_pagetables)
    assert fault_of(lambda: world.a.vcpu.store(world.w(0), 1)).reason == with_ptwr


def test_a_write_to_a_read_only_l1_without_writable_pagetables_says_the_assist_is_off(
    world: World,
) -> None:
    world.a.pin(1, world.P)
    world.a.map_at(world.w(0), world.P, Pr)
    world.a.vcpu.vm_assist(abi.VMASST_CMD_disable, abi.VMASST_TYPE_writable_pagetables)
    why = fault_of(lambda: world.a.vcpu.store(world.w(0), 0)).reason
    assert "an L1 table" in why
    assert "VMASST_TYPE_writable_pagetables, which is off" in why


def test_a_user_write_through_a_read_only_leaf_names_the_leaf(world: World) -> None:
    world.a.map_at(world.w(0), world.Q, Pr | US)
    world.a.mmuext([abi.MmuExtOp(abi.MMUEXT_NEW_USER_BASEPTR, world.K)])
    l1, slot = world.a.l1_slot(world.w(0))

    def user_store() -> None:
        with world.a.vcpu.user_mode():
            world.a.vcpu.store(world.w(0), 1)

    assert (
        fault_of(user_store).reason == f"the leaf entry (L1 mfn {l1:#x} slot {slot}) is read-only"
    )


def test_user_mode_with_no_user_base_loaded_says_so(world: World) -> None:
    def user_load() -> None:
        with world.a.vcpu.user_mode():
            world.a.vcpu.load(0x400000)

    fault = fault_of(user_load)
    assert fault.reason.startswith("user mode, but no user base is loaded")
    assert "MMUEXT_NEW_USER_BASEPTR" in fault.reason


# -- hex, and addresses beyond memory -------------------------------------------------------------


def test_a_ptr_beyond_memory_says_it_lies_beyond_memory(world: World) -> None:
    err = world.refused(
        lambda: world.a.mmu_update([(entry_ptr(0x5000, 3), 0)]),
        errno.EINVAL,
        rule="mmu.ptr-frame-not-owned",
    )
    assert f"mfn 0x5000 lies beyond the machine's memory ({world.xen.total_frames:#x} frames)" in (
        str(err)
    )


def test_mapping_a_frame_beyond_memory_says_xen_treats_it_as_io(world: World) -> None:
    err = world.refused(
        lambda: world.a.map_at(world.w(0), 0x5000, Pr), errno.EPERM, rule="l1.io-no-permission"
    )
    assert "lies beyond the machine's memory" in str(err)
    assert "Xen treats it as I/O memory" in str(err)


def test_frame_info_repr_shows_the_frame_in_hex(world: World) -> None:
    assert repr(world.xen.frame(world.P)).startswith(f"FrameInfo(mfn={world.P:#x}, ")


def test_request_records_repr_in_hex() -> None:
    assert repr(abi.MmuUpdate(0x1234008, 0x5067)) == "MmuUpdate(ptr=0x1234008, val=0x5067)"
    assert (
        repr(abi.MmuExtOp(abi.MMUEXT_PIN_L1_TABLE, 0x17B))
        == "MmuExtOp(cmd=0, arg1=0x17b, arg2=0x0)"
    )


def test_disallowed_flags_are_named() -> None:
    xen = SCENARIOS["entry.disallowed-flags"](World(Hypervisor(total_frames=1024)))
    assert "disallowed flags 0x10 (PCD)" in newest_refusal(xen).message


@pytest.mark.parametrize("rule_id", sorted(SCENARIOS))
def test_no_message_writes_a_frame_address_or_entry_in_decimal(rule_id: str) -> None:
    xen = SCENARIOS[rule_id](World(Hypervisor(total_frames=1024)))
    message = newest_refusal(xen).message
    assert not DECIMAL_NUMBER.search(message), message


def test_refusals_never_raise_a_bare_hypercall_error_without_rule(world: World) -> None:
    with pytest.raises(HypercallError) as info:
        world.a.pin(1, world.X)
    assert info.value.rule == "pin.not-owned"
