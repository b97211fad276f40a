"""``HYPERVISOR_multicall`` (13): run a list of hypercalls, each writing its
own result; a failing entry does not stop the rest."""

from __future__ import annotations

from typing import Any

from hypervisor.abi import EINVAL, ENOSYS
from hypervisor.errors import GuestError, HypercallError
from hypervisor.hypercalls.args import as_sequence, multicall_entry
from hypervisor.hypercalls.dispatch import TABLE, hypercall, invoke
from hypervisor.mm.domain import PvVcpu
from hypervisor.mm.state import XenState

__all__ = ["do_multicall"]


@hypercall(13, "multicall", 1, 1)
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
        results.append(_one(xen, v, op, args))
    return results


def _one(xen: XenState, v: PvVcpu, op: int, args: tuple[Any, ...]) -> int:
    if op == 13:
        return -EINVAL  # nested multicall
    spec = TABLE.get(op)
    if spec is None:
        return -ENOSYS
    if not spec.min_args <= len(args) <= spec.max_args:
        return -EINVAL
    try:
        invoke(xen, v, op, args, depth=1)
    except HypercallError as exc:
        return -int(exc.errno or 0)
    return 0
