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
from hypervisor.errors import GuestError, refusal
from hypervisor.mm.domain import PvVcpu
from hypervisor.mm.state import XenState
from hypervisor.trace import HypercallRecord

__all__ = ["TABLE", "HypercallSpec", "hypercall", "invoke"]

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


def invoke(xen: XenState, v: PvVcpu, number: int, args: tuple[Any, ...], depth: int = 0) -> Any:
    """Run hypercall ``number`` on vCPU ``v``; raise HypercallError on refusal."""
    spec = TABLE[number]
    clock = xen.tracer.tick()
    xen.stats["hypercalls"] += 1
    xen.stats[spec.name] += 1
    traced = tuple(tuple(a) if isinstance(a, list) else a for a in args)
    try:
        if v.in_user_mode:
            raise GuestError(rules.HYPERCALL_USER_MODE, f"{spec.name} issued from user mode")
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
        raise refusal(spec.name, err, err.done) from None
    xen.tracer.emit(
        HypercallRecord(
            clock, v.domain.domid, v.vcpu_id, spec.name, traced, 0, _done(result), depth=depth
        )
    )
    return result
