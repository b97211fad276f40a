"""Messages teach: a refusal names the frame, the slot, the level and the rule,
and every rule id the hypervisor can raise is documented in ``RULES``."""

from __future__ import annotations

import ast
import errno
import pathlib
import re

import pytest
from hvworld import A_, PCD, RW, US, Pr, World, pte

import hypervisor
from hypervisor import RULES, HypercallError, abi, rules

RULE_ID = re.compile(r"^[a-z][a-z0-9_]*\.[a-z0-9][a-z0-9-]*$")
HYPERVISOR_SRC = pathlib.Path(hypervisor.__file__).parent


def rule_ids_in_source() -> set[str]:
    """Every string constant in the hypervisor package (rules.py aside) that
    looks like a rule id: ``area.name``."""
    found: set[str] = set()
    for path in HYPERVISOR_SRC.rglob("*.py"):
        if path.name == "rules.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            text = node.value if isinstance(node, ast.Constant) else None
            source_file = isinstance(text, str) and text.endswith((".c", ".h", ".py"))
            if isinstance(text, str) and RULE_ID.match(text) and not source_file:
                found.add(text)
    return found


def assert_teaches(err: HypercallError, *facts: str) -> None:
    """The message quotes the errno name, the rule's principle and fix, and each fact."""
    text = str(err)
    r = RULES[err.rule]
    for fact in (abi.errno_name(err.errno), r.principle, r.fix, *facts):
        assert fact in text, f"{fact!r} missing from: {text}"


# -- the rule table ------------------------------------------------------------------------


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_every_rule_has_principle_fix_and_a_real_errno(rule_id: str) -> None:
    r = RULES[rule_id]
    assert r.id == rule_id
    assert RULE_ID.match(rule_id)
    assert r.principle.strip()
    assert r.fix.strip()
    assert r.xen.strip()
    assert r.errno in errno.errorcode


def test_the_source_names_rules_through_checked_constants_not_strings() -> None:
    assert sorted(rule_ids_in_source()) == []


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_every_rule_has_a_constant_named_after_its_id(rule_id: str) -> None:
    name = re.sub(r"[.-]", "_", rule_id).upper()
    assert getattr(rules, name) is RULES[rule_id]


def test_the_duplicate_writable_mapped_rule_is_gone() -> None:
    assert "type.writable-mapped" in RULES
    assert "entry.target-writable" not in RULES


def test_refusals_carry_their_rules_errno(world: World) -> None:
    calls = [
        lambda: world.a.pin(1, world.X),
        lambda: world.a.unpin(world.P),
        lambda: world.a.map_at(world.w(0), world.Q, Pr | PCD),
        lambda: world.a.set_entry(world.K, 256, 0),
        lambda: world.a.update_va_mapping(1 << 63, 0),
        lambda: world.a.mmuext([abi.MmuExtOp(abi.MMUEXT_MARK_SUPER, 0)]),
        lambda: world.a.mmu_update([(1, 0)], foreigndom=77),
    ]
    for call in calls:
        with pytest.raises(HypercallError) as info:
            call()
        err = info.value
        assert err.rule in RULES
        assert err.errno == RULES[err.rule].errno
        assert_teaches(err)


# -- messages name what went wrong -------------------------------------------------------------


def test_pin_of_l1_mapped_rw_names_the_l1_entry_holding_the_mapping(world: World) -> None:
    world.a.map_at(world.w(0), world.P, Pr | RW)
    l1, slot = world.a.l1_slot(world.w(0))
    err = world.refused(lambda: world.a.pin(1, world.P), errno.EINVAL, rule="type.writable-mapped")
    assert_teaches(err, "MMUEXT_PIN_L1_TABLE", f"mfn {world.P:#x}", f"mfn {l1:#x} slot {slot}")


def test_nested_validation_error_names_the_path_level_frame_and_slot(world: World) -> None:
    world.a.pin(1, world.P)
    world.a.set_entry(world.R, 5, pte(world.P, Pr | RW))
    err = world.refused(
        lambda: world.a.set_entry(world.M, 7, pte(world.R, Pr)),
        errno.EBUSY,
        rule="l1.writable-pagetable",
    )
    assert_teaches(err, f"L1 mfn {world.R:#x} slot 5", f"mfn {world.P:#x}")


def test_deep_validation_error_names_every_level_on_the_way_down(world: World) -> None:
    l4, l3, l2, l1 = (world.a.fresh() for _ in range(4))
    world.a.set_entry(l4, 3, pte(l3, Pr | RW | US | A_))
    world.a.set_entry(l3, 4, pte(l2, Pr | RW | US | A_))
    world.a.set_entry(l2, 5, pte(l1, Pr | RW | US | A_))
    world.a.set_entry(l1, 6, pte(world.Q, Pr | PCD))
    err = world.refused(
        lambda: world.a.new_baseptr(l4), errno.EINVAL, rule="entry.disallowed-flags"
    )
    path = (
        f"L4 mfn {l4:#x} slot 3 -> L3 mfn {l3:#x} slot 4 -> "
        f"L2 mfn {l2:#x} slot 5 -> L1 mfn {l1:#x} slot 6"
    )
    assert_teaches(err, "MMUEXT_NEW_BASEPTR", path)
    assert world.a.vcpu.cr3 == world.K


def test_xen_slot_refusal_names_slot_level_and_table(world: World) -> None:
    err = world.refused(
        lambda: world.a.set_entry(world.K, 260, 0), errno.EINVAL, rule="l4.xen-slot"
    )
    assert_teaches(err, "slot 260", f"L4 mfn {world.K:#x}")


def test_batch_refusal_names_the_failing_request_index(world: World) -> None:
    reqs = [
        (world.a.slot_ptr(world.w(0)), pte(world.Q, Pr)),
        (world.a.slot_ptr(world.w(1)), pte(world.R, Pr | PCD)),
        (world.a.slot_ptr(world.w(2)), pte(world.S, Pr)),
    ]
    err = world.refused(
        lambda: world.a.mmu_update(reqs), errno.EINVAL, done=1, rule="entry.disallowed-flags"
    )
    assert_teaches(err, "request 1 of 3", f"{pte(world.R, Pr | PCD):#x}", "L1")


def test_mmuext_batch_refusal_names_command_frame_and_op_index(world: World) -> None:
    ops = [abi.MmuExtOp(abi.MMUEXT_PIN_L1_TABLE, world.S)] * 2
    err = world.refused(lambda: world.a.mmuext(ops), errno.EINVAL, done=1)
    assert_teaches(err, f"MMUEXT_PIN_L1_TABLE of mfn {world.S:#x} (op 1 of 2)")


def test_mapping_a_page_table_rw_names_the_table_and_its_level(world: World) -> None:
    world.a.pin(1, world.P)
    err = world.refused(
        lambda: world.a.map_at(world.w(0), world.P, Pr | RW),
        errno.EBUSY,
        rule="l1.writable-pagetable",
    )
    assert_teaches(err, f"mfn {world.P:#x}", "L1")


def test_refused_l1_update_names_the_entry_being_written(world: World) -> None:
    world.a.pin(1, world.P)
    l1, slot = world.a.l1_slot(world.w(0))
    err = world.refused(
        lambda: world.a.map_at(world.w(0), world.P, Pr | RW),
        errno.EBUSY,
        rule="l1.writable-pagetable",
    )
    assert f"mfn {l1:#x} slot {slot}" in str(err)


def test_error_survives_pickling_with_errno_done_and_rule(world: World) -> None:
    import pickle

    world.a.pin(1, world.P)
    err = world.refused(lambda: world.a.pin(1, world.P), errno.EINVAL)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.errno, copy.done, copy.rule, str(copy)) == (
        err.errno,
        err.done,
        err.rule,
        str(err),
    )
