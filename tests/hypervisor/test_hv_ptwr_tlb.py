"""Trapped writes (spec section 5) and the TLB (spec section 7).

A kernel store through a read-only mapping of one of its own validated L1s is
emulated as a checked entry update when ``VMASST_TYPE_writable_pagetables`` is
on; anything else is a page fault. Translations stay cached until a flush of
section 7 removes them, so stale translations are observable.
"""

from __future__ import annotations

import errno

import pytest
from hvworld import (
    A_,
    RW,
    TOTAL_FRAMES,
    US,
    WRITABLE,
    G,
    Guest,
    Pr,
    World,
    assert_frame,
    audit_clean,
    entry,
    pte,
    snapshot,
    stored,
)

from hypervisor import Config, Hypervisor, PageFault, abi
from hypervisor.trace import FlushRecord, TrappedWriteRecord

PF_PRESENT, PF_WRITE, PF_USER = 1, 2, 4
SLOT = 3
"""The entry of P that the trapped-write tests store into."""


def pinned_l1_mapped_read_only(world: World) -> int:
    """Pin P as an L1 and map it read-only at w(0); returns the VA of P[SLOT]."""
    world.a.pin(1, world.P)
    world.a.map_at(world.w(0), world.P, Pr)
    return world.w(0) + SLOT * 8


def trapped_writes(world: World) -> list[TrappedWriteRecord]:
    return [r for r in world.xen.trace if isinstance(r, TrappedWriteRecord)]


def flushes(world: World, reason: str) -> list[FlushRecord]:
    return [r for r in world.xen.trace if isinstance(r, FlushRecord) and r.reason == reason]


def fill(g: Guest, va: int) -> int:
    """Touch ``va`` so its translation is cached; returns the word read."""
    return g.vcpu.load(va)


# -- trapped writes (ptwr) -------------------------------------------------------------------


def test_kernel_store_into_read_only_l1_is_emulated_as_entry_update(world: World) -> None:
    va = pinned_l1_mapped_read_only(world)
    before = world.xen.stats().trapped_writes
    world.a.vcpu.store(va, pte(world.Q, Pr | RW))
    audit_clean(world.xen)
    assert entry(world.xen, world.P, SLOT) == stored(pte(world.Q, Pr | RW))
    assert_frame(world.xen, world.Q, type=WRITABLE, type_count=1, count=2)
    assert world.xen.stats().trapped_writes == before + 1
    (record,) = trapped_writes(world)
    assert (record.mfn, record.slot, record.old, record.new, record.result) == (
        world.P,
        SLOT,
        0,
        pte(world.Q, Pr | RW),
        0,
    )


def test_trapped_write_replacing_an_entry_drops_the_old_references(world: World) -> None:
    va = pinned_l1_mapped_read_only(world)
    world.a.vcpu.store(va, pte(world.Q, Pr | RW))
    world.a.vcpu.store(va, pte(world.R, Pr))
    audit_clean(world.xen)
    assert_frame(world.xen, world.Q, type_count=0, count=1)
    assert_frame(world.xen, world.R, type_count=0, count=2)


def test_trapped_write_into_live_l1_changes_what_a_va_maps(world: World) -> None:
    # The scratch L1 maps itself read-only in the bootstrap region: a plain
    # kernel store into it installs a mapping the guest can then use.
    l1, slot = world.a.l1_slot(world.w(4))
    si = world.a.dom.start_info
    l1_pfn = world.a.dom.initial_p2m.index(l1)
    world.a.set_entry(world.Q, 0, 0xC0FFEE)  # Q's contents, as plain data
    world.a.vcpu.store(world.a.va_of_pfn(l1_pfn) + slot * 8, pte(world.Q, Pr | RW))
    audit_clean(world.xen)
    assert si.virt_base <= world.w(4)
    assert world.a.vcpu.load(world.w(4)) == 0xC0FFEE
    assert_frame(world.xen, world.Q, type=WRITABLE, type_count=1)


def test_partial_stores_merge_into_the_entry(world: World) -> None:
    va = pinned_l1_mapped_read_only(world)
    world.a.vcpu.store(va, pte(world.Q, Pr), size=4)
    world.a.vcpu.store(va + 4, 1 << 31, size=4)  # NX, the top bit of the upper half
    audit_clean(world.xen)
    # The first store is stored as USER|GUEST_KERNEL (pv/mm.h adjust_guest_l1e);
    # the upper-half store overwrites bit 52, so the merged entry has USER and no
    # GUEST_KERNEL marker, and Xen adds GLOBAL.
    assert entry(world.xen, world.P, SLOT) == pte(world.Q, Pr | US | G) | 1 << 63
    assert_frame(world.xen, world.Q, count=2, type_count=0)
    assert len(trapped_writes(world)) == 2


def test_trapped_write_does_not_flush_the_tlb(world: World) -> None:
    va = pinned_l1_mapped_read_only(world)
    other = world.a.va_of_pfn(0)
    fill(world.a, other)
    flushes_before = world.xen.stats().tlb_flushes
    world.a.vcpu.store(va, pte(world.Q, Pr))
    # (the faulting page's own entry is dropped, as a #PF does on x86)
    assert world.xen.stats().tlb_flushes == flushes_before
    world.a.set_entry(world.Q, 0, 0x99)
    world.a.update_va_mapping(other, pte(world.Q, Pr), abi.UVMF_NONE)
    assert world.a.vcpu.load(other) != 0x99  # still the cached translation


def test_store_into_read_only_l1_without_writable_pagetables_faults(world: World) -> None:
    va = pinned_l1_mapped_read_only(world)
    world.a.vcpu.vm_assist(abi.VMASST_CMD_disable, abi.VMASST_TYPE_writable_pagetables)
    before = snapshot(world.xen)
    faults = world.xen.stats().page_faults
    with pytest.raises(PageFault) as info:
        world.a.vcpu.store(va, pte(world.Q, Pr))
    assert info.value.va == va
    assert info.value.error_code & (PF_PRESENT | PF_WRITE) == PF_PRESENT | PF_WRITE
    assert entry(world.xen, world.P, SLOT) == 0
    assert snapshot(world.xen) == before
    assert world.xen.stats().page_faults == faults + 1
    assert world.xen.stats().trapped_writes == 0
    audit_clean(world.xen)


def test_store_into_read_only_l2_is_never_emulated(world: World) -> None:
    world.a.map_at(world.w(0), world.M, Pr)
    before = snapshot(world.xen)
    with pytest.raises(PageFault):
        world.a.vcpu.store(world.w(0) + 8, pte(world.Q, Pr | RW | US | A_))
    assert entry(world.xen, world.M, 1) == 0
    assert snapshot(world.xen) == before
    assert trapped_writes(world) == []
    audit_clean(world.xen)


def test_store_into_own_l4_through_bootstrap_mapping_faults(world: World) -> None:
    pt_base = world.a.dom.start_info.pt_base  # the L4 (K), mapped read-only
    with pytest.raises(PageFault):
        world.a.vcpu.store(pt_base + 8 * 5, pte(world.K2, Pr))
    assert entry(world.xen, world.K, 5) == 0
    audit_clean(world.xen)


def test_store_into_read_only_data_frame_faults(world: World) -> None:
    world.a.map_at(world.w(0), world.Q, Pr)
    with pytest.raises(PageFault):
        world.a.vcpu.store(world.w(0), 1)
    assert world.xen.read_frame(world.Q) == bytes(4096)
    audit_clean(world.xen)


def test_trapped_write_that_would_map_a_page_table_rw_faults_and_changes_nothing(
    world: World,
) -> None:
    va = pinned_l1_mapped_read_only(world)
    before = snapshot(world.xen)
    with pytest.raises(PageFault):
        world.a.vcpu.store(va, pte(world.K, Pr | RW))
    assert entry(world.xen, world.P, SLOT) == 0
    assert snapshot(world.xen) == before
    (record,) = trapped_writes(world)
    assert (record.result, record.rule) == (-errno.EBUSY, "l1.writable-pagetable")
    assert world.xen.stats().trapped_writes == 0
    audit_clean(world.xen)


def test_trapped_write_of_foreign_frame_faults(world: World) -> None:
    va = pinned_l1_mapped_read_only(world)
    before = snapshot(world.xen)
    with pytest.raises(PageFault):
        world.a.vcpu.store(va, pte(world.X, Pr))
    assert snapshot(world.xen) == before
    audit_clean(world.xen)


def test_trapped_write_with_disallowed_flags_faults(world: World) -> None:
    va = pinned_l1_mapped_read_only(world)
    with pytest.raises(PageFault):
        world.a.vcpu.store(va, pte(world.Q, Pr | 0x10))
    assert entry(world.xen, world.P, SLOT) == 0
    audit_clean(world.xen)


def test_store_from_user_mode_is_never_emulated(world: World) -> None:
    va = pinned_l1_mapped_read_only(world)
    with pytest.raises(PageFault) as info, world.a.vcpu.user_mode():
        world.a.vcpu.store(va, pte(world.Q, Pr))
    assert info.value.error_code & PF_USER
    assert entry(world.xen, world.P, SLOT) == 0
    audit_clean(world.xen)


# -- stale translations and the flushes that remove them ----------------------------------------


def two_mappings(world: World) -> int:
    """Q and R hold different words; w(0) maps Q and its translation is cached.
    Then w(0) is remapped to R without a flush. Returns w(0)."""
    world.a.set_entry(world.Q, 0, 0x51)
    world.a.set_entry(world.R, 0, 0x52)
    w = world.w(0)
    world.a.map_at(w, world.Q, Pr)
    assert fill(world.a, w) == 0x51
    world.a.map_at(w, world.R, Pr)
    return w


def test_stale_translation_survives_l1_mmu_update(world: World) -> None:
    w = two_mappings(world)
    assert world.a.vcpu.load(w) == 0x51  # still Q: L1 updates do not flush


def test_invlpg_removes_the_stale_translation(world: World) -> None:
    w = two_mappings(world)
    world.a.mmuext([abi.MmuExtOp(abi.MMUEXT_INVLPG_LOCAL, w)])
    assert world.a.vcpu.load(w) == 0x52


def test_invlpg_of_another_page_keeps_the_stale_translation(world: World) -> None:
    w = two_mappings(world)
    world.a.mmuext([abi.MmuExtOp(abi.MMUEXT_INVLPG_LOCAL, world.w(1))])
    assert world.a.vcpu.load(w) == 0x51


@pytest.mark.parametrize(
    "cmd", [abi.MMUEXT_TLB_FLUSH_LOCAL, abi.MMUEXT_TLB_FLUSH_ALL, abi.MMUEXT_INVLPG_ALL]
)
def test_flush_commands_remove_the_stale_translation(world: World, cmd: int) -> None:
    w = two_mappings(world)
    world.a.mmuext([abi.MmuExtOp(cmd, w)])
    assert world.a.vcpu.load(w) == 0x52


def test_invlpg_of_non_canonical_address_is_a_silent_no_op(world: World) -> None:
    w = two_mappings(world)
    assert world.a.mmuext([abi.MmuExtOp(abi.MMUEXT_INVLPG_LOCAL, 1 << 63)]) == 1
    assert world.a.vcpu.load(w) == 0x51


@pytest.mark.parametrize(
    ("flags", "stale"),
    [
        (abi.UVMF_NONE, True),
        (abi.UVMF_INVLPG, False),
        (abi.UVMF_TLB_FLUSH, False),
        (abi.UVMF_INVLPG | abi.UVMF_ALL, False),
    ],
    ids=["none", "invlpg", "tlb-flush", "invlpg-all"],
)
def test_update_va_mapping_flushes_as_its_flags_say(world: World, flags: int, stale: bool) -> None:
    world.a.set_entry(world.Q, 0, 0x51)
    world.a.set_entry(world.R, 0, 0x52)
    w = world.w(0)
    world.a.map_at(w, world.Q, Pr)
    fill(world.a, w)
    world.a.update_va_mapping(w, pte(world.R, Pr), flags)
    assert world.a.vcpu.load(w) == (0x51 if stale else 0x52)


def test_refused_update_va_mapping_does_not_flush(world: World) -> None:
    world.a.pin(1, world.P)  # first: the type change flushes
    w = two_mappings(world)
    world.refused(
        lambda: world.a.update_va_mapping(w, pte(world.P, Pr | RW), abi.UVMF_TLB_FLUSH),
        errno.EBUSY,
    )
    assert world.a.vcpu.load(w) == 0x51


def test_new_baseptr_flushes_the_tlb(world: World) -> None:
    w = two_mappings(world)
    world.a.new_baseptr(world.K)
    assert world.a.vcpu.tlb_size == 0
    assert world.a.vcpu.load(w) == 0x52
    assert flushes(world, "new_baseptr")


def test_type_change_flushes_stale_writable_translation_before_the_frame_is_a_table(
    world: World,
) -> None:
    w = world.w(0)
    world.a.map_at(w, world.P, Pr | RW)
    world.a.vcpu.store(w, 0)  # caches a writable translation of P
    world.a.update_va_mapping(w, 0, abi.UVMF_NONE)  # unmapped, but still cached
    world.a.vcpu.store(w, 0x77)  # the stale translation still works: P is data
    assert world.xen.read_frame(world.P)[:1] == b"\x77"
    world.a.set_entry(world.P, 0, 0)
    world.a.pin(1, world.P)  # type change: A's vCPUs are flushed
    assert flushes(world, "type_change")
    with pytest.raises(PageFault):
        world.a.vcpu.store(w, pte(world.K, Pr | RW))  # would have written into an L1
    assert entry(world.xen, world.P, 0) == 0
    audit_clean(world.xen)


def test_type_change_flushes_every_vcpu_of_the_owner() -> None:
    xen = Hypervisor(total_frames=TOTAL_FRAMES)
    g = Guest(xen, xen.create_domain(200, vcpus=2).domid)
    v0, v1 = g.dom.vcpus
    v1.mmuext_op([abi.MmuExtOp(abi.MMUEXT_NEW_BASEPTR, v0.cr3)])
    audit_clean(xen)
    p = g.fresh()
    w = g.w(0)
    g.map_at(w, p, Pr | RW)
    v0.store(w, 1)
    v1.store(w, 2)
    g.update_va_mapping(w, 0, abi.UVMF_NONE)
    assert v0.tlb_size > 0
    assert v1.tlb_size > 0
    g.pin(1, p)
    assert v0.tlb_size == 0
    assert v1.tlb_size == 0
    audit_clean(xen)


def test_tlb_flush_multi_flushes_only_the_vcpus_in_the_mask() -> None:
    xen = Hypervisor(total_frames=TOTAL_FRAMES)
    g = Guest(xen, xen.create_domain(200, vcpus=2).domid)
    v0, v1 = g.dom.vcpus
    v1.mmuext_op([abi.MmuExtOp(abi.MMUEXT_NEW_BASEPTR, v0.cr3)])
    v0.load(g.va_of_pfn(0))
    v1.load(g.va_of_pfn(0))
    v0.mmuext_op([abi.MmuExtOp(abi.MMUEXT_TLB_FLUSH_MULTI, 0, 0b10)])
    assert v0.tlb_size > 0
    assert v1.tlb_size == 0
    audit_clean(xen)


# -- flush after L2+ updates (XSA-286 knob) ------------------------------------------------------


@pytest.mark.parametrize("knob", [True, False], ids=["xen-4.15+", "pre-4.15"])
def test_l2_update_flushes_the_domain_only_with_the_knob(knob: bool) -> None:
    world = World(Hypervisor(TOTAL_FRAMES, Config(flush_on_l2plus_update=knob)))
    world.a.pin(1, world.Q)  # first: the type change flushes
    fill(world.a, world.a.va_of_pfn(0))
    world.a.set_entry(world.M, 7, pte(world.Q, Pr | RW | US | A_))
    assert (world.a.vcpu.tlb_size == 0) is knob
    assert bool(flushes(world, "l2plus_update")) is knob


def test_l1_update_never_flushes_the_domain(world: World) -> None:
    fill(world.a, world.a.va_of_pfn(0))
    world.a.map_at(world.w(0), world.Q, Pr)
    assert world.a.vcpu.tlb_size > 0
    assert flushes(world, "l2plus_update") == []


def test_refused_l2_update_does_not_flush(world: World) -> None:
    fill(world.a, world.a.va_of_pfn(0))
    world.refused(lambda: world.a.set_entry(world.M, 7, pte(world.Q, Pr | RW | 0x80)), errno.EINVAL)
    assert world.a.vcpu.tlb_size > 0


# -- XSA-182: the pre-4.8 fast path --------------------------------------------------------------

S = 5
SELF_VA = S << 39 | S << 30 | S << 21 | S << 12
"""With K[S] = K, this VA walks K four times: its leaf is K itself."""


@pytest.mark.parametrize("fastpath", ["modern", "pre-4.8"])
def test_read_only_self_map_lets_the_guest_read_its_own_l4(fastpath: str) -> None:
    world = World(Hypervisor(TOTAL_FRAMES, Config(fastpath=fastpath)))  # type: ignore[arg-type]
    world.a.set_entry(world.K, S, pte(world.K, Pr | US | A_))
    assert world.a.vcpu.load(SELF_VA + 511 * 8) == entry(world.xen, world.K, 511)
    with pytest.raises(PageFault):
        world.a.vcpu.store(SELF_VA + 8, 0)
    audit_clean(world.xen)


def test_modern_fast_path_refuses_rw_on_read_only_linear_l4_entry(world: World) -> None:
    world.a.set_entry(world.K, S, pte(world.K, Pr | US | A_))
    world.refused(
        lambda: world.a.set_entry(world.K, S, pte(world.K, Pr | RW | US | A_)),
        errno.EINVAL,
        rule="linear.writable",
    )
    assert entry(world.xen, world.K, S) & RW == 0
    audit_clean(world.xen)


def test_pre_4_8_fast_path_lets_guest_flip_rw_on_linear_l4_entry_xsa_182() -> None:
    world = World(Hypervisor(TOTAL_FRAMES, Config(fastpath="pre-4.8")))
    world.a.set_entry(world.K, S, pte(world.K, Pr | US | A_))
    assert world.a.set_entry(world.K, S, pte(world.K, Pr | RW | US | A_)) == 1
    assert entry(world.xen, world.K, S) & RW
    # The hole: the guest now writes its own L4 directly, no checks at all.
    world.a.vcpu.store(SELF_VA + 7 * 8, pte(world.Q, Pr | RW | US))
    assert entry(world.xen, world.K, 7) == pte(world.Q, Pr | RW | US)
    checks = {v.check for v in world.xen.audit()}
    assert "stale-writable-tlb" in checks  # the audit sees a writable L4


# -- single stores are single instructions ---------------------------------------------------------


def test_misaligned_store_into_read_only_l1_is_not_emulated(world: World) -> None:
    va = pinned_l1_mapped_read_only(world)
    before = snapshot(world.xen)
    with pytest.raises(PageFault):
        world.a.vcpu.store(va + 4, 0, size=8)
    assert snapshot(world.xen) == before
    assert world.xen.stats().trapped_writes == 0


def test_page_crossing_store_that_faults_writes_nothing(world: World) -> None:
    w = world.w(0)
    world.a.map_at(w, world.S, Pr | RW)  # w(1) stays unmapped
    with pytest.raises(PageFault):
        world.a.vcpu.store(w + 4092, (1 << 64) - 1, size=8)
    assert world.xen.read_frame(world.S) == bytes(4096)
