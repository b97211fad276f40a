"""``{picture}``: a picture drawn at build time from real simulator state.

The directive's body is Python that leaves a rich renderable in ``picture``;
the page gets it as an SVG image (no web font, nothing fetched) with the
``:alt:`` text, and the full text rendering in a "Text version" disclosure
below it, so every picture has a text alternative::

    ```{picture} The tree after pinning
    :alt: An L4 with one L3, one L2 and one L1 below it.
    :width: 90

    xen = Hypervisor(total_frames=512)
    ...
    picture = render.page_table_tree(xen, l4)
    ```
"""

from __future__ import annotations

import hashlib
import html
import io
from pathlib import Path
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from rich.console import Console
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parents[2]
PICTURES = "_generated/pictures"


def _sources() -> list[Path]:
    """The package files a picture depends on: change one, redraw."""
    return sorted(p for pkg in ("hypervisor", "minikern") for p in (ROOT / pkg).rglob("*.py"))


def draw(code: str, filename: str) -> Any:
    """Run the picture's code in a fresh namespace and return ``picture``."""
    namespace: dict[str, Any] = {"__name__": "__picture__"}
    prelude = "from hypervisor import *\nfrom hypervisor import render\n"
    exec(compile(prelude, "<picture prelude>", "exec"), namespace)
    exec(compile(code, filename, "exec"), namespace)
    if "picture" not in namespace:
        raise ValueError("the picture's code must assign a rich renderable to `picture`")
    return namespace["picture"]


def as_text(renderable: Any, width: int) -> str:
    """The renderable as plain text (the picture's text alternative)."""
    out = io.StringIO()
    Console(file=out, width=width, color_system=None, legacy_windows=False).print(renderable)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines())


class Picture(SphinxDirective):
    """The ``{picture}`` directive (see the module docstring)."""

    has_content = True
    optional_arguments = 1
    final_argument_whitespace = True
    option_spec: ClassVar[dict[str, Any]] = {
        "alt": directives.unchanged_required,
        "width": directives.positive_int,
    }

    def run(self) -> list[nodes.Node]:
        from hypervisor import render

        alt = self.options.get("alt")
        if not alt:
            raise self.error("a picture needs :alt: text")
        width = self.options.get("width", 90)
        code = "\n".join(self.content)
        where = f"{self.env.docname}.md:{self.lineno}"
        try:
            picture = draw(code, where)
        except Exception as exc:  # the build must say which picture broke
            raise self.error(f"picture at {where} failed: {type(exc).__name__}: {exc}") from exc
        svg = render.to_svg(picture, width=width, title=self.arguments[0] if self.arguments else "")
        name = hashlib.sha256(f"{where}\n{code}".encode()).hexdigest()[:16] + ".svg"
        out = Path(self.env.srcdir) / PICTURES / name
        out.parent.mkdir(parents=True, exist_ok=True)
        if not out.exists() or out.read_text(encoding="utf-8") != svg:
            out.write_text(svg, encoding="utf-8")
        for path in _sources():
            self.env.note_dependency(str(path))
        return self._nodes(out, alt, as_text(picture, width))

    def _nodes(self, svg: Path, alt: str, text: str) -> list[nodes.Node]:
        uri = "/" + str(svg.relative_to(Path(self.env.srcdir)))
        figure = nodes.figure(classes=["mk-picture"])
        figure += nodes.image(uri=uri, alt=alt)
        if self.arguments:
            figure += nodes.caption(text=self.arguments[0])
        details = nodes.raw(
            "",
            '<details class="mk-text-version"><summary>Text version of the picture</summary>'
            f"<pre>{html.escape(text)}</pre></details>",
            format="html",
        )
        return [figure, details]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("picture", Picture)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
