"""``hypervisor.abi`` holds Xen's names with Xen's values, once as flat C names
and once as typed groups; the two must agree."""

from __future__ import annotations

import errno

import pytest

from hypervisor import abi


@pytest.mark.parametrize("member", list(abi.MmuExtCmd), ids=lambda m: m.name)
def test_mmuext_enum_matches_flat_constant(member: abi.MmuExtCmd) -> None:
    assert getattr(abi, member.name) == member.value


@pytest.mark.parametrize("member", list(abi.MmuCmd), ids=lambda m: m.name)
def test_mmu_command_enum_matches_flat_constant(member: abi.MmuCmd) -> None:
    assert getattr(abi, member.name) == member.value


@pytest.mark.parametrize("member", list(abi.Hypercall), ids=lambda m: m.name)
def test_hypercall_enum_matches_flat_constant(member: abi.Hypercall) -> None:
    assert getattr(abi, f"HYPERVISOR_{member.name}") == member.value


def test_api_values_of_commands() -> None:
    assert (abi.MMUEXT_PIN_L1_TABLE, abi.MMUEXT_PIN_L4_TABLE, abi.MMUEXT_UNPIN_TABLE) == (0, 3, 4)
    assert (abi.MMUEXT_NEW_BASEPTR, abi.MMUEXT_NEW_USER_BASEPTR, abi.MMUEXT_COPY_PAGE) == (
        5,
        15,
        17,
    )
    assert (abi.MMUEXT_MARK_SUPER, abi.MMUEXT_UNMARK_SUPER) == (19, 20)


def test_api_values_of_hypercall_numbers() -> None:
    assert (abi.HYPERVISOR_mmu_update, abi.HYPERVISOR_multicall) == (1, 13)
    assert (abi.HYPERVISOR_update_va_mapping, abi.HYPERVISOR_vm_assist) == (14, 21)
    assert (abi.HYPERVISOR_update_va_mapping_otherdomain, abi.HYPERVISOR_mmuext_op) == (22, 26)


def test_api_values_of_flags_and_domids() -> None:
    assert (abi.UVMF_NONE, abi.UVMF_TLB_FLUSH, abi.UVMF_INVLPG, abi.UVMF_ALL) == (0, 1, 2, 4)
    assert (abi.DOMID_SELF, abi.DOMID_IO, abi.DOMID_XEN) == (0x7FF0, 0x7FF1, 0x7FF2)
    assert (abi._PAGE_PSE, abi._PAGE_GLOBAL, abi._PAGE_NX) == (0x80, 0x100, 1 << 63)
    assert abi.VMASST_TYPE_m2p_strict == 32


def test_pte_flags_match_the_flat_names() -> None:
    assert abi.Pte.PRESENT == abi._PAGE_PRESENT
    assert abi.Pte.RW == abi._PAGE_RW
    assert abi.Pte.NX == abi._PAGE_NX


def test_the_flat_entry_bits_are_plain_ints_not_flags() -> None:
    assert type(abi._PAGE_PRESENT) is int
    assert type(abi._PAGE_NX) is int


def test_make_pte_and_pte_mfn_round_trip_every_frame_width() -> None:
    for mfn in (0, 1, 0x1234, (1 << 40) - 1):
        pte = abi.make_pte(mfn, abi._PAGE_PRESENT | abi._PAGE_RW | abi._PAGE_NX)
        assert abi.pte_mfn(pte) == mfn
        assert abi.pte_flags(pte) == abi._PAGE_PRESENT | abi._PAGE_RW | abi._PAGE_NX


def test_pte_mfn_ignores_flag_bits_above_bit_51() -> None:
    assert abi.pte_mfn(0xFFF0_0000_0000_5067) == 5
    assert abi.pte_flags(0xFFF0_0000_0000_5067) == 0xFFF0_0000_0000_0067


def test_maddr_helpers_split_an_mmu_update_ptr_into_frame_and_slot() -> None:
    ptr = abi.mfn_maddr(0x2A) | 17 * 8 | abi.MMU_PT_UPDATE_PRESERVE_AD
    assert (abi.maddr_mfn(ptr), abi.maddr_slot(ptr)) == (0x2A, 17)


def test_errno_values_are_pythons() -> None:
    assert (abi.EINVAL, abi.EBUSY, abi.ESRCH, abi.ENOSYS) == (
        errno.EINVAL,
        errno.EBUSY,
        errno.ESRCH,
        errno.ENOSYS,
    )
    assert abi.errno_name(-22) == "EINVAL"
