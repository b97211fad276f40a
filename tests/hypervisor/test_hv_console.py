"""The console: every refusal -- a hypercall, a multicall entry, a trapped
write -- is logged on the refusing domain's console with what a single
hypercall's ``HypercallError`` carries."""

from __future__ import annotations

import errno

import attrs
import pytest
from hvworld import PCD, RW, Pr, World, entry_ptr, pte

from hypervisor import HypercallError, PageFault, Refusal, abi, console


def pin_op(mfn: int) -> abi.MulticallEntry:
    return abi.MulticallEntry(
        abi.HYPERVISOR_mmuext_op, ([abi.MmuExtOp(abi.MMUEXT_PIN_L1_TABLE, mfn)],)
    )


def test_a_refused_hypercall_is_logged_with_its_error_in_full(world: World) -> None:
    world.a.pin(1, world.P)
    with pytest.raises(HypercallError) as info:
        world.a.vcpu.mmuext_op([abi.MmuExtOp(abi.MMUEXT_PIN_L1_TABLE, world.P)])
    (r,) = world.a.dom.refusals
    err = info.value
    assert (r.hypercall, r.errno, r.rule, r.message, r.done) == (
        "mmuext_op",
        err.errno,
        err.rule,
        str(err),
        err.done,
    )
    assert (r.domid, r.vcpu, r.multicall_slot, r.va) == (world.a.dom.domid, 0, None, None)


def test_a_refused_multicall_entry_keeps_its_errno_slot_and_logs_the_rest(world: World) -> None:
    world.a.pin(1, world.P)
    results = world.a.vcpu.multicall([pin_op(world.Q), pin_op(world.P), pin_op(world.R)])
    assert results == [0, -errno.EINVAL, 0]
    (r,) = world.a.dom.refusals
    assert (r.hypercall, r.multicall_slot, r.errno, r.rule) == (
        "mmuext_op",
        1,
        errno.EINVAL,
        "pin.already-pinned",
    )
    assert f"mfn {world.P:#x}" in r.message
    assert "pins are not nested" in r.message  # the principle


def test_a_multicall_entry_refusal_reads_like_the_single_call_refusal(world: World) -> None:
    world.a.pin(1, world.P)
    world.a.vcpu.multicall([pin_op(world.P)])
    with pytest.raises(HypercallError) as info:
        world.a.vcpu.mmuext_op([abi.MmuExtOp(abi.MMUEXT_PIN_L1_TABLE, world.P)])
    batched, single = world.a.dom.refusals
    assert batched.message == single.message == str(info.value)


def test_refusals_carry_the_logical_clock_of_their_call(world: World) -> None:
    world.a.vcpu.multicall([pin_op(world.X)])
    (r,) = world.a.dom.refusals
    (sub,) = [h for h in world.xen.trace.hypercalls() if h.depth == 1 and h.result]
    assert r.clock == sub.clock


@pytest.mark.parametrize(
    ("entry", "err", "rule"),
    [
        (abi.MulticallEntry(abi.HYPERVISOR_multicall, ([],)), errno.EINVAL, "multicall.nested"),
        (abi.MulticallEntry(99, ()), errno.ENOSYS, "hypercall.unknown"),
        (abi.MulticallEntry(abi.HYPERVISOR_mmu_update, ()), errno.EINVAL, "multicall.arity"),
    ],
)
def test_a_malformed_multicall_entry_is_logged_with_its_rule(
    world: World, entry: abi.MulticallEntry, err: int, rule: str
) -> None:
    assert world.a.vcpu.multicall([entry]) == [-err]
    (r,) = world.a.dom.refusals
    assert (r.errno, r.rule, r.multicall_slot) == (err, rule, 0)


def test_a_refused_trapped_write_is_logged_with_its_address(world: World) -> None:
    world.a.pin(1, world.P)
    l1, slot = world.a.l1_slot(world.w(0))
    world.a.map_at(world.w(1), l1, Pr)  # the scratch window's own L1, read-only
    with pytest.raises(PageFault):
        world.a.vcpu.store(world.w(1) + 8 * slot, pte(world.P, Pr | RW))
    (r,) = world.a.dom.refusals
    assert (r.hypercall, r.va, r.rule, r.errno) == (
        "trapped_write",
        world.w(1) + 8 * slot,
        "l1.writable-pagetable",
        errno.EBUSY,
    )
    assert f"L1 mfn {l1:#x} slot {slot}" in r.message


def test_each_domain_has_its_own_console(world: World) -> None:
    world.refused(lambda: world.b.pin(1, world.P), errno.EINVAL)
    assert world.a.dom.refusals == ()
    assert [r.rule for r in world.xen.console(world.b.dom.domid)] == ["pin.not-owned"]


def test_reading_the_console_with_clear_empties_it(world: World) -> None:
    world.refused(lambda: world.a.set_entry(world.K, 256, 0), errno.EINVAL)
    assert len(world.xen.console(world.a.dom.domid, clear=True)) == 1
    assert world.xen.console(world.a.dom.domid) == ()


def test_the_console_keeps_the_newest_refusals_when_full(world: World) -> None:
    bad = [abi.MulticallEntry(99, ())] * (console.CONSOLE_SIZE + 3)
    world.a.vcpu.multicall(bad)
    log = world.a.dom.refusals
    assert len(log) == console.CONSOLE_SIZE
    assert log[0].multicall_slot == 3


def test_the_console_of_no_domain_is_a_value_error(world: World) -> None:
    with pytest.raises(ValueError, match="no domain"):
        world.xen.console(7)


def test_a_refusal_is_a_frozen_record_that_prints_like_a_console_line(world: World) -> None:
    world.a.vcpu.multicall([abi.MulticallEntry(abi.HYPERVISOR_mmu_update, ([(1, 0)], 77))])
    (r,) = world.a.dom.refusals
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        r.rule = "x"  # type: ignore[misc]
    assert str(r).startswith(f"(d{r.domid}v0 @{r.clock}) multicall entry 0: ")
    assert str(r).endswith("[foreigndom.unknown]")
    assert isinstance(r, Refusal)
    assert r.errno_name == "ESRCH"


def test_a_successful_run_logs_nothing(world: World) -> None:
    world.a.pin(1, world.P)
    world.a.set_entry(world.M, 1, pte(world.P, Pr))
    world.a.mmu_update([(entry_ptr(world.P, 0), pte(world.Q, Pr))])
    assert world.a.dom.refusals == ()


def test_a_refused_flag_inside_a_batch_names_the_request(world: World) -> None:
    reqs = [(world.a.slot_ptr(world.w(i)), pte(world.Q, Pr | (PCD if i else 0))) for i in range(2)]
    results = world.a.vcpu.multicall([abi.MulticallEntry(abi.HYPERVISOR_mmu_update, (reqs,))])
    assert results == [-errno.EINVAL]
    (r,) = world.a.dom.refusals
    assert (r.rule, r.done) == ("entry.disallowed-flags", 1)
    assert "request 1 of 2" in r.message
