"""VMAs as ranges: the same answers as a page-by-page dict, at the cost of ranges."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from minikern.vma import Vma, VmaMap

Op = tuple[int, int, str | None]
ops = st.lists(
    st.tuples(st.integers(0, 40), st.integers(1, 12), st.sampled_from(["r", "rw", None])).map(
        lambda t: (t[0], t[0] + t[1], t[2])
    ),
    max_size=25,
)


def _apply(steps: list[Op]) -> tuple[VmaMap, dict[int, str]]:
    vmas, model = VmaMap(), {}
    for start, end, prot in steps:
        vmas.set(start, end, prot)
        for vpn in range(start, end):
            if prot is None:
                model.pop(vpn, None)
            else:
                model[vpn] = prot
    return vmas, model


@given(ops)
def test_find_agrees_with_a_page_by_page_model(steps: list[Op]) -> None:
    vmas, model = _apply(steps)
    assert {vpn: vmas.find(vpn) for vpn in range(60)} == {vpn: model.get(vpn) for vpn in range(60)}


@given(ops)
def test_ranges_stay_sorted_disjoint_and_merged(steps: list[Op]) -> None:
    vmas, _ = _apply(steps)
    for a, b in zip(vmas.vmas, vmas.vmas[1:], strict=False):
        assert a.start < a.end <= b.start
        assert a.end < b.start or a.prot != b.prot


@given(ops, st.integers(0, 50), st.integers(1, 15))
def test_first_hole_is_the_first_unmapped_page(steps: list[Op], start: int, n: int) -> None:
    vmas, model = _apply(steps)
    holes = [vpn for vpn in range(start, start + n) if vpn not in model]
    assert vmas.first_hole(start, start + n) == (holes[0] if holes else None)


def test_a_huge_range_is_one_vma() -> None:
    vmas = VmaMap()
    vmas.set(0, 1 << 35, "rw")
    vmas.set(1 << 20, (1 << 20) + 1, "r")
    assert vmas.vmas == [
        Vma(0, 1 << 20, "rw"),
        Vma(1 << 20, (1 << 20) + 1, "r"),
        Vma((1 << 20) + 1, 1 << 35, "rw"),
    ]
    assert vmas.pages() == 1 << 35
