"""No devalidation on the last put: ``put_page_type`` only decrements the type count. A page
table whose last type reference goes (an L1 unpinned, an L2 unhooked from its L3) keeps
every reference its entries took: the frames it mapped stay referenced -- and writable
frames stay typed writable -- after nothing maps them any more. Nothing is refused; the
audit finds the leaked references (``general-count``, ``type-count``), and a frame the old
table mapped writable can no longer become a page table."""

from __future__ import annotations

from hypervisor.abi import Mfn
from hypervisor.mm.frames import PageInfo
from hypervisor.mm.state import XenState


def put_page_type(xen: XenState, mfn: Mfn, pg: PageInfo, container: PageInfo | None = None) -> None:
    if container is not None and container.type is pg.type and xen.config.linear_single_level:
        pg.linear += 1
        container.linear -= 1
    # BUG: the last reference of a validated page table must demote it first.
    pg.type_count -= 1
