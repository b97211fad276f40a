"""A process's VMAs as ranges (Linux's ``vm_area_struct`` list, xv6 has none).

A :class:`VmaMap` keeps non-overlapping ``[start, end)`` ranges of virtual page
numbers, sorted, each with its protection ("r" or "rw"); neighbours of the
same protection are merged. Every operation costs the number of ranges it
touches, never the number of pages: ``mmap`` of 2^35 pages is one range.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

import attrs

__all__ = ["Vma", "VmaMap"]


@attrs.frozen
class Vma:
    """Pages ``start .. end - 1`` (vpns), mapped with ``prot``."""

    start: int
    end: int
    prot: str


def _end(v: Vma) -> int:
    return v.end


@attrs.define
class VmaMap:
    """Sorted, non-overlapping, merged VMAs."""

    vmas: list[Vma] = attrs.Factory(list)

    def __iter__(self) -> Iterator[Vma]:
        return iter(self.vmas)

    def __len__(self) -> int:
        return len(self.vmas)

    def copy(self) -> VmaMap:
        return VmaMap(list(self.vmas))

    def pages(self) -> int:
        """How many pages the VMAs cover."""
        return sum(v.end - v.start for v in self.vmas)

    def _first(self, vpn: int) -> int:
        """Index of the first VMA ending after ``vpn``."""
        return bisect.bisect_right(self.vmas, vpn, key=_end)

    def find(self, vpn: int) -> str | None:
        """The protection of page ``vpn``, or None if no VMA covers it."""
        i = self._first(vpn)
        if i < len(self.vmas) and self.vmas[i].start <= vpn:
            return self.vmas[i].prot
        return None

    def overlapping(self, start: int, end: int) -> list[Vma]:
        """The VMAs that share a page with ``[start, end)``, in order."""
        out = []
        for v in self.vmas[self._first(start) :]:
            if v.start >= end:
                break
            out.append(v)
        return out

    def first_hole(self, start: int, end: int) -> int | None:
        """The first page of ``[start, end)`` no VMA covers (None: all covered)."""
        at = start
        for v in self.overlapping(start, end):
            if v.start > at:
                return at
            at = v.end
        return at if at < end else None

    def set(self, start: int, end: int, prot: str | None) -> None:
        """Make ``[start, end)`` one VMA of ``prot`` (None: unmap it), splitting
        the VMAs it cuts and merging equal neighbours."""
        i = self._first(start)
        j = i
        pieces: list[Vma] = []
        while j < len(self.vmas) and self.vmas[j].start < end:
            v = self.vmas[j]
            if v.start < start:
                pieces.append(Vma(v.start, start, v.prot))
            j += 1
        if prot is not None:
            pieces.append(Vma(start, end, prot))
        if j > i and self.vmas[j - 1].end > end:
            last = self.vmas[j - 1]
            pieces.append(Vma(end, last.end, last.prot))
        lo, hi = i, j
        if lo > 0 and pieces and self.vmas[lo - 1].end == pieces[0].start:
            lo -= 1
            pieces.insert(0, self.vmas[lo])
        if hi < len(self.vmas) and pieces and pieces[-1].end == self.vmas[hi].start:
            pieces.append(self.vmas[hi])
            hi += 1
        self.vmas[lo:hi] = _merged(pieces)


def _merged(pieces: list[Vma]) -> list[Vma]:
    """Adjacent pieces of the same protection joined."""
    out: list[Vma] = []
    for p in pieces:
        if out and out[-1].end == p.start and out[-1].prot == p.prot:
            out[-1] = Vma(out[-1].start, p.end, p.prot)
        else:
            out.append(p)
    return out
