"""The hypercall table and the one entry point every hypercall goes through.

``invoke`` refuses calls from user mode, counts and traces the call, and turns
an internal :class:`GuestError` into the public :class:`HypercallError`
exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from hypervisor import rules
from hypervisor.console import Refusal
from hypervisor.errors import GuestError, HypercallError, refusal
from hypervisor.mm.domain import PvVcpu
from hypervisor.mm.state import XenState
from hypervisor.trace import HypercallRecord

__all__ = ["TABLE", "HypercallSpec", "hypercall", "invoke", "log_refusal"]

Handler = Callable[..., Any]


@attrs.frozen
class HypercallSpec:
    number: int
    name: str
    fn: Handler
    min_args: int
    max_args: int


TABLE: dict[int, HypercallSpec] = {}


def hypercall(number: int, name: str, min_args: int, max_args: int) -> Callable[[Handler], Handler]:
    """Register ``do_<name>`` as hypercall ``number``."""

    def deco(fn: Handler) -> Handler:
        TABLE[number] = HypercallSpec(number, name, fn, min_args, max_args)
        return fn

    return deco


def _done(result: Any) -> int:
    return result if type(result) is int else 0


def invoke(
    xen: XenState,
    v: PvVcpu,
    number: int,
    args: tuple[Any, ...],
    depth: int = 0,
    slot: int | None = None,
) -> Any:
    """Run hypercall ``number`` on vCPU ``v``; raise HypercallError on refusal,
    after logging it on the domain's console. ``depth`` 1 and ``slot`` mark
    entry ``slot`` of a multicall."""
    spec = TABLE[number]
    clock = xen.tracer.tick()
    xen.stats["hypercalls"] += 1
    xen.stats[spec.name] += 1
    traced = tuple(tuple(a) if isinstance(a, list) else a for a in args)
    try:
        if v.in_user_mode:
            raise GuestError(rules.HYPERCALL_USER_MODE, f"vCPU {v.vcpu_id} is in user mode")
        result = spec.fn(xen, v, *args)
    except GuestError as err:
        xen.tracer.emit(
            HypercallRecord(
                clock,
                v.domain.domid,
                v.vcpu_id,
                spec.name,
                traced,
                -err.errno,
                err.done,
                err.rule.id,
                depth=depth,
            )
        )
        exc = refusal(spec.name, err, err.done)
        log_refusal(v, clock, spec.name, exc, slot)
        raise exc from None
    xen.tracer.defer(
        HypercallRecord,
        clock,
        v.domain.domid,
        v.vcpu_id,
        spec.name,
        traced,
        0,
        _done(result),
        "",
        depth,
    )
    return result


def log_refusal(
    v: PvVcpu, clock: int, name: str, exc: HypercallError, slot: int | None = None
) -> None:
    """Write refusal ``exc`` of hypercall ``name`` to the domain's console."""
    v.domain.console.log(
        Refusal(
            clock,
            v.domain.domid,
            v.vcpu_id,
            name,
            exc.errno or 0,
            exc.rule,
            exc.message,
            exc.done,
            multicall_slot=slot,
        )
    )
