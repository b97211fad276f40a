"""Serve the built tutorial site on 127.0.0.1 (``minikern docs serve``).

Pyodide cannot start from ``file://`` pages, so the site's Run buttons need
an http server; this one serves a folder on the loopback address only, with
the right type for WebAssembly, and never logs to the terminal per request.
"""

from __future__ import annotations

import functools
import http.server
from pathlib import Path
from typing import Any

__all__ = ["SITE", "QuietHandler", "make_server"]

SITE = Path(__file__).resolve().parents[1] / "docs" / "_build" / "html"
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

    def log_message(self, format: str, *args: Any) -> None:
        """Silence: a page load is dozens of requests."""


def make_server(directory: Path, port: int = 8000) -> http.server.ThreadingHTTPServer:
    """A server for ``directory`` bound to 127.0.0.1:``port`` (0 picks a free
    port; read it back from ``server.server_address``). Call
    ``serve_forever()`` on it; ``OSError`` if the port is taken."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
