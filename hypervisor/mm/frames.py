"""Per-frame metadata: Xen's ``struct page_info``, one per frame in use.

The frame table is sparse like the memory: a frame that was never handed out
has no entry and reads as free. Two counts matter (see mm.c's header comment):

* ``count`` -- the general reference count: every use that must keep the frame
  from being freed (the owner's allocation, each mapping, each parent entry,
  each pin, each base pointer);
* ``type_count`` -- how many of those uses need the frame *in its current
  type*. A frame has one type at a time (an L1..L4 page table, a descriptor
  page, or writable memory) and the type may change only while the type count
  is 0. That single rule is why a frame can never be both a page table and
  writable at the same time.
"""

from __future__ import annotations

import enum

import attrs

from hypervisor.abi import hex_repr

__all__ = ["FrameInfo", "PageInfo", "PageType"]


class PageType(enum.IntEnum):
    """A frame's type (``PGT_*`` in Xen, values as in ``asm/mm.h``)."""

    NONE = 0
    L1 = 1
    L2 = 2
    L3 = 3
    L4 = 4
    SEG_DESC = 5
    SHARED = 6
    WRITABLE = 7

    @property
    def is_pagetable(self) -> bool:
        return 1 <= self <= 4


@attrs.define(eq=False, slots=True)
class PageInfo:
    """The mutable metadata of one frame (``struct page_info``)."""

    owner: int | None
    """domid, ``DOMID_IO``, ``DOMID_XEN``, or None when free."""
    count: int = 0
    """General references, ``PGC_allocated``'s included."""
    type: PageType = PageType.NONE
    type_count: int = 0
    validated: bool = False
    pinned: bool = False
    allocated: bool = False
    """``PGC_allocated``: on the owner's allocation list (holds one general ref)."""
    xen_heap: bool = False
    """A Xen-heap page shared with its owner (shared_info): one permanent
    general reference and one permanent writable type reference."""
    linear: int = 0
    """``linear_pt_count``: +n = this table has n linear entries to other tables;
    -n = n same-level tables reference this one."""
    pae_xen_l2: bool = False
    """``PGT_pae_xen_l2``: the L2 in slot 3 of a 32-bit guest's L3."""


@attrs.frozen
class FrameInfo:
    """A snapshot of one frame's metadata, for tests, pictures and graders."""

    mfn: int = attrs.field(repr=hex_repr)
    owner: int | None
    type: PageType
    type_count: int
    count: int
    validated: bool
    pinned: bool
    allocated: bool = False
    linear: int = 0
    pae_xen_l2: bool = False

    @classmethod
    def from_page(cls, mfn: int, pg: PageInfo | None) -> FrameInfo:
        if pg is None:
            return cls(mfn, None, PageType.NONE, 0, 0, False, False)
        return cls(
            mfn,
            pg.owner,
            pg.type,
            pg.type_count,
            pg.count,
            pg.validated,
            pg.pinned,
            pg.allocated,
            pg.linear,
            pg.pae_xen_l2,
        )
