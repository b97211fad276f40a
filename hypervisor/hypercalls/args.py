"""Reading untrusted hypercall arguments as the C structures Xen copies in.

Anything that cannot be read as the structure (not a sequence, wrong shape, a
field that is not an int) is EFAULT; an int outside its C width is EINVAL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypervisor import rules
from hypervisor.abi import MmuExtOp, MmuUpdate, MulticallEntry
from hypervisor.errors import GuestError

__all__ = ["as_int", "as_sequence", "mmu_request", "mmuext_request", "multicall_entry"]

U64 = 1 << 64


def as_int(value: object, bits: int, what: str) -> int:
    """``value`` as a C unsigned integer of ``bits`` bits."""
    if type(value) is not int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise GuestError(rules.ARGS_UNREADABLE, f"{what} is {value!r}, not an integer")
        value = int(value)
    if not 0 <= value < 1 << bits:
        raise GuestError(
            rules.ARGS_OUT_OF_RANGE, f"{what} = {value:#x} does not fit in {bits} bits"
        )
    return value


def as_sequence(value: object, what: str) -> Sequence[Any]:
    """A guest array: a list or tuple."""
    if not isinstance(value, list | tuple):
        raise GuestError(rules.ARGS_UNREADABLE, f"{what} is {type(value).__name__}, not a list")
    return value


def mmu_request(r: object) -> tuple[int, int]:
    """One ``struct mmu_update``: an :class:`MmuUpdate` or a ``(ptr, val)`` pair."""
    if type(r) is MmuUpdate:
        ptr, val = r.ptr, r.val
    elif isinstance(r, tuple | list) and len(r) == 2:
        ptr, val = r
    else:
        raise GuestError(rules.ARGS_UNREADABLE, f"request {r!r} is not an MmuUpdate(ptr, val)")
    if type(ptr) is int and type(val) is int and 0 <= ptr < U64 and 0 <= val < U64:
        return ptr, val
    return as_int(ptr, 64, "ptr"), as_int(val, 64, "val")


def mmuext_request(op: object) -> tuple[int, int, int]:
    """One ``struct mmuext_op``: an :class:`MmuExtOp` or a tuple ``(cmd[, arg1[, arg2]])``."""
    if type(op) is MmuExtOp:
        cmd, arg1, arg2 = op.cmd, op.arg1, op.arg2
    elif isinstance(op, tuple | list) and 1 <= len(op) <= 3:
        cmd, arg1, arg2 = (*op, 0, 0)[:3]
    else:
        raise GuestError(rules.ARGS_UNREADABLE, f"op {op!r} is not an MmuExtOp(cmd, arg1, arg2)")
    return as_int(cmd, 32, "cmd"), as_int(arg1, 64, "arg1"), as_int(arg2, 64, "arg2")


def multicall_entry(entry: object) -> tuple[int, tuple[Any, ...]]:
    """One multicall entry: a :class:`MulticallEntry` or ``(op, args)``."""
    if type(entry) is MulticallEntry:
        op, args = entry.op, entry.args
    elif isinstance(entry, tuple | list) and len(entry) == 2:
        op, args = entry
    else:
        raise GuestError(
            rules.ARGS_UNREADABLE, f"entry {entry!r} is not a MulticallEntry(op, args)"
        )
    if not isinstance(args, tuple | list):
        raise GuestError(rules.ARGS_UNREADABLE, f"entry args {args!r} is not a tuple")
    return as_int(op, 64, "op"), tuple(args)
