"""The built site in a real browser: headless Chromium (Debian's package) driven
by Playwright. Without Chromium these tests are skipped.

Starting Python in a page (Pyodide) takes seconds, so the reader's whole path
(click Run, wait for the output, compare it with the page, no request leaves
127.0.0.1, open a hint, screenshot in ``docs/_build/screenshots/``) is followed
on a few representative pages: the start page and the first lesson of each
track. Every example of every page still runs in the browser: one page's
runtime runs all of them, each page in a namespace of its own, as its Run
buttons would. The hint dropdowns of the other pages are checked in the HTML.

All tests of this module run on one worker (``conftest.py``), with one Chromium."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from site_builder import ROOT, ensure_built

from lessons.lab.lessons import Lesson, all_lessons
from minikern.cli.docs import make_server

CHROMIUM = Path(
    os.environ.get("MINIKERN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
)
"""Debian's Chromium (``MINIKERN_CHROMIUM`` names another binary)."""
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
RUN_TIMEOUT_MS = 120_000
DONE = "['done', 'differs', 'error'].includes(document.querySelector('.mk-output').dataset.state)"

if not CHROMIUM.exists():
    pytest.skip(
        f"no Chromium at {CHROMIUM}: `apt-get install -y chromium` runs the browser tests",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing")


def first_of_each_track() -> list[Lesson]:
    firsts: dict[str, Lesson] = {}
    for lesson in all_lessons():
        firsts.setdefault(lesson.track, lesson)
    return list(firsts.values())


LESSON_PAGES = [f"lessons/{lesson.id}" for lesson in first_of_each_track()]
PAGES = ["start", *LESSON_PAGES]
"""The pages followed click by click: the start page, the first lesson of each track."""
SHOTS = ROOT / "docs" / "_build" / "screenshots"

RUN_EVERY_PAGE = """async (urls) => {
  const rt = await window.mkRunner.runtime();
  const out = [];
  for (const url of urls) {
    const html = await (await fetch(url)).text();
    const doc = new DOMParser().parseFromString(html, "text/html");
    const namespace = rt.pyodide.globals.get("dict")();
    namespace.set("__name__", "__main__");
    for (const source of window.mkRunner.sources(doc)) {
      const got = rt.mod.run_example(source, namespace);
      out.push([url, source, got, rt.mod.matches_page(source, got)]);
    }
    namespace.destroy();
  }
  return out;
}"""
"""Run every example of each page (fetched, found as its Run buttons find them) in
this page's runtime: ``[url, source, output, matches the page]`` per example."""


@pytest.fixture(scope="module")
def site() -> Path:
    return ensure_built()


@pytest.fixture(scope="module")
def origin(site: Path) -> Iterator[str]:
    """The built site (built now if stale), served on 127.0.0.1."""
    server = make_server(site, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium with a fresh profile for the module."""
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=ARGS,
            viewport={"width": 1200, "height": 900},
        )
        yield context
        context.close()


def open_page(browser: Any, url: str, requests: list[str]) -> Any:
    page = browser.new_page()
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url)
    return page


def local(url: str, origin: str) -> bool:
    return url.startswith((origin + "/", "data:", "blob:"))


@attrs.frozen
class Ran:
    """A page whose first example was clicked: seconds from the click to its output,
    and every request the page made."""

    page: Any
    seconds: float
    requests: list[str]


@pytest.fixture(scope="module")
def run_first(browser: Any, origin: str) -> Callable[[str], Ran]:
    """``run_first(path)``: open the page, click its first Run button, wait for the
    output. Done once per page: later calls get the same page (and its runtime)."""
    done: dict[str, Ran] = {}

    def run(path: str) -> Ran:
        if path not in done:
            requests: list[str] = []
            page = open_page(browser, f"{origin}/{path}.html", requests)
            button = page.get_by_role("button", name=re.compile("Run")).first
            assert button.is_visible(), f"{path}: no example with a Run button"
            started = time.perf_counter()
            button.click()
            page.wait_for_function(DONE, timeout=RUN_TIMEOUT_MS)
            done[path] = Ran(page, time.perf_counter() - started, requests)
        return done[path]

    return run


@pytest.mark.parametrize("path", PAGES)
def test_first_example_runs_in_the_browser_with_the_output_the_page_shows(
    run_first: Callable[[str], Ran], origin: str, path: str
) -> None:
    from pyrunner import matches_page

    ran = run_first(path)
    output = ran.page.locator(".mk-output").first
    state = output.get_attribute("data-state")
    got = output.locator(".mk-result").inner_text()
    source = ran.page.evaluate("window.mkRunner.blocks[0].source")
    status = output.locator(".mk-status").inner_text()
    assert state == "done", f"{path}: {status}\n{got}"
    assert matches_page(source, got + ("" if got.endswith("\n") else "\n"))
    print(f"{path}: first example ran {ran.seconds:.1f}s after the click")
    strays = [u for u in ran.requests if not local(u, origin)]
    assert strays == [], f"{path}: requests left 127.0.0.1: {strays}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    ran.page.screenshot(path=str(SHOTS / f"{path.replace('/', '_')}.png"), full_page=False)


@pytest.mark.parametrize("path", LESSON_PAGES)
def test_a_hint_dropdown_opens(browser: Any, origin: str, path: str) -> None:
    requests: list[str] = []
    page = open_page(browser, f"{origin}/{path}.html", requests)
    hints = page.locator("details.sd-dropdown")
    if hints.count() == 0:
        pytest.skip(f"{path} has no hint dropdown (its lesson.toml has no [hints])")
    hint = hints.first
    hint.locator("summary").click()
    assert hint.get_attribute("open") is not None
    assert [u for u in requests if not local(u, origin)] == []
    page.close()


@pytest.fixture(scope="module")
def every_example(
    run_first: Callable[[str], Ran], origin: str, site: Path
) -> list[tuple[str, str, str, bool]]:
    """``(page, source, output, matches the page)`` of every example of every page,
    run in the browser by the start page's runtime."""
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    urls = [f"{origin}/{p}" for p in pages if not p.startswith("_")]
    results = run_first("start").page.evaluate(RUN_EVERY_PAGE, urls)
    return [(url.removeprefix(origin + "/"), src, got, ok) for url, src, got, ok in results]


def test_every_example_of_every_page_runs_in_the_browser_with_the_output_the_page_shows(
    every_example: list[tuple[str, str, str, bool]],
) -> None:
    differs = [
        f"{page}:\n{src}--- got ---\n{got}" for page, src, got, ok in every_example if not ok
    ]
    assert differs == [], "\n".join(differs)


def test_the_start_page_and_every_lesson_page_have_examples_to_run(
    every_example: list[tuple[str, str, str, bool]],
) -> None:
    with_examples = {page for page, *_ in every_example}
    wanted = ["start.html", *(f"lessons/{lesson.id}.html" for lesson in all_lessons())]
    assert [p for p in wanted if p not in with_examples] == []
