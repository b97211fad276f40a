"""Golden tests of the page-table tree."""

from __future__ import annotations

from collections.abc import Callable

from renderkit import check_golden

from hypervisor import Domain, Hypervisor, render
from hypervisor.render import demo, va_range


def test_tree_of_a_small_64bit_domain_shows_the_bootstrap_tables(
    tiny: tuple[Hypervisor, Domain], draw: Callable[..., str]
) -> None:
    xen, dom = tiny

    text = draw(render.page_table_tree(xen, dom.vcpus[0].cr3))

    check_golden("tree_bootstrap_64", text)


def test_tree_of_a_32bit_pae_domain_has_three_levels_and_xen_l2_slots(
    draw: Callable[..., str],
) -> None:
    xen = Hypervisor(total_frames=320)
    dom = xen.create_domain(nr_pages=16, guest_width=32)

    text = draw(render.page_table_tree(xen, dom.vcpus[0].cr3, levels=3))

    check_golden("tree_bootstrap_pae", text)


def test_tree_of_a_user_space_built_by_the_demo_recipe(draw: Callable[..., str]) -> None:
    xen = Hypervisor(total_frames=320)
    dom = xen.create_domain(nr_pages=16)
    vcpu = dom.vcpus[0]
    space = demo.take_frames(dom)
    demo.zero_frames(dom, vcpu, space)
    demo.fill_tables(dom, vcpu, space)
    demo.make_read_only(dom, vcpu, space)
    demo.pin(vcpu, 4, space.l4[1])
    assert xen.audit() == []

    text = draw(render.page_table_tree(xen, space.l4[1]))

    check_golden("tree_user_space", text)


def test_tree_elides_entries_beyond_max_children(draw: Callable[..., str]) -> None:
    xen = Hypervisor(total_frames=1500)
    dom = xen.create_domain(nr_pages=1100)  # three L1s under one L2

    text = draw(render.page_table_tree(xen, dom.vcpus[0].cr3, max_children=2))

    assert "[1] 0xffffffff80200000-0xffffffff803fffff -> L1" in text
    assert "[2] 0xffffffff80400000" not in text
    assert "… 1 more present entry" in text


def test_tree_of_a_frame_that_is_not_a_table_says_so(
    tiny: tuple[Hypervisor, Domain], draw: Callable[..., str]
) -> None:
    xen, dom = tiny

    text = draw(render.page_table_tree(xen, dom.initial_p2m[-1]))

    assert text == "mfn 0x11f is not a live L4 table (writable)\n"


def test_va_range_of_l4_slot_256_is_sign_extended() -> None:
    assert va_range(0, 4, 256, 4) == (0xFFFF800000000000, 0xFFFF807FFFFFFFFF)


def test_va_range_of_pae_l3_slot_3_is_the_top_gigabyte() -> None:
    assert va_range(0, 3, 3, 3) == (0xC0000000, 0xFFFFFFFF)
