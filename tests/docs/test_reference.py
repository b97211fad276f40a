"""The built site's reference pages hold what hints, feedback and error
messages link to: every rule by id, every hypercall and command, every lesson."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from site_builder import ROOT, ensure_built

from hypervisor import abi
from hypervisor.hypercalls import TABLE
from hypervisor.rules import RULES
from lessons.lab.lessons import all_lessons


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.ids.update(v for k, v in attrs if k == "id" and v)


def ids_in(page: Path) -> set[str]:
    parser = _Ids()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.ids


@pytest.fixture(scope="module")
def site() -> Path:
    return ensure_built()


def test_every_rule_has_an_element_whose_id_is_the_rule_id(site: Path) -> None:
    missing = set(RULES) - ids_in(site / "reference" / "rules.html")
    assert missing == set()


def test_every_hypercall_and_mmuext_command_is_on_the_hypercalls_page(site: Path) -> None:
    text = (site / "reference" / "hypercalls.html").read_text(encoding="utf-8")
    names = [f"HYPERVISOR_{spec.name}" for spec in TABLE.values()]
    names += [c.name for c in abi.MmuExtCmd] + [c.name for c in abi.MmuCmd]
    assert [n for n in names if n not in text] == []


def test_every_lesson_has_a_page_named_by_its_id(site: Path) -> None:
    ids = [p.parent.name for p in (ROOT / "lessons").glob("*/lesson.toml")]
    assert [i for i in ids if not (site / "lessons" / f"{i}.html").is_file()] == []


def test_no_page_refers_to_another_host(site: Path) -> None:
    # src= and href= of scripts, styles, images and fonts: nothing outside the site.
    pattern = re.compile(r"""<(?:script|link|img)[^>]+(?:src|href)=["'](https?:)?//""")
    offenders = [
        str(p.relative_to(site)) for p in site.rglob("*.html") if pattern.search(p.read_text())
    ]
    assert offenders == []


def test_pictures_fetch_no_web_font(site: Path) -> None:
    pictures = list((site / "_images").glob("*.svg"))
    assert pictures, "the site has no pictures"
    assert [p.name for p in pictures if "@font-face" in p.read_text()] == []


def test_every_lesson_page_shows_each_hint_of_its_lesson_as_a_dropdown(site: Path) -> None:
    dropdown = re.compile(r'<details class="[^"]*\bsd-dropdown\b[^"]*\bmk-hint\b[^"]*">\s*<summary')
    wrong: dict[str, tuple[int, int]] = {}
    for lesson in all_lessons():
        html = (site / "lessons" / f"{lesson.id}.html").read_text(encoding="utf-8")
        shown, hints = len(dropdown.findall(html)), sum(map(len, lesson.hints.values()))
        if shown != hints:
            wrong[lesson.id] = (shown, hints)
    assert wrong == {}
