"""Helpers for the golden-text tests of ``hypervisor.render``."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console, RenderableType

from hypervisor import Domain, abi

P, RW, US, A = abi._PAGE_PRESENT, abi._PAGE_RW, abi._PAGE_USER, abi._PAGE_ACCESSED
GOLDEN_DIR = Path(__file__).parent / "golden"


def draw_text(renderable: RenderableType, width: int = 100) -> str:
    """The renderable as plain text, exactly as a 100-column terminal shows it."""
    console = Console(width=width, color_system=None, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def first_free_pfn(dom: Domain) -> int:
    """The first pfn the builder left free for the guest."""
    si = dom.start_info
    return (si.pt_base - si.virt_base) // abi.PAGE_SIZE + si.nr_pt_frames


def kernel_va(dom: Domain, pfn: int) -> int:
    """Where the builder mapped ``pfn``."""
    return dom.start_info.virt_base + pfn * abi.PAGE_SIZE


def check_golden(name: str, text: str) -> None:
    """``text`` must equal ``golden/<name>.txt`` byte for byte. A missing file
    is written from ``text`` and the test fails, so a golden is only ever
    created on purpose: delete it, rerun, review the new file, commit it."""
    path = GOLDEN_DIR / f"{name}.txt"
    if not path.exists():
        GOLDEN_DIR.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        pytest.fail(f"wrote missing golden {path.name}; review it and rerun")
    assert text == path.read_text(encoding="utf-8")
