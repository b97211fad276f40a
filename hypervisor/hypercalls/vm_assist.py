"""``HYPERVISOR_vm_assist`` (21): switch optional Xen behaviours on and off,
e.g. ``VMASST_TYPE_writable_pagetables`` (trapped L1 writes are emulated)."""

from __future__ import annotations

from typing import Any

from hypervisor import abi, rules
from hypervisor.errors import GuestError
from hypervisor.hypercalls.args import as_int
from hypervisor.hypercalls.dispatch import hypercall
from hypervisor.mm.domain import PvVcpu
from hypervisor.mm.state import XenState

__all__ = ["VALID_64", "VALID_COMPAT", "do_vm_assist"]

_COMMON = {
    abi.VMASST_TYPE_4gb_segments,
    abi.VMASST_TYPE_4gb_segments_notify,
    abi.VMASST_TYPE_writable_pagetables,
    abi.VMASST_TYPE_pae_extended_cr3,
    abi.VMASST_TYPE_architectural_iopl,
    abi.VMASST_TYPE_runstate_update_flag,
}
VALID_64 = frozenset(_COMMON | {abi.VMASST_TYPE_m2p_strict})
VALID_COMPAT = frozenset(_COMMON)


@hypercall(21, "vm_assist", 2, 2)
def do_vm_assist(xen: XenState, v: PvVcpu, cmd: Any, type: Any) -> None:
    """common/domain.c ``do_vm_assist``: the type is checked (EINVAL) before
    the command (ENOSYS)."""
    cmd = as_int(cmd, 32, "cmd")
    type = as_int(type, 32, "type")
    d = v.domain
    if type not in (VALID_COMPAT if d.is_32bit else VALID_64):
        raise GuestError(rules.VM_ASSIST_BAD_TYPE, f"assist type {type}")
    if cmd not in (abi.VMASST_CMD_enable, abi.VMASST_CMD_disable):
        raise GuestError(rules.VM_ASSIST_BAD_CMD, f"command {cmd}")
    if cmd == abi.VMASST_CMD_enable:
        d.vm_assist |= 1 << type
    else:
        d.vm_assist &= ~(1 << type)
