"""The built site in a real browser: headless Chromium (Debian's package) driven
by Playwright. For the start page and every lesson page: run the first example,
wait for its output, check it against what the page shows, check that no
request left 127.0.0.1, open a hint, and save a screenshot
(``docs/_build/screenshots/``). Without Chromium these tests are skipped."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from site_builder import ROOT, ensure_built

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

if not CHROMIUM.exists():
    pytest.skip(
        f"no Chromium at {CHROMIUM}: `apt-get install -y chromium` runs the browser tests",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing")


def lesson_ids() -> list[str]:
    return sorted(p.parent.name for p in (ROOT / "lessons").glob("*/lesson.toml"))


PAGES = ["start", *[f"lessons/{i}" for i in lesson_ids()]]
SHOTS = ROOT / "docs" / "_build" / "screenshots"


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    """The built site (built now if stale), served on 127.0.0.1."""
    site = ensure_built()
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


@pytest.mark.parametrize("path", PAGES)
def test_first_example_runs_in_the_browser_with_the_output_the_page_shows(
    browser: Any, origin: str, path: str
) -> None:
    from pyrunner import matches_page

    requests: list[str] = []
    page = open_page(browser, f"{origin}/{path}.html", requests)
    button = page.get_by_role("button", name=re.compile("Run")).first
    assert button.is_visible(), f"{path}: no example with a Run button"
    started = time.perf_counter()
    button.click()
    output = page.locator(".mk-output").first
    page.wait_for_function(
        "['done', 'differs', 'error'].includes(document.querySelector('.mk-output').dataset.state)",
        timeout=RUN_TIMEOUT_MS,
    )
    elapsed = time.perf_counter() - started
    state = output.get_attribute("data-state")
    got = output.locator(".mk-result").inner_text()
    source = page.evaluate("window.mkRunner.blocks[0].source")
    status = output.locator(".mk-status").inner_text()
    assert state == "done", f"{path}: {status}\n{got}"
    assert matches_page(source, got + ("" if got.endswith("\n") else "\n"))
    print(f"{path}: first example ran {elapsed:.1f}s after the click")
    strays = [u for u in requests if not local(u, origin)]
    assert strays == [], f"{path}: requests left 127.0.0.1: {strays}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{path.replace('/', '_')}.png"), full_page=False)
    page.close()


@pytest.mark.parametrize("path", PAGES)
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
