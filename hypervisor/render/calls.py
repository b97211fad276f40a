"""Hypercalls for people: the log of a trace, one refusal explained, the
audit's verdict, and SVG export for the docs."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rich import box
from rich._export_format import CONSOLE_SVG_FORMAT
from rich.console import Console, RenderableType
from rich.panel import Panel
from rich.protocol import is_renderable
from rich.table import Table
from rich.text import Text

from hypervisor import abi
from hypervisor.argcheck import need_instance, need_int
from hypervisor.errors import HypercallError
from hypervisor.machine import Hypervisor
from hypervisor.render.common import entry_text
from hypervisor.rules import RULES
from hypervisor.trace import HypercallRecord, Record

__all__ = ["audit_verdict", "decode_args", "explain", "hypercall_log", "to_svg"]

MAX_REQUESTS = 3
"""How many requests of one batch the log spells out."""

_VMASST = {
    getattr(abi, name): name.removeprefix("VMASST_TYPE_")
    for name in dir(abi)
    if name.startswith("VMASST_TYPE_")
}
_FLUSH = {abi.UVMF_NONE: "UVMF_NONE", abi.UVMF_TLB_FLUSH: "UVMF_TLB_FLUSH", 2: "UVMF_INVLPG"}
_EXT_NAMES = {int(c): c.name for c in abi.MmuExtCmd}
_MMU_NAMES = {int(c): c.name for c in abi.MmuCmd}
_CALL_NAMES = {int(c): c.name for c in abi.Hypercall}
_MFN_ARG = {0, 1, 2, 3, 4, 5, 15, 16, 19, 20}
_VA_ARG = {7, 9, 11}


# -- decoding arguments ---------------------------------------------------------


def _slot_text(ptr: int, xen: Hypervisor | None) -> str:
    """``L1 0x318[488]``: the table (its current type when ``xen`` is given)
    and slot a request's ``ptr`` names."""
    mfn, slot = abi.maddr_mfn(ptr), abi.maddr_slot(ptr)
    kind = "mfn"
    if xen is not None and mfn < xen.total_frames:
        t = xen.frame(mfn).type
        kind = t.name if t.is_pagetable else "data"
    return f"{kind} {mfn:#x}[{slot}]"


def _mmu_request(req: Any, xen: Hypervisor | None) -> str:
    ptr, val = (req.ptr, req.val) if isinstance(req, abi.MmuUpdate) else req
    cmd = ptr & 7
    if cmd == abi.MMU_MACHPHYS_UPDATE:
        return f"m2p[{abi.maddr_mfn(ptr):#x}] := pfn {val:#x}"
    text = f"{_slot_text(ptr & ~7, xen)} := {entry_text(val)}"
    if cmd != abi.MMU_NORMAL_PT_UPDATE:
        name = _MMU_NAMES.get(cmd, f"cmd {cmd}")
        text += f" ({name})"
    return text


def _batch(items: Sequence[Any], one: Callable[[Any], str], noun: str) -> str:
    """``3 requests: a, b, c`` (at most MAX_REQUESTS spelled out); a batch of
    one is just that request."""
    if len(items) == 1:
        return one(items[0])
    shown = [one(item) for item in items[:MAX_REQUESTS]]
    more = len(items) - len(shown)
    tail = f", … {more} more" if more else ""
    plural = noun if len(items) == 1 else noun + "s"
    return f"{len(items)} {plural}: " + ", ".join(shown) + tail


def _ext_op(op: Any) -> str:
    """``MMUEXT_PIN_L1_TABLE 0x116``: the command name and its arguments."""
    if isinstance(op, abi.MmuExtOp):
        cmd, arg1, arg2 = op.cmd, op.arg1, op.arg2
    else:
        cmd, arg1, arg2 = (*op, 0, 0)[:3]
    name = _EXT_NAMES.get(cmd, f"cmd {cmd}")
    if cmd in _MFN_ARG:
        return f"{name} {arg1:#x}"
    if cmd in _VA_ARG:
        return f"{name} va {arg1:#x}" + (f" vcpus {arg2:#b}" if cmd == 9 else "")
    if cmd == abi.MMUEXT_TLB_FLUSH_MULTI:
        return f"{name} vcpus {arg2:#b}"
    if cmd == abi.MMUEXT_COPY_PAGE:
        return f"{name} {arg2:#x} -> {arg1:#x}"
    if cmd == abi.MMUEXT_SET_LDT:
        return f"{name} va {arg1:#x} {arg2} entries"
    return name


def _foreign(args: tuple[Any, ...]) -> str:
    """`` (foreign d1)`` when a batch names a foreign domain (argument 2)."""
    dom = args[1] if len(args) > 1 else abi.DOMID_SELF
    return "" if dom == abi.DOMID_SELF else f" (foreign d{dom})"


def _uvmf(flags: int) -> str:
    text = _FLUSH.get(flags & abi.UVMF_FLUSHTYPE_MASK, "?")
    if flags & abi.UVMF_ALL:
        text += "|UVMF_ALL"
    if flags & ~7:
        text += f"|{flags & ~7:#x}"
    return text


def _multicall(entries: Sequence[Any]) -> str:
    names = []
    for e in entries:
        op = e.op if isinstance(e, abi.MulticallEntry) else e[0]
        names.append(_CALL_NAMES.get(op, f"op {op}"))
    return f"{len(entries)} entries: " + ", ".join(names)


def _need_machine_or_none(xen: object) -> None:
    if xen is not None:
        need_instance("xen", xen, Hypervisor, "a hypervisor.Hypervisor or None")


def decode_args(rec: HypercallRecord, xen: Hypervisor | None = None) -> str:
    """A compact, readable decoding of a hypercall's arguments. Arguments
    the hypercall refused as unreadable are shown as Python wrote them."""
    need_instance("rec", rec, HypercallRecord, "a HypercallRecord")
    _need_machine_or_none(xen)
    a = rec.args
    try:
        if rec.op == "mmu_update":
            return _batch(a[0], lambda r: _mmu_request(r, xen), "request") + _foreign(a)
        if rec.op == "mmuext_op":
            return _batch(a[0], _ext_op, "op") + _foreign(a)
        if rec.op in ("update_va_mapping", "update_va_mapping_otherdomain"):
            text = f"va {a[0]:#x} := {entry_text(a[1])}, {_uvmf(a[2])}"
            return text + (f", d{a[3]}" if len(a) > 3 else "")
        if rec.op == "vm_assist":
            cmd = {0: "enable", 1: "disable"}.get(a[0], f"cmd {a[0]}")
            return f"{cmd} {_VMASST.get(a[1], str(a[1]))}"
        if rec.op == "multicall":
            return _multicall(a[0])
    except (TypeError, ValueError, IndexError, AttributeError):
        pass
    text = repr(a)
    return text if len(text) <= 60 else text[:59] + "…"


# -- the log ----------------------------------------------------------------------


def _result(rec: HypercallRecord) -> Text:
    if rec.result >= 0:
        return Text("ok", style="green")
    text = Text(abi.errno_name(rec.result), style="bold red")
    if rec.op in ("mmu_update", "mmuext_op"):
        text.append(f", done {rec.done}")
    if rec.rule:
        text.append(f"\n{rec.rule}", style="red")
    return text


def hypercall_log(records: Iterable[Record], *, xen: Hypervisor | None = None) -> Table:
    """A table of the hypercall records among ``records``, in clock order
    (a multicall first, its sub-calls indented below it): clock, domain and
    vCPU, call, decoded arguments, result (``ok`` or the errno name, the
    broken rule and how many requests were done). With ``xen``, table slots
    are labelled with the frame's current type."""
    need_instance("records", records, Iterable, "an iterable of trace records")
    _need_machine_or_none(xen)
    calls = sorted((r for r in records if isinstance(r, HypercallRecord)), key=lambda r: r.clock)
    table = Table(title="hypercalls", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("clock", justify="right")
    table.add_column("who", no_wrap=True)
    table.add_column("call", no_wrap=True)
    table.add_column("arguments", ratio=2, overflow="fold")
    table.add_column("result", ratio=1, overflow="fold")
    for rec in calls:
        table.add_row(
            str(rec.clock),
            f"d{rec.domid}v{rec.vcpu}",
            ("  └ " * rec.depth) + rec.op,
            decode_args(rec, xen),
            _result(rec),
        )
    return table


# -- verdicts and explanations ------------------------------------------------------


def audit_verdict(xen: Hypervisor) -> Text:
    """``audit: 0 violations, 0 frames leaked`` in green, or the same line in
    red followed by one line per violation."""
    need_instance("xen", xen, Hypervisor, "a hypervisor.Hypervisor")
    found = xen.audit()
    leaked = sum(v.check == "leak" for v in found)
    plural = "violation" if len(found) == 1 else "violations"
    leaks = "frame" if leaked == 1 else "frames"
    line = f"audit: {len(found)} {plural}, {leaked} {leaks} leaked"
    if not found:
        return Text(line, style="bold green")
    text = Text(line, style="bold red")
    for v in found:
        text.append(f"\n  {v.check}: {v.message}", style="red")
    return text


def explain(exc: HypercallError) -> Panel:
    """A refused hypercall for a student: the call, the errno, the rule it
    broke (with where Xen enforces it) and the message."""
    need_instance("exc", exc, HypercallError, "a HypercallError (a refused hypercall)")
    body = Table.grid(padding=(0, 1))
    body.add_column(style="bold")
    body.add_column()
    name = abi.errno_name(exc.errno) if exc.errno is not None else "?"
    body.add_row("hypercall", exc.op or "?")
    body.add_row("error", f"-{name} ({exc.errno}), {exc.done} done before it")
    rule = RULES.get(exc.rule)
    if rule is not None:
        body.add_row("rule", f"{rule.id} (Xen: {rule.xen})")
    elif exc.rule:
        body.add_row("rule", exc.rule)
    body.add_row("message", exc.message)
    return Panel(body, title=f"refused: {exc.op or 'hypercall'}", border_style="red")


SVG_FORMAT = re.sub(r"@font-face \{\{.*?\}\}\s*", "", CONSOLE_SVG_FORMAT, flags=re.S)
"""rich's SVG template without its ``@font-face`` rules: rich links a web font
from a CDN by default; ours uses the reader's monospace font and fetches nothing."""


def to_svg(renderable: RenderableType, width: int = 100, title: str = "minikern") -> str:
    """``renderable`` drawn as an SVG terminal screenshot (for the docs); the
    SVG refers to nothing outside itself."""
    if not is_renderable(renderable):
        raise TypeError(f"renderable must be something rich can draw, not {renderable!r:.40}")
    need_int("width", width, 20, 1000)
    need_instance("title", title, str, "a str")
    console = Console(width=width, record=True, file=io.StringIO(), color_system="truecolor")
    console.print(renderable)
    return console.export_svg(title=title, code_format=SVG_FORMAT)
