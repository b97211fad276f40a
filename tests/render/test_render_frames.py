"""Golden tests of the frame table and the memory map."""

from __future__ import annotations

from collections.abc import Callable

from renderkit import P, check_golden, first_free_pfn, kernel_va
from rich.text import Text

from hypervisor import Domain, Hypervisor, abi, render
from hypervisor.render.frames import memory_map


def pin_fresh_l1(xen: Hypervisor, dom: Domain) -> int:
    """Make the first free page read-only and pin it as an L1; its mfn."""
    pfn = first_free_pfn(dom)
    mfn = dom.initial_p2m[pfn]
    vcpu = dom.vcpus[0]
    vcpu.update_va_mapping(kernel_va(dom, pfn), mfn << 12 | P | abi._PAGE_ACCESSED)
    vcpu.mmuext_op([abi.MmuExtOp(abi.MMUEXT_PIN_L1_TABLE, mfn)])
    return mfn


def test_frame_table_after_pinning_an_l1_lists_it_pinned_beside_the_bootstrap_tables(
    tiny: tuple[Hypervisor, Domain], draw: Callable[..., str]
) -> None:
    xen, dom = tiny
    pin_fresh_l1(xen, dom)
    assert xen.audit() == []

    text = draw(render.frame_table(xen))

    check_golden("frame_table_after_pin_l1", text)


def test_frame_table_of_explicit_mfns_shows_io_xen_data_and_free_frames(
    tiny: tuple[Hypervisor, Domain], draw: Callable[..., str]
) -> None:
    xen, _ = tiny

    text = draw(render.frame_table(xen, [0x10, 0x100, 0x116, 0x13F]))

    check_golden("frame_table_explicit_mfns", text)


def test_frame_table_filtered_by_domain_lists_only_that_domains_frames(
    draw: Callable[..., str],
) -> None:
    xen = Hypervisor(total_frames=400)
    xen.create_domain(nr_pages=16)
    second = xen.create_domain(nr_pages=16)

    text = draw(render.frame_table(xen, domid=second.domid))

    rows = [line for line in text.splitlines() if line.startswith("│ 0x")]
    assert len(rows) == 4
    assert all("│ d1 " in row for row in rows)


def test_memory_map_of_a_tiny_machine_shows_io_xen_and_two_domains(
    draw: Callable[..., str],
) -> None:
    xen = Hypervisor(total_frames=320)
    xen.create_domain(nr_pages=12)
    xen.create_domain(nr_pages=12, guest_width=32)
    assert xen.audit() == []

    text = draw(render.memory_map(xen, width=32))

    check_golden("memory_map_two_domains", text)


def test_memory_map_draws_a_pinned_table_reversed(tiny: tuple[Hypervisor, Domain]) -> None:
    xen, dom = tiny
    mfn = pin_fresh_l1(xen, dom)

    grid = memory_map(xen, width=32).renderables[1]

    assert isinstance(grid, Text)
    row, col = divmod(mfn, 32)
    offset = row * (len("0x000 ") + 32 + 1) + len("0x000 ") + col
    assert grid.plain[offset] == "1"
    styles = [str(span.style) for span in grid.spans if span.start == offset]
    assert any("reverse" in s for s in styles)


def test_memory_map_of_a_4m_frame_machine_groups_frames_into_32_rows(
    draw: Callable[..., str],
) -> None:
    xen = Hypervisor(total_frames=4 * 1024 * 1024)
    xen.create_domain(nr_pages=64)

    text = draw(render.memory_map(xen))

    lines = text.splitlines()
    assert lines[0] == (
        "memory map: 4194304 frames, 1 glyph = 2048 frames (the kind most of them in use have)"
    )
    assert lines[1] == "0x000000 i" + "." * 63
    assert len([line for line in lines if line.startswith("0x")]) == 32
    assert "a d0 memory (61)" in text
