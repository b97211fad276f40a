"""Every ``python`` block of each lesson page (and of AUTHORING.md) runs, top to bottom in
one namespace per page, as the brief asks of every code example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lessons.lab.lessons import LESSONS_DIR, all_lessons

BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
PAGES = [lesson.path / "index.md" for lesson in all_lessons()] + [LESSONS_DIR / "AUTHORING.md"]


def test_every_lesson_has_a_page() -> None:
    for lesson in all_lessons():
        assert (lesson.path / "index.md").is_file(), lesson.id


@pytest.mark.parametrize("page", PAGES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_page_examples_run(page: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = BLOCK.findall(page.read_text(encoding="utf-8"))
    assert blocks, f"{page} has no python example"
    namespace: dict[str, object] = {"__name__": f"page_{page.parent.name}"}
    for block in blocks:
        exec(compile(block, str(page), "exec"), namespace)


def test_a_hypervisor_lesson_page_lists_its_function_from_the_hypervisor_seam() -> None:
    from mkdocs_generate import functions_section

    text = functions_section(["hypervisor.mm.l1:get_page_from_l1e"])
    assert ">>> from hypervisor import steps" in text
    assert "(xen: 'XenState', e: 'int', l1_owner: 'PvDomain', pg_owner: 'PvDomain')" in text
