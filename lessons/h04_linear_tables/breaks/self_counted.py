"""A self-map is counted like any other linear entry: the table takes a general and a
type reference on itself. It then holds itself alive: unpinned and no longer anyone's
base, its type count never reaches 0, it is never devalidated, and its frame can never be
anything else again. Xen takes nothing for an entry that points at its own table; the
counts diverge at the first self-map."""

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
    single = xen.config.linear_single_level
    if t_mfn != c_mfn and single and (c_pg.linear < 0 or pg.linear > 0):
        raise GuestError(rules.LINEAR_CHAIN, f"L{level} entry {e:#x} would make a chain")
    pg.count += 1
    pg.type_count += 1
    if t_mfn != c_mfn and single:
        c_pg.linear += 1
        pg.linear -= 1
