"""Sparse machine memory: what a write leaves, read back through bytes and
through the word view the page walk uses."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hypervisor.hw.memory import ZERO_WORDS, Memory

PAGE = 4096


@given(st.binary(min_size=1, max_size=64).filter(any), st.integers(0, PAGE - 64))
def test_a_whole_page_written_to_a_fresh_frame_reads_back_as_bytes_and_words(
    data: bytes, at: int
) -> None:
    page = bytes(at) + data + bytes(PAGE - at - len(data))
    mem = Memory(16)
    mem.write(3, 0, page)
    words = mem.frames_words[3]
    assert (mem.frame_bytes(3), words.tobytes()) == (page, page)


def test_a_whole_page_write_keeps_no_reference_to_the_written_bytes() -> None:
    mem = Memory(16)
    data = bytearray(b"\x05" * PAGE)
    mem.write(2, 0, bytes(data))
    mem.words(2)[0] = 0x1122
    assert mem.read(2, 0, 2) == b"\x22\x11"


def test_zeroing_a_written_page_forgets_it() -> None:
    mem = Memory(16)
    mem.write(4, 0, b"\x09" * PAGE)
    mem.write(4, 0, bytes(PAGE))
    assert mem.peek(4) is ZERO_WORDS
