"""``present_guest_slots`` (the C-level scan that ``_promote``/``_demote``
walk) names exactly the present entries among ``guest_slots``, in order."""

from __future__ import annotations

from array import array

from hypothesis import given
from hypothesis import strategies as st

from hypervisor.mm.domain import PvDomain
from hypervisor.mm.frames import PageInfo, PageType
from hypervisor.mm.upper import guest_slots, present_guest_slots

TABLES = st.lists(st.integers(0, (1 << 64) - 1), min_size=512, max_size=512)
LAYOUTS = st.sampled_from(
    [(4, False, 64), (3, False, 64), (2, False, 64), (3, False, 32), (2, True, 32), (2, False, 32)]
)


@given(TABLES, LAYOUTS)
def test_present_guest_slots_are_the_present_entries_of_guest_slots(
    entries: list[int], layout: tuple[int, bool, int]
) -> None:
    level, xen_l2, width = layout
    words = memoryview(array("Q", entries)).cast("B").cast("Q")
    pg = PageInfo(0, type=PageType(level), pae_xen_l2=xen_l2)
    d = PvDomain(0, guest_width=width)
    expected = [slot for slot in guest_slots(level, pg, d) if entries[slot] & 1]
    assert present_guest_slots(words, level, pg, d) == expected
