"""Per-frame metadata: Xen's ``struct page_info``, one per frame in use.

The frame table (:class:`FrameTable`) is sparse like the memory: a frame that
was never handed out has no entry and reads as free. Two counts matter (see mm.c's header comment):

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

import copy
import enum
from _collections_abc import dict_items, dict_keys, dict_values
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar, overload

import attrs

from hypervisor.abi import Mfn, hex_repr

__all__ = ["FrameInfo", "FrameTable", "PageInfo", "PageType"]


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


T = TypeVar("T")
PageInfoArgs = tuple[int | None, int, PageType, int, bool, bool, bool]
"""``PageInfo``'s first fields, positionally: owner, count, type, type_count,
validated, pinned, allocated."""


class FrameTable(dict[Mfn, PageInfo]):
    """Xen's frame table: mfn -> :class:`PageInfo` of every frame in use.

    Frames handed out in bulk (:meth:`add_bulk`: a new domain's thousands of
    frames) get their record when first looked at -- by any lookup,
    membership test or iteration -- so a domain's start costs no Python step
    per frame it never touches. Every read behaves as if all the records
    existed: ``len``, ``in``, ``get`` and ``[]`` see the pending ones, and
    iteration makes them all first.
    """

    __slots__ = ("_bulk",)

    def __init__(self) -> None:
        super().__init__()
        self._bulk: dict[Mfn, PageInfoArgs] = {}
        """mfn -> the arguments of its record, not made yet."""

    @property
    def made(self) -> Callable[[Mfn], PageInfo | None]:
        """This table's ``dict.get`` (C speed): a record already made, else
        None. The fast paths of hot loops look frames up with it, and send an
        entry whose frame reads None -- no record, or one not made yet -- down
        the general path, which looks again with :meth:`get`."""
        return dict.get.__get__(self)  # type: ignore[no-any-return]

    def add_bulk(self, mfns: Iterable[Mfn], args: PageInfoArgs) -> None:
        """``mfns`` are in use from now on, each as ``PageInfo(*args)``."""
        self._bulk.update(dict.fromkeys(mfns, args))

    def _make_all(self) -> None:
        """Make every pending record (before anything sees the whole table)."""
        if self._bulk:
            for mfn, args in self._bulk.items():
                dict.__setitem__(self, mfn, PageInfo(*args))
            self._bulk.clear()

    def __missing__(self, mfn: Mfn) -> PageInfo:
        pg = PageInfo(*self._bulk.pop(mfn))  # KeyError: no such frame
        dict.__setitem__(self, mfn, pg)
        return pg

    @overload  # type: ignore[override]
    def get(self, mfn: Mfn, /) -> PageInfo | None: ...
    @overload
    def get(self, mfn: Mfn, default: PageInfo | T, /) -> PageInfo | T: ...
    def get(self, mfn: Mfn, default: Any = None, /) -> Any:
        try:
            return self[mfn]
        except KeyError:
            return default

    def __contains__(self, mfn: object) -> bool:
        return dict.__contains__(self, mfn) or mfn in self._bulk

    def __len__(self) -> int:
        return dict.__len__(self) + len(self._bulk)

    def __setitem__(self, mfn: Mfn, pg: PageInfo) -> None:
        self._bulk.pop(mfn, None)
        dict.__setitem__(self, mfn, pg)

    def __delitem__(self, mfn: Mfn) -> None:
        if self._bulk.pop(mfn, None) is None:
            dict.__delitem__(self, mfn)

    def pop(self, mfn: Mfn, *default: Any) -> Any:
        if mfn in self._bulk:
            self[mfn]
        return dict.pop(self, mfn, *default)

    def setdefault(self, mfn: Mfn, default: PageInfo) -> PageInfo:
        if mfn in self:
            return self[mfn]
        self[mfn] = default
        return default

    def __iter__(self) -> Iterator[Mfn]:
        self._make_all()
        return dict.__iter__(self)

    def __reversed__(self) -> Iterator[Mfn]:
        self._make_all()
        return dict.__reversed__(self)

    def keys(self) -> dict_keys[Mfn, PageInfo]:
        self._make_all()
        return dict.keys(self)

    def values(self) -> dict_values[Mfn, PageInfo]:
        self._make_all()
        return dict.values(self)

    def items(self) -> dict_items[Mfn, PageInfo]:
        self._make_all()
        return dict.items(self)

    def popitem(self) -> tuple[Mfn, PageInfo]:
        self._make_all()
        return dict.popitem(self)

    def clear(self) -> None:
        self._bulk.clear()
        dict.clear(self)

    def __eq__(self, other: object) -> bool:
        self._make_all()
        if isinstance(other, FrameTable):
            other._make_all()
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None

    def __repr__(self) -> str:
        self._make_all()
        return f"FrameTable({dict.__repr__(self)})"

    def copy(self) -> FrameTable:
        """A table with the same records (shared, as ``dict.copy``)."""
        self._make_all()
        new = FrameTable()
        dict.update(new, self)
        return new

    def __deepcopy__(self, memo: dict[int, object]) -> FrameTable:
        self._make_all()
        new = FrameTable()
        memo[id(self)] = new
        for mfn, pg in dict.items(self):
            dict.__setitem__(new, mfn, copy.deepcopy(pg, memo))
        return new

    def __reduce__(self) -> tuple[Any, ...]:
        self._make_all()
        return (FrameTable, (), None, None, iter(dict.items(self)))

    def __or__(self, other: Any) -> Any:
        self._make_all()
        return dict(dict.items(self)) | other

    def __ror__(self, other: Any) -> Any:
        self._make_all()
        return other | dict(dict.items(self))

    def __ior__(self, other: Any) -> FrameTable:  # type: ignore[override]
        self.update(other)
        return self

    def update(self, *args: Any, **kwargs: Any) -> None:
        for mfn, pg in dict(*args, **kwargs).items():
            self[mfn] = pg


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
