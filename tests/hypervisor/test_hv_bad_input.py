"""Every hypercall argument a guest controls is untrusted.

For each kind of garbage: the errno, ``done``, the rule id, that only a
``HypercallError`` escapes, that no frame's metadata changed beyond what
``done`` reports (compared with a fresh world that ran only the ``done``
valid requests), and that the audit is empty.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hvworld import (
    PCD,
    RW,
    TOTAL_FRAMES,
    Pr,
    World,
    audit_clean,
    entry_ptr,
    pte,
    snapshot,
    stored,
)

from hypervisor import HypercallError, Hypervisor, abi

U64 = 1 << 64
NOT_RAM = TOTAL_FRAMES + 5
"""An MFN beyond the machine's memory."""
FREE = TOTAL_FRAMES - 1
"""A frame nobody owns."""
IO = 0x50
XEN_FRAME = 0x105


def refused_cleanly(
    world: World, call: Callable[[], object], errno_: int, *, rule: str | None, done: int = 0
) -> HypercallError:
    """``call`` is refused with exactly a HypercallError carrying ``errno_``,
    ``done`` and ``rule``, and changes no frame's metadata at all."""
    before = snapshot(world.xen)
    err = world.refused(call, errno_, done=done, rule=rule)
    assert type(err) is HypercallError
    assert snapshot(world.xen) == before
    return err


def refused_after_prefix(
    world: World,
    run: Callable[[World, Sequence[Any]], object],
    reqs: Sequence[Any],
    errno_: int,
    *,
    rule: str,
) -> None:
    """``run(world, reqs)`` fails at the last request; the frames then look
    exactly as in a fresh world that ran only the valid prefix."""
    done = len(reqs) - 1
    world.refused(lambda: run(world, reqs), errno_, done=done, rule=rule)
    reference = World(Hypervisor(total_frames=TOTAL_FRAMES))
    run(reference, reqs[:done])
    assert snapshot(world.xen) == snapshot(reference.xen)


def one_ok_mapping(world: World, i: int = 0) -> tuple[int, int]:
    """A valid request: map Q read-only at scratch VA ``i``."""
    return (world.a.slot_ptr(world.w(i)), pte(world.Q, Pr))


# -- mmu_update: ptr ----------------------------------------------------------------------


@pytest.mark.parametrize("cmd", [4, 5, 6, 7])
def test_mmu_update_unknown_command_is_enosys(world: World, cmd: int) -> None:
    ptr = world.a.slot_ptr(world.w(0)) | cmd
    refused_cleanly(
        world,
        lambda: world.a.mmu_update([(ptr, pte(world.Q, Pr))]),
        errno.ENOSYS,
        rule="mmu.unknown-command",
    )


def test_mmu_update_unknown_command_reports_its_index_as_done(world: World) -> None:
    def run(w: World, reqs: Sequence[Any]) -> int:
        return w.a.mmu_update(reqs)

    reqs = [one_ok_mapping(world, 0), (world.a.slot_ptr(world.w(1)) | 4, 0)]
    refused_after_prefix(world, run, reqs, errno.ENOSYS, rule="mmu.unknown-command")


@pytest.mark.parametrize(
    "mfn",
    [NOT_RAM, FREE, IO, XEN_FRAME, (1 << 52) - 1],
    ids=["not-ram", "free", "io", "xen", "max"],
)
def test_mmu_update_ptr_outside_own_frames_is_einval(world: World, mfn: int) -> None:
    refused_cleanly(
        world,
        lambda: world.a.mmu_update([(entry_ptr(mfn, 0), pte(world.Q, Pr))]),
        errno.EINVAL,
        rule="mmu.ptr-frame-not-owned",
    )


@pytest.mark.parametrize("ptr", [-8, U64, U64 + 8], ids=["negative", "2**64", "above"])
def test_mmu_update_ptr_outside_u64_is_einval(world: World, ptr: int) -> None:
    refused_cleanly(
        world,
        lambda: world.a.mmu_update([(ptr, 0)]),
        errno.EINVAL,
        rule="args.out-of-range",
    )


@pytest.mark.parametrize("val", [-1, U64], ids=["negative", "2**64"])
def test_mmu_update_val_outside_u64_is_einval(world: World, val: int) -> None:
    refused_cleanly(
        world,
        lambda: world.a.mmu_update([(world.a.slot_ptr(world.w(0)), val)]),
        errno.EINVAL,
        rule="args.out-of-range",
    )


# -- mmu_update: val names a frame it may not map -------------------------------------------


@pytest.mark.parametrize(
    ("which", "errno_", "rule"),
    [
        ("free", errno.EBUSY, "l1.free-frame"),
        ("foreign", errno.EBUSY, "l1.foreign-frame"),
        ("xen", errno.EBUSY, "l1.foreign-frame"),
        ("not-ram", errno.EPERM, "l1.io-no-permission"),
        ("io", errno.EPERM, "l1.io-no-permission"),
        ("invalid-mfn", errno.EINVAL, "l1.invalid-mfn"),
    ],
)
def test_mmu_update_mapping_unmappable_mfn_is_refused(
    world: World, which: str, errno_: int, rule: str
) -> None:
    mfn = {
        "free": FREE,
        "foreign": world.X,
        "xen": XEN_FRAME,
        "not-ram": NOT_RAM,
        "io": IO,
        "invalid-mfn": (1 << 40) - 1,
    }[which]
    refused_cleanly(
        world,
        lambda: world.a.map_at(world.w(0), mfn, Pr),
        errno_,
        rule=rule,
    )


# -- mmu_update: unreadable arguments ---------------------------------------------------------


@pytest.mark.parametrize(
    "reqs",
    [{"ptr": 0, "val": 0}, None, "requests", 42, {(0, 0)}],
    ids=["dict", "None", "str", "int", "set"],
)
def test_mmu_update_unreadable_request_list_is_efault(world: World, reqs: Any) -> None:
    refused_cleanly(
        world, lambda: world.a.vcpu.mmu_update(reqs), errno.EFAULT, rule="args.unreadable"
    )


@pytest.mark.parametrize(
    "bad",
    [None, "ptr,val", (1, 2, 3), (1,), {"ptr": 1}, ("0x1000", 0), (0, None), (0, 1.0)],
    ids=["None", "str", "3-tuple", "1-tuple", "dict", "str-ptr", "None-val", "float-val"],
)
def test_mmu_update_unreadable_request_is_efault_at_its_index(world: World, bad: Any) -> None:
    def run(w: World, reqs: Sequence[Any]) -> int:
        return w.a.mmu_update(reqs)

    reqs = [one_ok_mapping(world, 0), one_ok_mapping(world, 1), bad]
    refused_after_prefix(world, run, reqs, errno.EFAULT, rule="args.unreadable")


def test_mmu_update_record_with_string_field_is_efault(world: World) -> None:
    refused_cleanly(
        world,
        lambda: world.a.mmu_update([abi.MmuUpdate("ptr", 0)]),
        errno.EFAULT,
        rule="args.unreadable",
    )


def test_mmu_update_of_empty_list_does_nothing(world: World) -> None:
    before = snapshot(world.xen)
    assert world.a.mmu_update([]) == 0
    assert snapshot(world.xen) == before


def test_huge_batch_with_last_request_bad_reports_done_9999(world: World) -> None:
    ok = one_ok_mapping(world)
    bad = (world.a.slot_ptr(world.w(1)), pte(world.R, Pr | RW | PCD))
    reqs = [ok] * 9999 + [bad]

    def run(w: World, r: Sequence[Any]) -> int:
        return w.a.mmu_update(r)

    refused_after_prefix(world, run, reqs, errno.EINVAL, rule="entry.disallowed-flags")


# -- foreigndom --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fd", "errno_", "rule"),
    [
        (1, errno.ESRCH, "foreigndom.self-id"),
        (77, errno.ESRCH, "foreigndom.unknown"),
        (2, errno.EPERM, "foreigndom.not-privileged"),
        (-1, errno.EINVAL, "args.out-of-range"),
        (1 << 32, errno.EINVAL, "args.out-of-range"),
        ("self", errno.EFAULT, "args.unreadable"),
    ],
    ids=["own-id", "unknown", "unprivileged", "negative", "2**32", "str"],
)
def test_mmu_update_bad_foreigndom(world: World, fd: Any, errno_: int, rule: str) -> None:
    refused_cleanly(
        world,
        lambda: world.a.vcpu.mmu_update([one_ok_mapping(world)], fd),
        errno_,
        rule=rule,
    )


@pytest.mark.parametrize(
    ("fd", "errno_", "rule"),
    [
        (1, errno.ESRCH, "foreigndom.self-id"),
        (77, errno.ESRCH, "foreigndom.unknown"),
        (2, errno.EPERM, "foreigndom.not-privileged"),
        (1 << 32, errno.EINVAL, "args.out-of-range"),
        (-2, errno.EINVAL, "args.out-of-range"),
    ],
    ids=["own-id", "unknown", "unprivileged", "2**32", "negative"],
)
def test_mmuext_op_bad_foreigndom(world: World, fd: int, errno_: int, rule: str) -> None:
    op = abi.MmuExtOp(abi.MMUEXT_PIN_L1_TABLE, world.P)
    refused_cleanly(world, lambda: world.a.vcpu.mmuext_op([op], fd), errno_, rule=rule)


def test_unknown_page_table_owner_in_foreigndom_is_esrch(world: World) -> None:
    fd = (77 + 1) << 16 | abi.DOMID_SELF
    refused_cleanly(
        world,
        lambda: world.a.vcpu.mmu_update([one_ok_mapping(world)], fd),
        errno.ESRCH,
        rule="foreigndom.unknown",
    )


def test_dom0_may_update_with_foreigndom_of_another_domain(world: World) -> None:
    # the positive twin of the unprivileged case: the same call works for dom0
    assert world.dom0.map_at(world.dom0.w(0), world.X, Pr, foreigndom=2) == 1


# -- mmuext_op ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cmd", [14, 18 + 3, 99, (1 << 32) - 1])
def test_mmuext_unknown_command_is_enosys(world: World, cmd: int) -> None:
    refused_cleanly(
        world,
        lambda: world.a.mmuext([abi.MmuExtOp(cmd, world.P)]),
        errno.ENOSYS,
        rule="mmuext.unknown-command",
    )


@pytest.mark.parametrize("cmd", [abi.MMUEXT_MARK_SUPER, abi.MMUEXT_UNMARK_SUPER])
def test_superpage_marking_is_eopnotsupp(world: World, cmd: int) -> None:
    refused_cleanly(
        world,
        lambda: world.a.mmuext([abi.MmuExtOp(cmd, world.P)]),
        errno.EOPNOTSUPP,
        rule="mmuext.no-superpages",
    )


@pytest.mark.parametrize("which", ["not-ram", "free", "io", "xen", "foreign"], ids=lambda s: str(s))
@pytest.mark.parametrize(
    ("cmd", "rule"),
    [
        (abi.MMUEXT_PIN_L1_TABLE, "pin.not-owned"),
        (abi.MMUEXT_PIN_L4_TABLE, "pin.not-owned"),
        (abi.MMUEXT_UNPIN_TABLE, "unpin.not-owned"),
        (abi.MMUEXT_NEW_BASEPTR, "baseptr.not-owned"),
        (abi.MMUEXT_NEW_USER_BASEPTR, "baseptr.not-owned"),
        (abi.MMUEXT_CLEAR_PAGE, "page.not-owned"),
    ],
    ids=["pin-l1", "pin-l4", "unpin", "new-baseptr", "new-user-baseptr", "clear-page"],
)
def test_mmuext_on_frame_not_owned_is_einval(world: World, which: str, cmd: int, rule: str) -> None:
    mfn = {"not-ram": NOT_RAM, "free": FREE, "io": IO, "xen": XEN_FRAME, "foreign": world.X}[which]
    refused_cleanly(
        world, lambda: world.a.mmuext([abi.MmuExtOp(cmd, mfn)]), errno.EINVAL, rule=rule
    )


@pytest.mark.parametrize("src", [NOT_RAM, FREE, 0])
def test_copy_page_from_frame_not_owned_is_einval(world: World, src: int) -> None:
    op = abi.MmuExtOp(abi.MMUEXT_COPY_PAGE, world.P, src if src else world.X)
    refused_cleanly(world, lambda: world.a.mmuext([op]), errno.EINVAL, rule="page.not-owned")


@pytest.mark.parametrize(
    "op",
    [
        abi.MmuExtOp(abi.MMUEXT_PIN_L1_TABLE, -1),
        abi.MmuExtOp(abi.MMUEXT_PIN_L1_TABLE, U64),
        abi.MmuExtOp(-1, 0),
        abi.MmuExtOp(1 << 32, 0),
        abi.MmuExtOp(abi.MMUEXT_COPY_PAGE, 300, -5),
    ],
    ids=["arg1-negative", "arg1-2**64", "cmd-negative", "cmd-2**32", "arg2-negative"],
)
def test_mmuext_field_outside_its_width_is_einval(world: World, op: abi.MmuExtOp) -> None:
    refused_cleanly(world, lambda: world.a.mmuext([op]), errno.EINVAL, rule="args.out-of-range")


@pytest.mark.parametrize(
    "bad",
    [None, "pin", abi.MmuExtOp(abi.MMUEXT_PIN_L1_TABLE, "P"), (0, 1, 2, 3), ()],
    ids=["None", "str", "str-field", "4-tuple", "empty-tuple"],
)
def test_mmuext_unreadable_op_is_efault_at_its_index(world: World, bad: Any) -> None:
    def run(w: World, ops: Sequence[Any]) -> int:
        return w.a.mmuext(ops)

    ops = [abi.MmuExtOp(abi.MMUEXT_PIN_L1_TABLE, world.P), bad]
    refused_after_prefix(world, run, ops, errno.EFAULT, rule="args.unreadable")


@pytest.mark.parametrize("ops", [{"cmd": 0}, None, "ops"], ids=["dict", "None", "str"])
def test_mmuext_unreadable_op_list_is_efault(world: World, ops: Any) -> None:
    refused_cleanly(
        world, lambda: world.a.vcpu.mmuext_op(ops), errno.EFAULT, rule="args.unreadable"
    )


def test_mmuext_huge_batch_with_last_op_bad_reports_done(world: World) -> None:
    flush = abi.MmuExtOp(abi.MMUEXT_TLB_FLUSH_LOCAL)
    ops = [flush] * 9999 + [abi.MmuExtOp(99)]

    def run(w: World, o: Sequence[Any]) -> int:
        return w.a.mmuext(o)

    refused_after_prefix(world, run, ops, errno.ENOSYS, rule="mmuext.unknown-command")


# -- update_va_mapping -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("va", "errno_", "rule"),
    [
        (1 << 63, errno.EINVAL, "uvm.bad-va"),
        (1 << 47, errno.EINVAL, "uvm.bad-va"),
        (abi.HYPERVISOR_VIRT_START, errno.EINVAL, "uvm.bad-va"),
        (abi.HYPERVISOR_VIRT_END - 4096, errno.EINVAL, "uvm.bad-va"),
        (0, errno.EINVAL, "uvm.no-l1"),
        (-4096, errno.EINVAL, "args.out-of-range"),
        (U64, errno.EINVAL, "args.out-of-range"),
        ("0x1000", errno.EFAULT, "args.unreadable"),
        (None, errno.EFAULT, "args.unreadable"),
    ],
    ids=[
        "1<<63",
        "1<<47",
        "xen-hole-start",
        "xen-hole-end",
        "no-l1",
        "negative",
        "2**64",
        "str",
        "None",
    ],
)
def test_update_va_mapping_bad_va(world: World, va: Any, errno_: int, rule: str) -> None:
    refused_cleanly(
        world,
        lambda: world.a.vcpu.update_va_mapping(va, pte(world.Q, Pr), abi.UVMF_INVLPG),
        errno_,
        rule=rule,
    )


def test_update_va_mapping_at_non_canonical_va_does_not_flush(world: World) -> None:
    flushes = world.xen.stats().tlb_flushes
    world.refused(
        lambda: world.a.update_va_mapping(1 << 63, 0, abi.UVMF_TLB_FLUSH | abi.UVMF_ALL),
        errno.EINVAL,
        rule="uvm.bad-va",
    )
    assert world.xen.stats().tlb_flushes == flushes


@pytest.mark.parametrize("flags", [-1, U64, "invlpg"])
def test_update_va_mapping_unreadable_flags(world: World, flags: Any) -> None:
    if isinstance(flags, str):
        errno_, rule = errno.EFAULT, "args.unreadable"
    else:
        errno_, rule = errno.EINVAL, "args.out-of-range"
    refused_cleanly(
        world,
        lambda: world.a.vcpu.update_va_mapping(world.w(0), pte(world.Q, Pr), flags),
        errno_,
        rule=rule,
    )


@pytest.mark.parametrize(
    "flags",
    [
        abi.UVMF_NONE,
        abi.UVMF_TLB_FLUSH,
        abi.UVMF_INVLPG,
        abi.UVMF_TLB_FLUSH | abi.UVMF_ALL,
        abi.UVMF_INVLPG | abi.UVMF_ALL,
    ],
)
def test_update_va_mapping_valid_flags_are_accepted(world: World, flags: int) -> None:
    world.a.update_va_mapping(world.w(0), pte(world.Q, Pr), flags)
    assert world.a.l1e(world.w(0)) == stored(pte(world.Q, Pr))


@pytest.mark.parametrize("val", [-1, U64, "pte"])
def test_update_va_mapping_bad_val(world: World, val: Any) -> None:
    errno_ = errno.EFAULT if isinstance(val, str) else errno.EINVAL
    rule = "args.unreadable" if isinstance(val, str) else "args.out-of-range"
    refused_cleanly(
        world, lambda: world.a.vcpu.update_va_mapping(world.w(0), val), errno_, rule=rule
    )


@pytest.mark.parametrize(
    ("domid", "errno_", "rule"),
    [
        (1, errno.ESRCH, "foreigndom.self-id"),
        (77, errno.ESRCH, "foreigndom.unknown"),
        (2, errno.EPERM, "foreigndom.not-privileged"),
        (1 << 16, errno.EINVAL, "args.out-of-range"),
    ],
    ids=["own-id", "unknown", "unprivileged", "2**16"],
)
def test_update_va_mapping_otherdomain_bad_domid(
    world: World, domid: int, errno_: int, rule: str
) -> None:
    refused_cleanly(
        world,
        lambda: world.a.vcpu.update_va_mapping_otherdomain(
            world.w(0), pte(world.X, Pr), abi.UVMF_NONE, domid
        ),
        errno_,
        rule=rule,
    )


def test_update_va_mapping_otherdomain_works_for_dom0(world: World) -> None:
    world.dom0.vcpu.update_va_mapping_otherdomain(
        world.dom0.w(0), pte(world.X, Pr | RW), abi.UVMF_INVLPG, 2
    )
    audit_clean(world.xen)
    assert world.xen.frame(world.X).type_count == 1


# -- vm_assist ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cmd", "type_", "errno_", "rule"),
    [
        (2, abi.VMASST_TYPE_writable_pagetables, errno.ENOSYS, "vm_assist.bad-cmd"),
        (abi.VMASST_CMD_enable, 31, errno.EINVAL, "vm_assist.bad-type"),
        (abi.VMASST_CMD_enable, 1000, errno.EINVAL, "vm_assist.bad-type"),
        (-1, 2, errno.EINVAL, "args.out-of-range"),
        (abi.VMASST_CMD_enable, None, errno.EFAULT, "args.unreadable"),
    ],
    ids=["cmd-2", "type-31", "type-1000", "cmd-negative", "type-None"],
)
def test_vm_assist_bad_arguments(
    world: World, cmd: int, type_: Any, errno_: int, rule: str
) -> None:
    assists = world.a.dom.vm_assist
    refused_cleanly(world, lambda: world.a.vcpu.vm_assist(cmd, type_), errno_, rule=rule)
    assert world.a.dom.vm_assist == assists


# -- user mode ---------------------------------------------------------------------------------


def _user_calls(world: World) -> dict[str, Callable[[], object]]:
    v = world.a.vcpu
    return {
        "mmu_update": lambda: v.mmu_update([one_ok_mapping(world)]),
        "mmuext_op": lambda: v.mmuext_op([abi.MmuExtOp(abi.MMUEXT_PIN_L1_TABLE, world.P)]),
        "update_va_mapping": lambda: v.update_va_mapping(world.w(0), pte(world.Q, Pr)),
        "update_va_mapping_otherdomain": lambda: v.update_va_mapping_otherdomain(
            world.w(0), pte(world.Q, Pr), 0, abi.DOMID_SELF
        ),
        "vm_assist": lambda: v.vm_assist(abi.VMASST_CMD_disable, 2),
        "multicall": lambda: v.multicall([]),
    }


@pytest.mark.parametrize(
    "name",
    [
        "mmu_update",
        "mmuext_op",
        "update_va_mapping",
        "update_va_mapping_otherdomain",
        "vm_assist",
        "multicall",
    ],
)
def test_hypercall_from_user_mode_is_eperm(world: World, name: str) -> None:
    call = _user_calls(world)[name]

    def from_user() -> None:
        with world.a.vcpu.user_mode():
            call()

    err = refused_cleanly(world, from_user, errno.EPERM, rule="hypercall.user-mode")
    assert err.op == name
    assert not world.a.vcpu.in_user_mode
    assert world.a.dom.vm_assist & 1 << abi.VMASST_TYPE_writable_pagetables


# -- multicall ---------------------------------------------------------------------------------


def uvm_entry(world: World, i: int, mfn: int) -> abi.MulticallEntry:
    return abi.MulticallEntry(
        abi.HYPERVISOR_update_va_mapping, (world.w(i), pte(mfn, Pr), abi.UVMF_NONE)
    )


@pytest.mark.parametrize(
    ("bad", "result"),
    [
        (abi.MulticallEntry(99, ()), -errno.ENOSYS),
        (abi.MulticallEntry(abi.HYPERVISOR_update_va_mapping, (0,)), -errno.EINVAL),
        (abi.MulticallEntry(abi.HYPERVISOR_vm_assist, (0, 2, 0)), -errno.EINVAL),
        (abi.MulticallEntry(abi.HYPERVISOR_multicall, ([],)), -errno.EINVAL),
        (abi.MulticallEntry(abi.HYPERVISOR_mmuext_op, ([abi.MmuExtOp(99)],)), -errno.ENOSYS),
        (abi.MulticallEntry(abi.HYPERVISOR_update_va_mapping, (1 << 63, 0, 0)), -errno.EINVAL),
    ],
    ids=[
        "unknown-op",
        "too-few-args",
        "too-many-args",
        "nested",
        "failing-subcall",
        "non-canonical",
    ],
)
def test_multicall_bad_entry_fails_alone_and_others_still_run(
    world: World, bad: abi.MulticallEntry, result: int
) -> None:
    entries = [uvm_entry(world, 0, world.Q), bad, uvm_entry(world, 1, world.R)]
    assert world.a.vcpu.multicall(entries) == [0, result, 0]
    audit_clean(world.xen)
    assert world.a.l1e(world.w(0)) == stored(pte(world.Q, Pr))
    assert world.a.l1e(world.w(1)) == stored(pte(world.R, Pr))


def test_nested_multicall_does_not_run_its_entries(world: World) -> None:
    nested = abi.MulticallEntry(abi.HYPERVISOR_multicall, ([uvm_entry(world, 0, world.Q)],))
    assert world.a.vcpu.multicall([nested]) == [-errno.EINVAL]
    audit_clean(world.xen)
    assert world.a.l1e(world.w(0)) == 0


@pytest.mark.parametrize("entries", [{"op": 1}, None, "calls"], ids=["dict", "None", "str"])
def test_multicall_unreadable_list_is_efault(world: World, entries: Any) -> None:
    refused_cleanly(
        world, lambda: world.a.vcpu.multicall(entries), errno.EFAULT, rule="args.unreadable"
    )


@pytest.mark.parametrize(
    "bad",
    [None, "op", (1,), abi.MulticallEntry(1, "args"), abi.MulticallEntry("mmu", ())],
    ids=["None", "str", "1-tuple", "str-args", "str-op"],
)
def test_multicall_unreadable_entry_is_efault_after_earlier_entries_ran(
    world: World, bad: Any
) -> None:
    world.refused(
        lambda: world.a.vcpu.multicall([uvm_entry(world, 0, world.Q), bad]),
        errno.EFAULT,
        done=1,
        rule="args.unreadable",
    )
    assert world.a.l1e(world.w(0)) == stored(pte(world.Q, Pr))


def test_multicall_of_nothing_returns_no_results(world: World) -> None:
    assert world.a.vcpu.multicall([]) == []
