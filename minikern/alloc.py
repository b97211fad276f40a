"""The frame allocator (xv6 ``kalloc.c``): a free list of pseudo-physical frames.

Boot hands it every pfn the domain builder left free (zero-filled). Freed
frames come back junk-filled by ``recipe.free_frame``, so a dangling use shows.
Running dry is the caller's problem -- :class:`OutOfMemory`, never a panic --
and callers check :meth:`FrameAllocator.ensure` before changing anything.
"""

from __future__ import annotations

from typing import cast

import attrs

from hypervisor.abi import Pfn
from minikern.errors import OutOfMemory, panic

__all__ = ["FrameAllocator"]


@attrs.define(eq=False)
class FrameAllocator:
    """Free pfns, handed out last-freed first (a stack, like xv6's list)."""

    free_list: list[Pfn]
    in_use: set[Pfn] = attrs.Factory(set)

    @classmethod
    def from_range(cls, first: int, end: int) -> FrameAllocator:
        """Every pfn in ``first .. end - 1`` free, lowest handed out first."""
        return cls(cast(list[Pfn], list(range(end - 1, first - 1, -1))))

    def free_count(self) -> int:
        return len(self.free_list)

    def ensure(self, n: int) -> None:
        """Raise OutOfMemory unless ``n`` frames can be allocated right now."""
        if n > len(self.free_list):
            raise OutOfMemory(n, len(self.free_list))

    def alloc(self) -> Pfn:
        """Take one free pfn (its contents are zero or junk: zero it yourself)."""
        self.ensure(1)
        pfn = self.free_list.pop()
        self.in_use.add(pfn)
        return pfn

    def release(self, pfn: Pfn) -> None:
        """Give ``pfn`` back. Freeing a frame twice is a kernel bug."""
        if pfn not in self.in_use:
            raise panic(f"kfree: pfn {pfn:#x} is not allocated")
        self.in_use.remove(pfn)
        self.free_list.append(pfn)
