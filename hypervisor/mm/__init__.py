"""Xen's ``arch/x86/mm.c`` cut into concepts: frames and counts, get/put
references and types, L1 and L2-L4 entry rules with (de)validation, entry
updates, trapped writes and the audit."""

from hypervisor.mm import l1, upper  # noqa: F401 -- importing registers promote/demote
from hypervisor.mm.frames import FrameInfo, PageInfo, PageType
from hypervisor.mm.state import XenState

__all__ = ["FrameInfo", "PageInfo", "PageType", "XenState"]
