"""The domain builder sets the bootstrap tables' state directly, as Xen's
dom0 builder does (``mark_pv_pt_pages_rdonly``). That state must be exactly
what validating the same tree through Xen's own rules gives: a pin of the top
level (libxenguest's ``bootlate_pv`` does that for a domU) and the base
pointer. Each test builds a domain, rebuilds the same frames' pre-validation
state on a twin machine (fresh records, Xen's slots empty, PAE L3 entries
unadjusted), validates the twin's top through ``get_page_type`` twice, and
compares every frame and every table byte."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hypervisor import Hypervisor, abi, steps
from hypervisor.builder import _leaves
from hypervisor.mm.adjust import unadjust_guest_l3e
from hypervisor.mm.frames import FrameInfo, PageInfo, PageType
from hypervisor.mm.refs import get_page, get_page_type
from hypervisor.mm.state import XenState
from hypervisor.mm.upper import PAE_FIRST_XEN_L2_SLOT, XEN_L4_SLOTS, promote_l2_table

P, RW = abi._PAGE_PRESENT, abi._PAGE_RW
LAYOUTS = [(64, 2048), (32, 2048), (64, 70), (32, 600)]
"""(guest width, nr_pages): the course's boot and small domains."""
CROSSING = (64, 263_000)
"""A region that needs a second L2: 64-bit, crossing a 1 GiB boundary."""


def _built(width: int, nr_pages: int) -> tuple[Hypervisor, list[int]]:
    xen = Hypervisor(total_frames=nr_pages + 4096)
    dom = xen.create_domain(nr_pages=nr_pages, guest_width=width)
    return xen, list(dom.initial_p2m)


def _validated_by_pin(width: int, nr_pages: int) -> Hypervisor:
    """The same domain, its bootstrap state then reached by validation."""
    xen, p2m = _built(width, nr_pages)
    st: XenState = xen.state
    d = st.domains[0]
    info = xen.domain(0).start_info
    pt_pfn = (info.pt_base - info.virt_base) >> abi.PAGE_SHIFT
    tables = p2m[pt_pfn : pt_pfn + info.nr_pt_frames]
    for mfn in p2m:  # allocated only: validation takes the mappings' references
        st.frames[abi.Mfn(mfn)] = PageInfo(d.domid, count=1, allocated=True)
    top = tables[0]
    words = st.mem.words(top)
    if width == 64:
        for slot in XEN_L4_SLOTS:
            words[slot] = 0
    else:
        for slot in range(4):
            words[slot] = unadjust_guest_l3e(words[slot], d)
        xen_l2 = st.mem.words(tables[1])
        for slot in range(PAE_FIRST_XEN_L2_SLOT, 512):
            xen_l2[slot] = 0
    pg = st.frames[abi.Mfn(top)]
    for _ in range(2):  # MMUEXT_PIN_Ln_TABLE, then the base pointer
        assert get_page(pg, d.domid)
        get_page_type(st, abi.Mfn(top), pg, PageType.L3 if width == 32 else PageType.L4)
    pg.pinned = True
    return xen


def _frames(xen: Hypervisor) -> dict[int, FrameInfo]:
    return {mfn: xen.frame(mfn) for mfn in xen.state.frames}


@pytest.mark.parametrize(("width", "nr_pages"), [*LAYOUTS, CROSSING])
def test_builder_frame_table_equals_validating_the_tree_by_pin(width: int, nr_pages: int) -> None:
    built, _ = _built(width, nr_pages)
    assert _frames(built) == _frames(_validated_by_pin(width, nr_pages))


@pytest.mark.parametrize(("width", "nr_pages"), LAYOUTS)
def test_builder_tables_hold_the_entries_validation_stores(width: int, nr_pages: int) -> None:
    built, p2m = _built(width, nr_pages)
    twin = _validated_by_pin(width, nr_pages)
    info = built.domain(0).start_info
    pt_pfn = (info.pt_base - info.virt_base) >> abi.PAGE_SHIFT
    for mfn in p2m[pt_pfn : pt_pfn + info.nr_pt_frames]:
        assert built.state.mem.frame_bytes(mfn) == twin.state.mem.frame_bytes(mfn), hex(mfn)


@pytest.mark.parametrize(("width", "nr_pages"), LAYOUTS)
def test_builder_state_passes_the_audit(width: int, nr_pages: int) -> None:
    built, _ = _built(width, nr_pages)
    assert built.audit() == []


def test_builder_runs_no_validation() -> None:
    """Xen's builder types the tables itself: no ``PROMOTE`` runs at boot."""
    calls: list[str] = []

    def counting(xen: XenState, mfn: abi.Mfn, pg: PageInfo) -> None:
        calls.append(hex(mfn))
        raise AssertionError("the builder validated a table")

    with steps.override(promote_l2_table, counting):
        _built(64, 2048)
    assert calls == []


@given(
    st.lists(st.integers(0, (1 << 40) - 1), min_size=1, max_size=600),
    st.sampled_from([P | RW | abi._PAGE_ACCESSED, 0x10000000000067, 0x21, (1 << 63) | 0xFFF]),
)
def test_builder_leaves_are_make_pte_of_each_frame(mfns: list[int], prot: int) -> None:
    """The bootstrap L1 entries, computed on all frames at once, equal
    ``make_pte`` of each frame (no lane's bits cross into the next)."""
    leaves = _leaves([abi.Mfn(m) for m in mfns], prot)
    assert list(leaves) == [abi.make_pte(abi.Mfn(m), prot) for m in mfns]
