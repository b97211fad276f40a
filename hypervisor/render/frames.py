"""The frame table and the memory map: what every machine frame is used for.

Both read ``xen.state.frames`` (the frames in use) rather than walking every
mfn, so they stay fast on a machine of millions of frames: a frame absent from
that dict is free, except the first MiB, which always belongs to DOMID_IO.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from rich.columns import Columns
from rich.console import Group
from rich.table import Table
from rich.text import Text

from hypervisor import abi
from hypervisor.argcheck import need_instance, need_int
from hypervisor.machine import Hypervisor
from hypervisor.mm.frames import PageInfo
from hypervisor.mm.state import IO_FRAMES
from hypervisor.render.common import domain_style, owner_text, type_text

__all__ = ["frame_table", "memory_map"]


# -- the frame table ------------------------------------------------------------


def _need_machine(xen: object) -> None:
    need_instance("xen", xen, Hypervisor, "a hypervisor.Hypervisor")


def _interesting(pg: PageInfo) -> bool:
    return pg.type.is_pagetable or pg.pinned


def _default_mfns(xen: Hypervisor, domid: int | None) -> list[int]:
    """The page-table or pinned frames in use, of ``domid`` if given."""
    return sorted(
        mfn
        for mfn, pg in xen.state.frames.items()
        if _interesting(pg) and (domid is None or pg.owner == domid)
    )


def frame_table(
    xen: Hypervisor, mfns: Iterable[int] | None = None, *, domid: int | None = None
) -> Table:
    """A table of frames sorted by mfn: owner, type, both counts, validated,
    pinned and the linear count. Without ``mfns``: every frame that is a page
    table or pinned (of domain ``domid`` if given); with ``mfns``: exactly
    those frames (``domid`` still filters)."""
    _need_machine(xen)
    if domid is not None:
        need_int("domid", domid)
    if mfns is not None:
        mfns = list(need_instance("mfns", mfns, Iterable, "an iterable of mfns or None"))
        for mfn in mfns:
            need_int("mfns", mfn, 0, xen.total_frames - 1)
    if mfns is None:
        chosen = _default_mfns(xen, domid)
        title = "page-table and pinned frames"
    else:
        chosen = sorted(set(mfns))
        title = "frames"
    if domid is not None:
        title += f" of d{domid}"
    table = Table(title=title, title_justify="left")
    for name in ("mfn", "owner", "type", "type count", "count", "validated", "pinned", "linear"):
        table.add_column(name, justify="right" if "count" in name or name == "linear" else "left")
    for mfn in chosen:
        info = xen.frame(mfn)
        if domid is not None and info.owner != domid:
            continue
        style = domain_style(info.owner) if info.owner is not None and info.owner < 0x7FF0 else ""
        kind = type_text(info.type) + (" (Xen slots)" if info.pae_xen_l2 else "")
        table.add_row(
            f"{mfn:#x}",
            Text(owner_text(info.owner), style=style),
            Text(kind, style="bold" if info.type.is_pagetable else ""),
            str(info.type_count),
            str(info.count),
            "yes" if info.validated else "no",
            Text("pinned", style="bold reverse") if info.pinned else "",
            str(info.linear),
        )
    return table


# -- the memory map -------------------------------------------------------------

FREE, XEN, IO = "free", "xen", "io"
_KIND_PRIORITY = {FREE: 0, IO: 1, XEN: 2}
"""Tie-break for a group's dominant kind: tables, then data, then these."""

MAX_ROWS = 32
"""A bigger machine is drawn with several frames per glyph."""


def _kind(pg: PageInfo) -> str:
    """A frame's kind: ``xen``, ``io``, ``d<id>:data``, ``d<id>:L<n>`` (with
    ``+pin`` when pinned)."""
    if pg.owner is None:
        return FREE
    if pg.owner == abi.DOMID_XEN:
        return XEN
    if pg.owner == abi.DOMID_IO:
        return IO
    if pg.type.is_pagetable and pg.type_count:
        return f"d{pg.owner}:{pg.type.name}" + ("+pin" if pg.pinned else "")
    return f"d{pg.owner}:data"


def _glyph(kind: str) -> Text:
    """One cell of the map for ``kind``."""
    if kind == FREE:
        return Text(".", style="dim")
    if kind == XEN:
        return Text("X", style="bold red")
    if kind == IO:
        return Text("i", style="dim yellow")
    dom, what = kind.split(":")
    colour = domain_style(int(dom[1:]))
    if what == "data":
        return Text(_data_letter(int(dom[1:])), style=colour)
    level = what[1]
    return Text(
        level, style=f"bold reverse {colour}" if what.endswith("+pin") else f"bold {colour}"
    )


def _data_letter(domid: int) -> str:
    return "abcdefghjkmnopqrstuvwyz"[domid % 23]


def _rank(kind: str) -> int:
    if kind in _KIND_PRIORITY:
        return _KIND_PRIORITY[kind]
    return 4 if ":L" in kind else 3


def _cell_kinds(xen: Hypervisor, per: int) -> tuple[dict[int, Counter[str]], Counter[str]]:
    """Per cell (``mfn // per``): how many frames of each kind it holds, and
    the machine-wide totals (free frames not counted in cells)."""
    cells: dict[int, Counter[str]] = {}
    totals: Counter[str] = Counter()
    seen_io = 0
    for mfn, pg in xen.state.frames.items():
        kind = _kind(pg)
        seen_io += mfn < IO_FRAMES
        cells.setdefault(mfn // per, Counter())[kind] += 1
        totals[kind] += 1
    for io_mfn in range(min(IO_FRAMES, xen.total_frames)):
        if io_mfn not in xen.state.frames:
            cells.setdefault(io_mfn // per, Counter())[IO] += 1
    totals[IO] += min(IO_FRAMES, xen.total_frames) - seen_io
    totals[FREE] = xen.total_frames - sum(totals.values())
    return cells, totals


def _dominant(counts: Counter[str] | None) -> str:
    """The kind most of a cell's frames in use have (tables win ties, then
    data); free only when no frame of the cell is in use."""
    if not counts:
        return FREE
    return max(counts.items(), key=lambda kv: (kv[1], _rank(kv[0])))[0]


def _legend_label(kind: str) -> str:
    if kind in (FREE, XEN, IO):
        return {FREE: "free", XEN: "Xen", IO: "I/O (first MiB)"}[kind]
    dom, what = kind.split(":")
    if what == "data":
        return f"{dom} memory"
    return f"{dom} {what[:2]}" + (" pinned" if what.endswith("+pin") else "")


def _legend(totals: Counter[str]) -> Columns:
    """One entry per kind present on the machine: glyph, name, frame count."""
    kinds = [k for k in (FREE, IO, XEN) if totals[k]]
    kinds += sorted((k for k in totals if ":" in k), key=lambda k: (int(k[1 : k.index(":")]), k))
    entries = []
    for kind in kinds:
        entry = _glyph(kind)
        entry.append(f" {_legend_label(kind)} ({totals[kind]})")
        entries.append(entry)
    return Columns(entries, padding=(0, 2))


def memory_map(xen: Hypervisor, *, width: int = 64) -> Group:
    """A WeensyOS-style map of machine memory: one glyph per frame, or per
    group of frames on a big machine (the kind most of the group's frames in
    use have; ``.`` only when the whole group is free), ``width``
    glyphs a row, each row labelled with its first mfn, then a legend with
    the frame count of each kind. Tables are ``1``-``4`` in their domain's
    colour (reversed when pinned), data a per-domain letter."""
    _need_machine(xen)
    need_int("width", width, 8, 1024)
    total = xen.total_frames
    per = max(1, -(-total // (width * MAX_ROWS)))
    cells, totals = _cell_kinds(xen, per)
    ncells = -(-total // per)
    digits = len(f"{total - 1:x}")
    grid = Text()
    for row_start in range(0, ncells, width):
        grid.append(f"{row_start * per:#0{digits + 2}x} ", style="dim")
        for cell in range(row_start, min(row_start + width, ncells)):
            grid.append_text(_glyph(_dominant(cells.get(cell))))
        grid.append("\n")
    grid.rstrip()
    scale = (
        "1 glyph = 1 frame"
        if per == 1
        else f"1 glyph = {per} frames (the kind most of them in use have)"
    )
    header = Text(f"memory map: {total} frames, {scale}", style="bold")
    return Group(header, grid, _legend(totals))
