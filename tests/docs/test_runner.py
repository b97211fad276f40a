"""The browser runner's Python half (``docs/_ext/pyrunner.py``) and the docs server."""

from __future__ import annotations

import threading
import urllib.request
from pathlib import Path

import pytest
from pyrunner import expected_output, matches_page, run_example

from minikern.cli import main
from minikern.cli.docs import make_server

DOCTEST = """>>> from hypervisor import abi
>>> abi.EINVAL
22
>>> print(abi.errno_name(-22))
EINVAL
>>> 1 // 0
Traceback (most recent call last):
    ...
ZeroDivisionError: integer division or modulo by zero
"""


def test_a_doctest_block_prints_what_the_page_shows() -> None:
    got = run_example(DOCTEST, {})
    assert matches_page(DOCTEST, got)


def test_a_wrong_shown_output_is_noticed() -> None:
    got = run_example(DOCTEST.replace("22\n", "28\n"), {})
    assert not matches_page(DOCTEST.replace("22\n", "28\n"), got)


def test_expected_output_is_the_shown_lines_with_the_traceback_collapsed() -> None:
    assert expected_output(DOCTEST).startswith("22\nEINVAL\nTraceback (most recent call last):")


def test_blocks_of_a_page_share_one_namespace() -> None:
    namespace: dict[str, object] = {}
    run_example("x = 41\n", namespace)
    assert run_example(">>> x + 1\n42\n", namespace) == "42\n"


def test_a_script_block_shows_what_it_prints() -> None:
    assert run_example("print('hi')\n", {}) == "hi\n"


def test_a_script_block_that_raises_does_not_match_the_page() -> None:
    source = "print('hi')\nraise ValueError('no')\n"
    got = run_example(source, {})
    assert got.endswith("ValueError: no\n")
    assert not matches_page(source, got)


def test_docs_server_serves_wasm_as_webassembly_on_loopback(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<p>hi</p>")
    (tmp_path / "x.wasm").write_bytes(b"\0asm")
    server = make_server(tmp_path, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/x.wasm") as reply:
            kind = reply.headers["Content-Type"]
    finally:
        server.shutdown()
        server.server_close()
    assert (host, kind) == ("127.0.0.1", "application/wasm")


def test_docs_server_lets_the_browser_cache_pyodide_and_revalidate_pages(
    tmp_path: Path,
) -> None:
    (tmp_path / "_runtime" / "pyodide").mkdir(parents=True)
    (tmp_path / "_runtime" / "pyodide" / "pyodide.asm.wasm").write_bytes(b"\0asm")
    (tmp_path / "index.html").write_text("<p>hi</p>")
    server = make_server(tmp_path, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(f"{base}/_runtime/pyodide/pyodide.asm.wasm") as reply:
            runtime = reply.headers["Cache-Control"]
        with urllib.request.urlopen(f"{base}/index.html") as reply:
            page = reply.headers["Cache-Control"]
    finally:
        server.shutdown()
        server.server_close()
    assert (runtime, page) == ("public, max-age=3600", "no-cache")


def test_docs_serve_without_a_built_site_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["docs", "serve", "--dir", str(tmp_path)])
    assert status == 1
    assert "make docs" in capsys.readouterr().err
