"""Serve the built tutorial site on 127.0.0.1 (``minikern docs serve``).

Pyodide cannot start from ``file://`` pages, so the site's Run buttons need
an http server; this one serves a folder on the loopback address only, with
the right type for WebAssembly, and never logs to the terminal per request.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import sys
from pathlib import Path
from typing import Any

__all__ = ["SITE", "QuietHandler", "add_parser", "make_server", "serve"]

SITE = Path(__file__).resolve().parents[2] / "docs" / "_build" / "html"
"""Where ``make docs`` puts the site in a checkout."""


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Static files, ``.wasm`` as ``application/wasm``, no per-request log lines."""

    extensions_map = {  # noqa: RUF012 -- the base class's attribute, extended
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",
        ".mjs": "text/javascript",
        ".js": "text/javascript",
        ".whl": "application/zip",
        ".svg": "image/svg+xml",
    }

    def end_headers(self) -> None:
        """Add ``Cache-Control``: the Pyodide runtime (tens of megabytes, fixed
        for a build) may be reused for an hour, so the browser's HTTP cache and
        its WebAssembly code cache serve it to every later page; everything else
        is revalidated on each load (a 304 answers when unchanged)."""
        if self.path.startswith("/_runtime/pyodide/"):
            self.send_header("Cache-Control", "public, max-age=3600")
        else:
            self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence: a page load is dozens of requests."""


def make_server(directory: Path, port: int = 8000) -> http.server.ThreadingHTTPServer:
    """A server for ``directory`` bound to 127.0.0.1:``port`` (0 picks a free
    port; read it back from ``server.server_address``). Call
    ``serve_forever()`` on it; ``OSError`` if the port is taken."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)


def add_parser(sub: Any) -> None:
    """Add ``docs serve [--port N]`` to the sub-command parsers ``sub``."""
    docs = sub.add_parser("docs", help="the tutorial site: `minikern docs serve`")
    actions = docs.add_subparsers(dest="docs_command", required=True, metavar="ACTION")
    serve = actions.add_parser("serve", help="serve the built site (make docs) on 127.0.0.1")
    serve.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    serve.add_argument("--dir", type=Path, default=SITE, help=argparse.SUPPRESS)


def serve(directory: Path, port: int) -> int:
    """Serve the built site until interrupted; 1 if it is not built or the port is taken."""
    if not (directory / "index.html").is_file():
        print(f"minikern docs serve: no site in {directory}; run `make docs`", file=sys.stderr)
        return 1
    try:
        server = make_server(directory, port)
    except OSError as exc:
        print(f"minikern docs serve: cannot listen on port {port}: {exc.strerror}", file=sys.stderr)
        return 1
    port = int(server.server_address[1])
    print(f"Serving the docs at http://127.0.0.1:{port}/ (Ctrl-C to stop)", flush=True)
    with server, contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0
