"""The single-level rule (XSA-240) is gone: a table that is the target of a linear entry
may have linear entries of its own, and a table with linear entries may become a target.
The guest stacks tables layer on layer; tearing the stack down recurses once per layer in
the hypervisor (put_page_type -> demote -> put_page_from_lne -> put_page_type ...), as
deep as the guest likes, until the stack overflows: Xen 4.9 and earlier, CVE-2017-15595.
Xen refuses the second layer with EINVAL (linear.chain)."""

from __future__ import annotations

from hypervisor import rules
from hypervisor.abi import _PAGE_RW, Mfn
from hypervisor.errors import GuestError
from hypervisor.mm.domain import PvDomain
from hypervisor.mm.frames import PageInfo
from hypervisor.mm.state import XenState


def get_linear_pagetable(
    xen: XenState,
    e: int,
    level: int,
    t_mfn: Mfn,
    pg: PageInfo,
    c_mfn: Mfn,
    c_pg: PageInfo,
    d: PvDomain,
) -> None:
    if not xen.config.linear_pt:
        raise GuestError(rules.LINEAR_DISABLED, f"L{level} entry {e:#x} is a linear entry")
    if e & _PAGE_RW:
        raise GuestError(rules.LINEAR_WRITABLE, f"L{level} entry {e:#x} is writable")
    if t_mfn == c_mfn:
        return
    pg.count += 1
    pg.type_count += 1
    if xen.config.linear_single_level:
        c_pg.linear += 1
        pg.linear -= 1
