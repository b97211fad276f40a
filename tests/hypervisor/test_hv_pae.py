"""32-bit PAE guests (spec section 3.8): the L3 is the top level, its slot 3
holds an L2 with Xen's compat mappings, and several 64-bit-only operations are
refused or become no-ops."""

from __future__ import annotations

import errno

import pytest
from hvworld import (
    A_,
    BIT7,
    D_,
    L2,
    L3,
    NX,
    PCD,
    PWT,
    RW,
    US,
    G,
    Guest,
    Pr,
    audit_clean,
    entry,
    frame_key,
    pte,
    refused_with,
    snapshot,
)

from hypervisor import abi

MFN = (1 << 40) - 1
PAE_FIRST_XEN_L2_SLOT = 428
"""l2_table_offset(HYPERVISOR_COMPAT_VIRT_START = 0xF5800000)."""
AVAIL = 0xE00


def xen_l2_of(g: Guest) -> int:
    """The bootstrap L3's slot-3 L2 (the "PAE Xen L2")."""
    return entry(g.xen, g.vcpu.cr3, 3) >> 12 & MFN


def l3_with_own_xen_l2(g: Guest) -> tuple[int, int]:
    """A fresh, unvalidated L3 whose slot 3 names a fresh L2 (plain writes)."""
    l3, l2 = g.fresh(), g.fresh()
    g.set_entry(l3, 3, pte(l2, Pr))
    return l3, l2


def test_builder_leaves_l3_pinned_as_base_and_slot_3_l2_marked(pae: Guest) -> None:
    top = pae.vcpu.cr3
    info = pae.xen.frame(top)
    assert (info.type, info.type_count, info.pinned) == (L3, 2, True)
    assert pae.xen.frame(xen_l2_of(pae)).pae_xen_l2
    audit_clean(pae.xen)


def test_pin_l4_on_32bit_guest_is_a_silent_no_op(pae: Guest) -> None:
    frame = pae.fresh()
    before = snapshot(pae.xen)
    assert pae.pin(4, frame) == 1
    assert snapshot(pae.xen) == before


def test_pin_l4_on_32bit_guest_is_a_no_op_even_for_a_free_frame(pae: Guest) -> None:
    before = snapshot(pae.xen)
    assert pae.pin(4, pae.xen.total_frames - 1) == 1
    assert snapshot(pae.xen) == before


def test_pin_l3_validates_l3_and_its_slot_3_l2(pae: Guest) -> None:
    l3, l2 = l3_with_own_xen_l2(pae)
    assert pae.pin(3, l3) == 1
    info = pae.xen.frame(l3)
    assert (info.type, info.type_count, info.validated, info.pinned) == (L3, 1, True, True)
    l2_info = pae.xen.frame(l2)
    assert (l2_info.type, l2_info.type_count, l2_info.pae_xen_l2) == (L2, 1, True)


def test_pin_l3_fills_xen_slots_of_its_slot_3_l2(pae: Guest) -> None:
    l3, l2 = l3_with_own_xen_l2(pae)
    pae.pin(3, l3)
    assert entry(pae.xen, l2, PAE_FIRST_XEN_L2_SLOT) & Pr
    assert entry(pae.xen, l2, PAE_FIRST_XEN_L2_SLOT - 1) == 0


def test_pin_l3_without_slot_3_is_einval(pae: Guest) -> None:
    """mm.c ``promote_l3_table``: slot 3's presence is checked in slot order,
    after slots 0-2 (here slot 0 validates an L2 first). The L3 failed after
    slot 0, so it takes Xen's partial path: type L3, count 0, not validated; the
    slot-0 L2 was validated and torn down again, so it is an L2 with count 0."""
    l3, l2 = pae.fresh(), pae.fresh()
    pae.set_entry(l3, 0, pte(l2, Pr))
    count_before = pae.xen.frame(l2).count
    refused_with(pae.xen, lambda: pae.pin(3, l3), errno.EINVAL, rule="l3.pae-missing-xen-l2")
    assert frame_key(pae.xen, l3)[1:5] == (L3, 0, pae.xen.frame(l3).count, False)
    l2_info = pae.xen.frame(l2)
    assert (l2_info.type, l2_info.type_count, l2_info.count) == (L2, 0, count_before)


def test_validation_zeroes_l3_slots_4_and_up(pae: Guest) -> None:
    l3, _ = l3_with_own_xen_l2(pae)
    pae.set_entry(l3, 4, 0x1234_5000)
    pae.set_entry(l3, 511, 0xFFFF)
    pae.pin(3, l3)
    assert entry(pae.xen, l3, 4) == 0
    assert entry(pae.xen, l3, 511) == 0


def test_refused_l3_pin_leaves_slots_4_and_up_zeroed(pae: Guest) -> None:
    """Xen's ``promote_l3_table`` clears slots 4-511 of a PAE L3 before it
    checks slot 3; the refusal that follows does not restore them."""
    l3 = pae.fresh()
    pae.set_entry(l3, 4, 0x1234_5000)
    refused_with(pae.xen, lambda: pae.pin(3, l3), errno.EINVAL, rule="l3.pae-missing-xen-l2")
    assert entry(pae.xen, l3, 4) == 0


@pytest.mark.parametrize("slot", [3, 4, 511])
def test_update_of_l3_slot_3_or_above_is_einval(pae: Guest, slot: int) -> None:
    top = pae.vcpu.cr3
    old = entry(pae.xen, top, slot)
    before = snapshot(pae.xen)
    refused_with(pae.xen, lambda: pae.set_entry(top, slot, 0), errno.EINVAL, rule="l3.pae-slot")
    assert entry(pae.xen, top, slot) == old
    assert snapshot(pae.xen) == before


def test_update_of_l3_slot_0_links_an_ordinary_l2(pae: Guest) -> None:
    l2 = pae.fresh()
    assert pae.set_entry(pae.vcpu.cr3, 0, pte(l2, Pr)) == 1
    info = pae.xen.frame(l2)
    assert (info.type, info.type_count, info.pae_xen_l2) == (L2, 1, False)


def test_stored_pae_l3_entry_gains_user_and_rw(pae: Guest) -> None:
    l2 = pae.fresh()
    pae.set_entry(pae.vcpu.cr3, 1, pte(l2, Pr))
    assert entry(pae.xen, pae.vcpu.cr3, 1) == pte(l2, Pr | US | RW)


@pytest.mark.parametrize("slot", [PAE_FIRST_XEN_L2_SLOT, 500, 511])
@pytest.mark.parametrize("val", [0, pte(0x300, Pr)], ids=["zero", "present"])
def test_update_of_xen_slot_of_pae_xen_l2_is_eperm(pae: Guest, slot: int, val: int) -> None:
    l2 = xen_l2_of(pae)
    old = entry(pae.xen, l2, slot)
    refused_with(pae.xen, lambda: pae.set_entry(l2, slot, val), errno.EPERM, rule="l2.pae-xen-slot")
    assert entry(pae.xen, l2, slot) == old


def test_last_guest_slot_of_pae_xen_l2_is_writable(pae: Guest) -> None:
    l1 = pae.fresh()
    assert pae.set_entry(xen_l2_of(pae), PAE_FIRST_XEN_L2_SLOT - 1, pte(l1, Pr | RW | A_)) == 1
    assert pae.xen.frame(l1).type_count == 1


def test_new_user_baseptr_on_32bit_guest_is_einval(pae: Guest) -> None:
    before = snapshot(pae.xen)
    op = abi.MmuExtOp(abi.MMUEXT_NEW_USER_BASEPTR, pae.vcpu.cr3)
    refused_with(pae.xen, lambda: pae.mmuext([op]), errno.EINVAL, rule="baseptr.no-user-base-32")
    assert snapshot(pae.xen) == before
    assert pae.vcpu.user_base == 0


@pytest.mark.parametrize(
    "flags", [Pr | RW | US | A_ | D_, Pr | AVAIL, Pr], ids=["P|RW|US|A|D", "AVAIL", "P"]
)
def test_pae_l3_allows_present_rw_user_accessed_dirty_avail(pae: Guest, flags: int) -> None:
    l2 = pae.fresh()
    assert pae.set_entry(pae.vcpu.cr3, 0, pte(l2, flags)) == 1


@pytest.mark.parametrize(
    "bad",
    [PWT, PCD, BIT7, G, NX, 1 << 52, 1 << 62],
    ids=["PWT", "PCD", "PSE", "G", "NX", "52", "62"],
)
def test_pae_l3_mask_refuses_other_flags(pae: Guest, bad: int) -> None:
    l2 = pae.fresh()
    before = snapshot(pae.xen)
    refused_with(
        pae.xen,
        lambda: pae.set_entry(pae.vcpu.cr3, 0, pte(l2, Pr | bad)),
        errno.EINVAL,
        rule="entry.disallowed-flags",
    )
    assert snapshot(pae.xen) == before


def test_pae_l3_mask_ignores_non_present_entries(pae: Guest) -> None:
    assert pae.set_entry(pae.vcpu.cr3, 0, PCD | PWT | NX) == 1
    assert entry(pae.xen, pae.vcpu.cr3, 0) == PCD | PWT | NX


def test_slot_3_l2_cannot_be_shared_by_two_l3s(pae: Guest) -> None:
    l3a, l2 = l3_with_own_xen_l2(pae)
    l3b = pae.fresh()
    pae.set_entry(l3b, 3, pte(l2, Pr))
    pae.pin(3, l3a)
    l2_before = frame_key(pae.xen, l2)
    refused_with(pae.xen, lambda: pae.pin(3, l3b), errno.EINVAL, rule="l3.pae-xen-l2-shared")
    assert frame_key(pae.xen, l2) == l2_before
    assert pae.xen.frame(l3b).type_count == 0


def test_copy_of_current_l3_cannot_become_base_because_slot_3_is_shared(pae: Guest) -> None:
    copy = pae.fresh()
    pae.copy_page(copy, pae.vcpu.cr3)
    top = pae.vcpu.cr3
    refused_with(pae.xen, lambda: pae.new_baseptr(copy), errno.EINVAL, rule="l3.pae-xen-l2-shared")
    assert pae.vcpu.cr3 == top


def test_slot_3_l2_cannot_be_pinned_as_ordinary_l2(pae: Guest) -> None:
    l2 = xen_l2_of(pae)
    before = frame_key(pae.xen, l2)
    refused_with(pae.xen, lambda: pae.pin(2, l2), errno.EINVAL, rule="type.mismatch")
    assert frame_key(pae.xen, l2) == before


def test_pinned_ordinary_l2_cannot_become_a_slot_3_l2(pae: Guest) -> None:
    l3, l2 = l3_with_own_xen_l2(pae)
    pae.pin(2, l2)
    refused_with(pae.xen, lambda: pae.pin(3, l3), errno.EINVAL)
    assert pae.xen.frame(l3).type_count == 0
    assert not pae.xen.frame(l2).pae_xen_l2


def test_new_baseptr_to_l3_with_own_slot_3_l2_switches_base(pae: Guest) -> None:
    l3, l2 = l3_with_own_xen_l2(pae)
    old = pae.vcpu.cr3
    assert pae.new_baseptr(l3) == 1
    assert pae.vcpu.cr3 == l3
    assert pae.xen.frame(l3).type_count == 1
    assert pae.xen.frame(old).type_count == 1  # still pinned
    assert pae.xen.frame(l2).pae_xen_l2


def test_no_linear_l3_entries_in_32bit_guests(pae: Guest) -> None:
    other, _ = l3_with_own_xen_l2(pae)
    pae.pin(3, other)
    before = snapshot(pae.xen)
    refused_with(pae.xen, lambda: pae.set_entry(pae.vcpu.cr3, 0, pte(other, Pr)), errno.EINVAL)
    assert snapshot(pae.xen) == before


def test_update_va_mapping_in_compat_xen_area_is_einval(pae: Guest) -> None:
    refused_with(
        pae.xen,
        lambda: pae.update_va_mapping(abi.HYPERVISOR_COMPAT_VIRT_START, 0),
        errno.EINVAL,
        rule="uvm.bad-va",
    )


def test_m2p_strict_assist_does_not_exist_for_32bit_guests(pae: Guest) -> None:
    refused_with(
        pae.xen,
        lambda: pae.vcpu.vm_assist(abi.VMASST_CMD_enable, abi.VMASST_TYPE_m2p_strict),
        errno.EINVAL,
        rule="vm_assist.bad-type",
    )


def test_pae_guest_maps_and_reads_through_scratch_window(pae: Guest) -> None:
    data = pae.fresh()
    w = pae.w(0)
    pae.map_at(w, data, Pr | RW)
    pae.vcpu.store(w, 0x1122334455667788)
    assert pae.xen.read_frame(data)[:8] == (0x1122334455667788).to_bytes(8, "little")
