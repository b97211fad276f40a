"""Behaviours settled by reading Xen's code (the second fidelity pass, issue 8).

Each test's docstring names the Xen function and the condition that decides the
behaviour. Where the spec (``shared/spec/xen-pv-mmu.md``) and the code differ,
the code wins and the docstring says so. The audit page is
``docs/faithfulness/audit.md``.
"""

from __future__ import annotations

import errno

import pytest
from hvworld import (
    A_,
    GUEST_KERNEL,
    L1,
    L2,
    L4,
    PCD,
    PWT,
    RW,
    US,
    G,
    Guest,
    Pr,
    World,
    assert_frame,
    audit_clean,
    entry,
    pte,
    refused_with,
    snapshot,
    stored,
)

from hypervisor import Hypervisor, PageFault, PageType, abi
from hypervisor.mm.state import IO_FRAMES
from hypervisor.trace import FlushRecord

PAT = 0x80
IO_MFN = 0x50
"""A frame of the first MiB: RAM owned by DOMID_IO."""
NONE = PageType.NONE


def op(cmd: int, arg1: int = 0, arg2: int = 0) -> abi.MmuExtOp:
    return abi.MmuExtOp(cmd, arg1, arg2)


def flushes_since(xen: Hypervisor, start: int) -> list[FlushRecord]:
    return [r for r in list(xen.trace)[start:] if isinstance(r, FlushRecord)]


# -- 1. Xen's flag adjustments (pv/mm.h adjust_guest_l1e ... adjust_guest_l4e) ----------


def test_kernel_l1_entry_of_64bit_guest_is_stored_user_accessible(world: World) -> None:
    """mm.c ``mod_l1_entry`` -> pv/mm.h ``adjust_guest_l1e``: a present entry of a
    64-bit guest without USER gains USER and ``_PAGE_GUEST_KERNEL`` (bit 52)."""
    world.a.map_at(world.w(0), world.Q, Pr | RW)
    assert world.a.l1e(world.w(0)) == pte(world.Q, Pr | RW | US) | GUEST_KERNEL


def test_user_l1_entry_of_64bit_guest_is_stored_global(world: World) -> None:
    """pv/mm.h ``adjust_guest_l1e``: an entry without ``_PAGE_GUEST_KERNEL``
    gains GLOBAL|USER, so user mappings survive the kernel/user base switch."""
    world.a.update_va_mapping(world.w(0), pte(world.Q, Pr | US))
    assert world.a.l1e(world.w(0)) == pte(world.Q, Pr | US | G)


def test_upper_entries_of_64bit_guest_gain_user_and_l4_accessed(world: World) -> None:
    """mm.c ``mod_l2_entry``/``mod_l4_entry`` -> ``adjust_guest_l2e`` (USER) and
    ``adjust_guest_l4e`` (USER|ACCESSED)."""
    world.a.set_entry(world.M, 7, pte(world.Q, Pr | RW))
    assert entry(world.xen, world.M, 7) == pte(world.Q, Pr | RW | US)
    world.a.set_entry(world.K2, 9, pte(world.R, Pr))
    assert entry(world.xen, world.K2, 9) == pte(world.R, Pr | US | A_)


def test_validation_stores_every_entry_adjusted(world: World) -> None:
    """mm.c ``promote_l1_table``/``promote_l2_table``: each entry is written back
    adjusted once its references are taken (``pl1e[i] = adjust_guest_l1e``)."""
    world.a.set_entry(world.P, 3, pte(world.Q, Pr))  # plain data: stored verbatim
    assert entry(world.xen, world.P, 3) == pte(world.Q, Pr)
    world.a.set_entry(world.R, 0, pte(world.P, Pr | RW))
    world.a.pin(2, world.R)
    assert entry(world.xen, world.P, 3) == pte(world.Q, Pr | US) | GUEST_KERNEL
    assert entry(world.xen, world.R, 0) == pte(world.P, Pr | RW | US)


def test_trapped_write_is_stored_adjusted(world: World) -> None:
    """pv/ro-page-fault.c ``ptwr_emulated_update``: ``nl1e = adjust_guest_l1e(nl1e, d)``
    before the entry is written."""
    world.a.pin(1, world.P)
    world.a.map_at(world.w(0), world.P, Pr)
    world.a.vcpu.store(world.w(0) + 8 * 5, pte(world.Q, Pr))
    audit_clean(world.xen)
    assert entry(world.xen, world.P, 5) == stored(pte(world.Q, Pr))


def test_user_mode_reaches_kernel_mapping_when_the_kernel_l4_is_the_user_base(
    world: World,
) -> None:
    """A 64-bit PV kernel runs in ring 3: every entry is user-accessible after
    ``adjust_guest_l*e``, so a kernel mapping written without USER is reachable
    from user mode whenever the loaded L4 maps it. Only a separate user L4
    (``MMUEXT_NEW_USER_BASEPTR``) hides kernel memory."""
    world.a.map_at(world.w(0), world.Q, Pr | RW)
    world.a.vcpu.store(world.w(0), 0x1234)
    world.a.mmuext([op(abi.MMUEXT_NEW_USER_BASEPTR, world.K)])
    with world.a.vcpu.user_mode():
        assert world.a.vcpu.load(world.w(0)) == 0x1234


def test_user_mode_sees_nothing_the_user_l4_does_not_map(world: World) -> None:
    """With an empty L4 as user base, the same kernel VA is not present in user
    mode: the separate user L4 is what protects the kernel (spec 2.6)."""
    world.a.map_at(world.w(0), world.Q, Pr | RW)
    world.a.mmuext([op(abi.MMUEXT_NEW_USER_BASEPTR, world.K2)])
    with world.a.vcpu.user_mode(), pytest.raises(PageFault) as info:
        world.a.vcpu.load(world.w(0))
    assert not info.value.error_code & 1  # not present, not a protection fault


def test_pae_guest_keeps_user_as_written(pae: Guest) -> None:
    """pv/mm.h ``adjust_guest_l1e``/``l2e`` do nothing for ``is_pv_32bit_domain``:
    a 32-bit kernel runs in ring 1, so its supervisor mappings stay supervisor
    and user mode is refused there."""
    pae.update_va_mapping(pae.w(0), pte(pae.fresh(), Pr | RW))
    assert pae.l1e(pae.w(0)) & (US | G | GUEST_KERNEL) == 0
    with pae.vcpu.user_mode(), pytest.raises(PageFault) as info:
        pae.vcpu.load(pae.w(0))
    assert info.value.error_code & 1  # a protection fault: present but not USER


def test_pae_l3_entry_gains_user_and_rw(pae: Guest) -> None:
    """pv/mm.h ``adjust_guest_l3e``: a 32-bit guest's L3 entries gain USER|RW."""
    l2 = pae.fresh()
    pae.set_entry(pae.vcpu.cr3, 0, pte(l2, Pr))
    assert entry(pae.xen, pae.vcpu.cr3, 0) == pte(l2, Pr | US | RW)


def test_pae_l3_entries_lose_adjustments_when_the_l3_is_torn_down(pae: Guest) -> None:
    """mm.c ``demote_l3_table``: each released entry goes through
    ``unadjust_guest_l3e`` (USER|RW|ACCESSED removed)."""
    l3, l2, l2b = pae.fresh(), pae.fresh(), pae.fresh()
    pae.set_entry(l3, 0, pte(l2b, Pr | A_))
    pae.set_entry(l3, 3, pte(l2, Pr))
    pae.pin(3, l3)
    assert entry(pae.xen, l3, 0) == pte(l2b, Pr | A_ | US | RW)
    pae.unpin(l3)
    assert entry(pae.xen, l3, 0) == pte(l2b, Pr)
    assert entry(pae.xen, l3, 3) == pte(l2, Pr)


def test_demoted_pae_xen_l2_loses_its_mark(pae: Guest) -> None:
    """mm.c ``demote_l2_table`` clears ``PGT_pae_xen_l2`` once the L2 is torn down."""
    l3, l2 = pae.fresh(), pae.fresh()
    pae.set_entry(l3, 3, pte(l2, Pr))
    pae.pin(3, l3)
    assert pae.xen.frame(l2).pae_xen_l2
    pae.unpin(l3)
    info = pae.xen.frame(l2)
    assert (info.type, info.type_count, info.pae_xen_l2) == (L2, 0, False)


# -- 2. update_va_mapping flags (mm.c __do_update_va_mapping) --------------------------


def two_vcpu_guest() -> tuple[Hypervisor, Guest]:
    """A lone 64-bit guest with two vCPUs (vCPU 1 loads the same base)."""
    xen = Hypervisor(total_frames=1024)
    g = Guest(xen, xen.create_domain(200, vcpus=2).domid)
    g.dom.vcpus[1].mmuext_op([op(abi.MMUEXT_NEW_BASEPTR, g.vcpu.cr3)])
    return xen, g


def test_uvm_flush_type_3_flushes_nothing(world: World) -> None:
    """``__do_update_va_mapping``: ``flags & UVMF_FLUSHTYPE_MASK`` of 3 matches no
    case: the entry is written and nothing is flushed (the old EINVAL is gone)."""
    start = len(world.xen.trace)
    world.a.update_va_mapping(world.w(0), pte(world.Q, Pr), 3 | 0x5550)
    assert world.a.l1e(world.w(0)) == stored(pte(world.Q, Pr))
    assert flushes_since(world.xen, start) == []


def test_uvm_scope_is_ignored_without_a_flush_type(world: World) -> None:
    """``__do_update_va_mapping``: the scope (``flags & ~3``) is read only for
    UVMF_TLB_FLUSH or UVMF_INVLPG, so an unreadable bitmap pointer with
    UVMF_NONE is never touched."""
    world.a.update_va_mapping(world.w(0), pte(world.Q, Pr), 0xDEAD0000)
    assert world.a.l1e(world.w(0)) == stored(pte(world.Q, Pr))


def test_uvm_bitmap_flushes_the_vcpus_it_names() -> None:
    """``__do_update_va_mapping`` -> ``vcpumask_to_pcpumask``: any scope other than
    UVMF_LOCAL/UVMF_ALL is the guest address of a vCPU bitmap, read from guest
    memory; only the named vCPUs are flushed."""
    xen, g = two_vcpu_guest()
    bitmap_va = g.va_of_pfn(g.dom.start_info.nr_pages - 1)
    g.vcpu.store(bitmap_va, 0b10)
    frame = g.fresh()
    start = len(xen.trace)
    g.update_va_mapping(g.w(0), pte(frame, Pr), abi.UVMF_TLB_FLUSH | bitmap_va)
    assert [(r.vcpu, r.scope) for r in flushes_since(xen, start)] == [(1, "all")]


def test_uvm_invlpg_bitmap_flushes_the_page_on_named_vcpus() -> None:
    """``__do_update_va_mapping``: UVMF_INVLPG with a bitmap flushes ``va`` on
    every vCPU named (``flush_tlb_one_mask``)."""
    xen, g = two_vcpu_guest()
    bitmap_va = g.va_of_pfn(g.dom.start_info.nr_pages - 1)
    g.vcpu.store(bitmap_va, 0b11)
    frame = g.fresh()
    start = len(xen.trace)
    g.update_va_mapping(g.w(0), pte(frame, Pr), abi.UVMF_INVLPG | bitmap_va)
    flushes = [(r.vcpu, r.scope, r.target) for r in flushes_since(xen, start)]
    assert flushes == [(0, "va", g.w(0)), (1, "va", g.w(0))]


def test_uvm_unreadable_bitmap_is_efault_after_the_entry_is_written(world: World) -> None:
    """``__do_update_va_mapping``: the flush comes after ``mod_l1_entry``; a bitmap
    that cannot be read gives EFAULT and the entry stays changed, nothing flushed."""
    start = len(world.xen.trace)
    world.refused(
        lambda: world.a.update_va_mapping(world.w(0), pte(world.Q, Pr), abi.UVMF_TLB_FLUSH | 8),
        errno.EFAULT,
        rule="uvm.bad-vcpumask",
    )
    assert world.a.l1e(world.w(0)) == stored(pte(world.Q, Pr))
    assert flushes_since(world.xen, start) == []


def test_uvm_bitmap_in_xens_hole_is_efault(world: World) -> None:
    """``copy_from_guest``: an address failing ``__addr_ok`` cannot be read."""
    world.refused(
        lambda: world.a.update_va_mapping(
            world.w(0), pte(world.Q, Pr), abi.UVMF_INVLPG | abi.HYPERVISOR_VIRT_START
        ),
        errno.EFAULT,
        rule="uvm.bad-vcpumask",
    )


def test_uvm_failed_update_reads_no_bitmap(world: World) -> None:
    """``__do_update_va_mapping``: "any error at this point means that we haven't
    changed the L1e. Skip the flush" -- the entry's own errno wins over an
    unreadable bitmap."""
    world.a.pin(1, world.P)
    world.refused(
        lambda: world.a.update_va_mapping(
            world.w(0), pte(world.P, Pr | RW), abi.UVMF_TLB_FLUSH | 8
        ),
        errno.EBUSY,
        rule="l1.writable-pagetable",
    )


# -- 3. corrected points of the spec --------------------------------------------------------


def test_failed_l2_validation_at_slot_0_leaves_it_untyped(world: World) -> None:
    """mm.c ``promote_l2_table`` sets ``old_guest_table`` only ``if ( i )``; a
    failure at slot 0 goes through ``validate_page``, which resets the type word."""
    world.a.set_entry(world.R, 0, pte(world.X, Pr))
    world.refused(lambda: world.a.pin(2, world.R), errno.EINVAL)
    assert_frame(world.xen, world.R, type=NONE, type_count=0, validated=False)


def test_failed_l2_validation_after_slot_0_keeps_type_l2_and_adjusted_entries(
    world: World,
) -> None:
    """mm.c ``promote_l2_table`` failing at slot i > 0: Xen's partial path
    (``PGT_partial``, ``old_guest_table``, ``put_old_guest_table`` before the
    hypercall returns) releases entries 0..i-1 but leaves type L2 with count 0,
    and the earlier entries keep their USER adjustment."""
    world.a.set_entry(world.R, 0, pte(world.P, Pr))
    world.a.set_entry(world.R, 1, pte(world.X, Pr))
    p_before = world.xen.frame(world.P).count
    world.refused(lambda: world.a.pin(2, world.R), errno.EINVAL)
    assert_frame(world.xen, world.R, type=L2, type_count=0, validated=False, pinned=False)
    assert entry(world.xen, world.R, 0) == pte(world.P, Pr | US)
    assert_frame(world.xen, world.P, type=L1, type_count=0, count=p_before)


def test_failed_l4_validation_after_an_empty_slot_0_is_partial(world: World) -> None:
    """The spec (2.4, corrected) says an L2-L4 failing at its *first present
    entry* is reset to NONE; Xen's code (``promote_l4_table``: ``if ( i )``) tests
    the slot index, so an L4 failing at slot 5 with slots 0-4 empty keeps type L4.
    The code wins."""
    world.a.set_entry(world.T, 5, pte(world.X, Pr))
    world.refused(lambda: world.a.pin(4, world.T), errno.EINVAL)
    assert_frame(world.xen, world.T, type=L4, type_count=0, validated=False)


def test_failed_l1_validation_keeps_adjustments_of_earlier_entries(world: World) -> None:
    """mm.c ``promote_l1_table``: entries are adjusted in place as they pass;
    on failure only their references are dropped, and the L1 is untyped again."""
    world.a.set_entry(world.P, 0, pte(world.Q, Pr))
    world.a.set_entry(world.P, 1, pte(world.X, Pr))
    world.refused(lambda: world.a.pin(1, world.P), errno.EBUSY)
    assert entry(world.xen, world.P, 0) == stored(pte(world.Q, Pr))
    assert entry(world.xen, world.P, 1) == pte(world.X, Pr)
    assert_frame(world.xen, world.P, type=NONE, type_count=0)


def test_pfd_of_domid_self_is_esrch(world: World) -> None:
    """mm.c ``do_mmu_update`` looks PFD up with ``rcu_lock_domain_by_id``, which
    knows no DOMID_SELF: a PFD field of DOMID_SELF+1 is ESRCH."""
    fd = abi.DOMID_SELF | (abi.DOMID_SELF + 1) << 16
    world.refused(
        lambda: world.a.mmu_update([(world.a.slot_ptr(world.w(0)), 0)], fd),
        errno.ESRCH,
        rule="foreigndom.unknown",
    )


def test_pfd_of_own_numeric_id_is_self(world: World) -> None:
    """mm.c ``do_mmu_update``: ``if ( pt_owner == d )`` -- the caller's own id in
    the PFD field is accepted (unlike in the FD field)."""
    fd = abi.DOMID_SELF | (world.a.dom.domid + 1) << 16
    assert world.a.mmu_update([(world.a.slot_ptr(world.w(0)), 0)], fd) == 1


def test_unknown_mmu_update_command_is_enosys_before_the_privilege_check(world: World) -> None:
    """mm.c ``do_mmu_update``: XSM is checked inside each known command's case; a
    command of 4-7 reaches ``default: rc = -ENOSYS`` first."""
    world.refused(
        lambda: world.a.mmu_update([(world.a.slot_ptr(world.w(0)) | 5, 0)], 2),
        errno.ENOSYS,
        rule="mmu.unknown-command",
    )


def test_unprivileged_mmuext_op_with_domid_io_is_eperm(world: World) -> None:
    """mm.c ``do_mmuext_op``: system domains count as PV (``is_pv_domain``), then
    ``xsm_mmuext_op`` refuses an unprivileged caller."""
    for fd in (abi.DOMID_IO, abi.DOMID_XEN):
        world.refused(
            lambda fd=fd: world.a.mmuext([op(abi.MMUEXT_TLB_FLUSH_LOCAL)], fd),
            errno.EPERM,
            rule="foreigndom.not-privileged",
        )


def test_dom0_mmuext_op_with_domid_xen_runs_each_command(world: World) -> None:
    """mm.c ``do_mmuext_op`` with a privileged caller and FD=DOMID_XEN: each op
    runs; commands for the caller's own vCPU are EPERM (``currd != pg_owner``),
    and a Xen frame, shared read-only, cannot take the writable type (EINVAL)."""
    xen_frame = IO_FRAMES
    world.refused(
        lambda: world.dom0.mmuext([op(abi.MMUEXT_TLB_FLUSH_LOCAL)], abi.DOMID_XEN),
        errno.EPERM,
        rule="mmuext.foreign-op",
    )
    with_before = snapshot(world.xen)
    world.refused(
        lambda: world.dom0.mmuext([op(abi.MMUEXT_CLEAR_PAGE, xen_frame)], abi.DOMID_XEN),
        errno.EINVAL,
    )
    world.refused(lambda: world.dom0.pin(1, xen_frame, abi.DOMID_XEN), errno.EINVAL)
    assert snapshot(world.xen) == with_before


def test_dom0_pin_of_an_io_frame_is_refused_here(world: World) -> None:
    """Deliberately not modelled: Xen's ``get_page_from_gfn(dom_io, mfn)`` finds
    first-MiB frames (owned by DOMID_IO, count 1), so dom0 could validate one
    as a page table owned by DOMID_IO. This model keeps no frame-table entry for
    I/O frames and refuses with EINVAL (see docs/faithfulness/audit.md)."""
    world.refused(lambda: world.dom0.pin(1, IO_MFN, abi.DOMID_IO), errno.EINVAL)


def test_machphys_update_with_domid_io_sets_an_io_frames_m2p(world: World) -> None:
    """mm.c ``do_mmu_update``, MMU_MACHPHYS_UPDATE: ``xsm_mmu_update`` skips FD ==
    dom_io and ``get_page_from_mfn(mfn, dom_io)`` finds a first-MiB frame, so any
    guest may set an I/O frame's M2P entry."""
    ptr = IO_MFN << 12 | abi.MMU_MACHPHYS_UPDATE
    assert world.a.mmu_update([(ptr, 0x77)], abi.DOMID_IO) == 1
    assert world.xen.m2p(IO_MFN) == 0x77


def test_machphys_update_with_domid_io_of_ram_is_einval(world: World) -> None:
    """``get_page_from_mfn(mfn, dom_io)`` fails for a frame DOMID_IO does not own."""
    ptr = world.Q << 12 | abi.MMU_MACHPHYS_UPDATE
    world.refused(
        lambda: world.a.mmu_update([(ptr, 0x77)], abi.DOMID_IO),
        errno.EINVAL,
        rule="machphys.not-owned",
    )


def test_dom0_write_back_mapping_of_io_frame_is_stored_uncached(world: World) -> None:
    """mm.c ``get_page_from_l1e``, I/O branch with ``opt_mmio_relax`` off (the
    default): a potentially cacheable attribute (PAT index WB, WT, WP) is flipped
    to UC (PCD|PWT) and ``mod_l1_entry`` stores the flipped entry."""
    world.dom0.map_at(world.dom0.w(0), IO_MFN, Pr | RW, foreigndom=abi.DOMID_IO)
    assert world.dom0.l1e(world.dom0.w(0)) == stored(pte(IO_MFN, Pr | RW | PCD | PWT))
    world.dom0.map_at(world.dom0.w(1), IO_MFN, Pr | PWT | PAT)  # WP
    assert world.dom0.l1e(world.dom0.w(1)) == stored(pte(IO_MFN, Pr | PCD | PWT))


def test_dom0_uncached_or_write_combining_io_mapping_is_kept(world: World) -> None:
    """``get_page_from_l1e``: UC, UC- and WC attributes are "not cacheable, allow"."""
    for i, attrs_ in enumerate((PCD | PWT, PCD, PAT)):
        world.dom0.map_at(world.dom0.w(i), IO_MFN, Pr | attrs_)
        assert world.dom0.l1e(world.dom0.w(i)) == stored(pte(IO_MFN, Pr | attrs_))


def test_set_ldt_with_no_entries_ignores_the_base(world: World) -> None:
    """mm.c ``do_mmuext_op`` SET_LDT: ``ptr = ents ? linear_addr : ZERO_BLOCK_PTR``,
    so with no entries a misaligned or non-canonical base is not checked."""
    assert world.a.mmuext([op(abi.MMUEXT_SET_LDT, (1 << 63) | 3, 0)]) == 1


def test_set_ldt_does_not_check_where_the_table_ends(world: World) -> None:
    """SET_LDT checks ``__addr_ok(ptr)`` of the base only: an LDT starting just
    below Xen's hole and running into it is accepted."""
    base = (1 << 47) - 4096
    assert world.a.mmuext([op(abi.MMUEXT_SET_LDT, base, 8192)]) == 1


def test_vm_assist_bad_type_is_checked_before_bad_command(world: World) -> None:
    """common/domain.c ``do_vm_assist``: ``type`` against the valid mask first
    (EINVAL), then ``cmd`` (ENOSYS)."""
    world.refused(lambda: world.a.vcpu.vm_assist(7, 31), errno.EINVAL, rule="vm_assist.bad-type")


def test_pae_l3_slot_0_error_wins_over_a_missing_slot_3(pae: Guest) -> None:
    """mm.c ``promote_l3_table`` walks slots 0-3 in order; slot 3's presence is
    tested when the loop reaches it, so a bad slot 0 is reported first."""
    l3 = pae.fresh()
    pae.set_entry(l3, 0, pte(pae.xen.total_frames - 1, Pr))
    refused_with(pae.xen, lambda: pae.pin(3, l3), errno.EINVAL, rule="entry.target-not-owned")
    assert pae.xen.frame(l3).type == NONE


# -- 4. the rest of the audit -----------------------------------------------------------------


def test_pae_upper_half_trapped_write_that_fails_is_stored_not_present(pae: Guest) -> None:
    """pv/ro-page-fault.c ``ptwr_emulated_update``: a 32-bit guest's 4-byte store
    to the upper half of an entry whose check fails is performed with PRESENT
    cleared ("the guest has simply got the two writes the wrong way round")."""
    pae.vcpu.vm_assist(abi.VMASST_CMD_enable, abi.VMASST_TYPE_writable_pagetables)
    l1 = pae.fresh()
    pae.set_entry(l1, 0, pte(pae.xen.total_frames - 1, Pr))  # plain data for now
    pae.set_entry(l1, 0, 0)
    pae.pin(1, l1)
    pae.update_va_mapping(pae.w(0), pte(l1, Pr))
    pae.vcpu.store(pae.w(0), pte(pae.dom.initial_p2m[0], Pr), size=4)
    pae.vcpu.store(pae.w(0) + 4, 0x3F, size=4)  # an mfn beyond memory: refused
    audit_clean(pae.xen)
    assert entry(pae.xen, l1, 0) == (0x3F << 32 | pte(pae.dom.initial_p2m[0], 0))


def test_mmu_update_unreadable_array_is_efault_before_a_bad_foreigndom(world: World) -> None:
    """mm.c ``do_mmu_update``: ``guest_handle_okay`` (EFAULT) precedes the PFD and
    FD look-ups (ESRCH)."""
    world.refused(lambda: world.a.vcpu.mmu_update(None, 99), errno.EFAULT)  # type: ignore[arg-type]


def test_mmuext_op_unreadable_array_is_efault_before_a_bad_foreigndom(world: World) -> None:
    """mm.c ``do_mmuext_op``: ``guest_handle_okay`` precedes ``get_pg_owner``."""
    world.refused(lambda: world.a.vcpu.mmuext_op(None, 99), errno.EFAULT)  # type: ignore[arg-type]


def test_32bit_new_user_baseptr_is_einval_even_with_a_foreign_domain() -> None:
    """x86_64/compat/mm.c ``compat_mmuext_op`` refuses NEW_USER_BASEPTR while it
    translates the op, before ``do_mmuext_op`` compares FD with the caller."""
    xen = Hypervisor(total_frames=1024)
    dom0 = xen.create_domain(200, privileged=True, guest_width=32)
    other = xen.create_domain(100)
    refused_with(
        xen,
        lambda: dom0.vcpus[0].mmuext_op([op(abi.MMUEXT_NEW_USER_BASEPTR, 0)], other.domid),
        errno.EINVAL,
        rule="baseptr.no-user-base-32",
    )


def test_dom0_cannot_map_a_xen_frame_writable(world: World) -> None:
    """mm.c ``get_page_from_l1e``: a frame Xen shares read-only (type NONE, one
    permanent type reference) cannot take the writable type: EBUSY. Read-only is
    fine for a privileged caller naming DOMID_XEN."""
    xen_frame = IO_FRAMES
    world.refused(
        lambda: world.dom0.map_at(world.dom0.w(0), xen_frame, Pr | RW, abi.DOMID_XEN),
        errno.EBUSY,
    )
    assert world.dom0.map_at(world.dom0.w(0), xen_frame, Pr, abi.DOMID_XEN) == 1


def test_invlpg_local_of_xens_hole_is_a_no_op_only_when_non_canonical(world: World) -> None:
    """mm.c ``paging_invlpg`` skips only non-canonical addresses; INVLPG_ALL uses
    ``__addr_ok``, which also skips Xen's hole."""
    start = len(world.xen.trace)
    world.a.mmuext([op(abi.MMUEXT_INVLPG_LOCAL, abi.HYPERVISOR_VIRT_START)])
    world.a.mmuext([op(abi.MMUEXT_INVLPG_ALL, abi.HYPERVISOR_VIRT_START)])
    world.a.mmuext([op(abi.MMUEXT_INVLPG_LOCAL, 1 << 63)])
    assert [r.reason for r in flushes_since(world.xen, start)] == ["invlpg_local"]


def test_pin_l4_keeps_guest_entries_adjusted_and_overwrites_xen_slots(world: World) -> None:
    """mm.c ``promote_l4_table`` never walks slots 256-271 (``is_guest_l4_slot``)
    and ``init_xen_l4_slots`` then overwrites them; guest slots are adjusted."""
    world.a.set_entry(world.T, 256, pte(world.Q, Pr | RW))
    world.a.set_entry(world.T, 300, pte(world.K2, Pr))
    world.a.pin(4, world.T)
    assert entry(world.xen, world.T, 256) >> 12 & 0xFFFFFFFFFF != world.Q
    assert entry(world.xen, world.T, 300) == pte(world.K2, Pr | US | A_)
    assert_frame(world.xen, world.Q, type_count=0)


def test_mmuext_op_foreigndom_is_read_as_unsigned_int_and_truncated(world: World) -> None:
    """mm.c ``do_mmuext_op(..., unsigned int foreigndom)`` hands it to
    ``get_pg_owner(domid_t)``: only the low 16 bits name the domain."""
    assert world.a.mmuext([op(abi.MMUEXT_TLB_FLUSH_LOCAL)], 0x5_0000 | abi.DOMID_SELF) == 1


def test_builder_l1_entries_are_marked_as_the_kernels(world: World) -> None:
    """pv/dom0_build.c ``L1_PROT`` = ``BASE_PROT | _PAGE_GUEST_KERNEL``: the
    bootstrap mappings read back as Xen's adjusted kernel mappings (no GLOBAL)."""
    e = world.a.l1e(world.a.va_of_pfn(0))
    assert e & (US | GUEST_KERNEL) == US | GUEST_KERNEL
    assert not e & G
