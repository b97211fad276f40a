"""``HYPERVISOR_multicall`` (13): run a list of hypercalls, each writing its
own result; a failing entry does not stop the rest.

A refused entry's slot holds only ``-errno``, as in Xen; the full explanation
(rule, message, which entry) goes to the domain's console, where
``xen.console(domid)`` reads it.
"""

from __future__ import annotations

from typing import Any

from hypervisor import rules
from hypervisor.errors import GuestError, HypercallError, refusal
from hypervisor.hypercalls.args import as_sequence, multicall_entry
from hypervisor.hypercalls.dispatch import TABLE, HypercallSpec, hypercall, invoke, log_refusal
from hypervisor.mm.domain import PvVcpu
from hypervisor.mm.state import XenState

__all__ = ["do_multicall"]

MULTICALL = 13


@hypercall(MULTICALL, "multicall", 1, 1)
def do_multicall(xen: XenState, v: PvVcpu, entries: Any) -> list[int]:
    """common/multicall.c ``do_multicall``: every entry runs, in order; each
    result is 0 or -errno. An entry that cannot be read stops the call with
    EFAULT (the entries before it stay done)."""
    entries = as_sequence(entries, "entries")
    results: list[int] = []
    for i, entry in enumerate(entries):
        try:
            op, args = multicall_entry(entry)
        except GuestError as err:
            err.done = i
            raise
        results.append(_one(xen, v, i, op, args))
    return results


def _entry_spec(op: int, args: tuple[Any, ...]) -> HypercallSpec:
    """The hypercall an entry asks for, or the rule it breaks."""
    if op == MULTICALL:
        raise GuestError(rules.MULTICALL_NESTED, "")
    spec = TABLE.get(op)
    if spec is None:
        raise GuestError(rules.HYPERCALL_UNKNOWN, "")
    if not spec.min_args <= len(args) <= spec.max_args:
        want = (
            f"{spec.min_args}"
            if spec.min_args == spec.max_args
            else (f"{spec.min_args}-{spec.max_args}")
        )
        raise GuestError(
            rules.MULTICALL_ARITY,
            f"{len(args)} arguments given; {spec.name} takes {want}",
        )
    return spec


def _one(xen: XenState, v: PvVcpu, i: int, op: int, args: tuple[Any, ...]) -> int:
    """Run entry ``i``; its result: 0 or -errno (the refusal is logged)."""
    try:
        spec = _entry_spec(op, args)
    except GuestError as err:
        name = TABLE[op].name if op in TABLE else f"hypercall {op}"
        log_refusal(v, xen.tracer.clock, name, refusal(name, err), slot=i)
        return -err.errno
    try:
        invoke(xen, v, spec.number, args, depth=1, slot=i)
    except HypercallError as exc:
        return -int(exc.errno or 0)
    return 0
