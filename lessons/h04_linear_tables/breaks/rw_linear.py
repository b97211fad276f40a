"""The RW check is gone: a linear entry may be writable. The guest makes a writable
self-map of its L4 and, through it, writes its own page-table entries with plain stores
that Xen never sees -- here an L1 entry that maps another domain's frame, which it then
reads. XSA-182's result (there the hole was the update fast path, which let a read-only
linear entry become writable), by a different route; Xen refuses the entry with EINVAL
(linear.writable)."""

from __future__ import annotations

from hypervisor import rules
from hypervisor.abi import Mfn
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
    if t_mfn == c_mfn:
        return
    single = xen.config.linear_single_level
    if single and (c_pg.linear < 0 or pg.linear > 0):
        raise GuestError(rules.LINEAR_CHAIN, f"L{level} entry {e:#x} would make a chain")
    pg.count += 1
    pg.type_count += 1
    if single:
        c_pg.linear += 1
        pg.linear -= 1
