"""Sparse machine memory.

A frame's 4 KiB exist only once something non-zero is written to it, and are
dropped again when a guest write leaves the frame all zeros, so a machine of
millions of frames costs memory only for the frames holding data. Page-table
entries are 64-bit little-endian words read and written in place: the page
walk reads the very bytes the guest wrote.
"""

from __future__ import annotations

from hypervisor.abi import PAGE_SIZE

__all__ = ["Memory", "ZERO_PAGE", "ZERO_WORDS"]

ZERO_PAGE = bytes(PAGE_SIZE)
ZERO_WORDS = memoryview(ZERO_PAGE).cast("Q")
"""A read-only all-zero frame, handed out for frames never written."""


class Memory:
    """``total_frames`` frames of 4 KiB, allocated on first write."""

    __slots__ = ("_pages", "_words", "total_frames")

    def __init__(self, total_frames: int) -> None:
        self.total_frames = total_frames
        self._pages: dict[int, bytearray] = {}
        self._words: dict[int, memoryview] = {}

    def is_ram(self, mfn: int) -> bool:
        """True if ``mfn`` names a frame of this machine's memory."""
        return 0 <= mfn < self.total_frames

    @property
    def frames_words(self) -> dict[int, memoryview]:
        """The materialised frames as word views, by mfn (read-only use: the
        page walk's fast path; absent frames read as :data:`ZERO_WORDS`)."""
        return self._words

    def words(self, mfn: int) -> memoryview:
        """The frame as 512 writable 64-bit words, materialising it if needed."""
        view = self._words.get(mfn)
        if view is None:
            page = bytearray(PAGE_SIZE)
            self._pages[mfn] = page
            view = self._words[mfn] = memoryview(page).cast("Q")
        return view

    def peek(self, mfn: int) -> memoryview:
        """The frame as 512 64-bit words for reading (shared zeros if never written)."""
        view = self._words.get(mfn)
        return ZERO_WORDS if view is None else view

    def page(self, mfn: int) -> bytearray:
        """The frame's bytes, writable, materialising it if needed."""
        self.words(mfn)
        return self._pages[mfn]

    def read(self, mfn: int, offset: int, n: int) -> bytes:
        """``n`` bytes of the frame from ``offset`` (never materialises it)."""
        page = self._pages.get(mfn)
        return ZERO_PAGE[offset : offset + n] if page is None else bytes(page[offset : offset + n])

    def write(self, mfn: int, offset: int, data: bytes) -> None:
        """Write ``data`` into the frame at ``offset``. Zeros written into a
        frame never written cost nothing, and a frame that ends up all zeros
        is forgotten: a zeroed page keeps no storage."""
        n = len(data)
        zeros = data == ZERO_PAGE if n == PAGE_SIZE else data.count(0) == n
        page = self._pages.get(mfn)
        if zeros:
            if page is not None:
                page[offset : offset + n] = data
                if page == ZERO_PAGE:
                    self.zero(mfn)
            return
        if page is not None:
            page[offset : offset + n] = data
        elif n == PAGE_SIZE:  # a whole page into a frame never written: the page is a copy
            page = self._pages[mfn] = bytearray(data)
            self._words[mfn] = memoryview(page).cast("Q")
        else:
            self.page(mfn)[offset : offset + n] = data

    def frame_bytes(self, mfn: int) -> bytes:
        """A copy of the frame's 4096 bytes."""
        page = self._pages.get(mfn)
        return bytes(PAGE_SIZE) if page is None else bytes(page)

    def zero(self, mfn: int) -> None:
        """Zero the frame (by forgetting it: absent frames read as zeros)."""
        self._pages.pop(mfn, None)
        self._words.pop(mfn, None)

    def copy(self, dst: int, src: int) -> None:
        """Copy frame ``src`` over frame ``dst``."""
        page = self._pages.get(src)
        if page is None:
            self.zero(dst)
        else:
            self.page(dst)[:] = page

    def __deepcopy__(self, memo: dict[int, object]) -> Memory:
        """A snapshot (memoryviews cannot be copied; the bytes can)."""
        clone = Memory(self.total_frames)
        for mfn, page in self._pages.items():
            clone.page(mfn)[:] = page
        memo[id(self)] = clone
        return clone
