"""``minikern demo``: the workload of :mod:`minikern.cli.workload`, drawn.

:func:`show` runs it and draws it with ``hypervisor.render``: the hypercalls
of one fork, phase by phase; a child's page-table tree; the memory map before
and after the forks; the cost of each fork, batched and the Linux way; and
the audit's verdict.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from hypervisor import Hypervisor, abi, render
from hypervisor.trace import HypercallRecord, Record
from minikern.cli.workload import ForkCost, Run, run_workload
from minikern.kmem import pfn_to_mfn
from minikern.process import Process

__all__ = [
    "CAPTIONS",
    "Pictures",
    "cost_table",
    "fork_log",
    "phase_groups",
    "phases",
    "show",
    "verdict",
]


# -- one fork, phase by phase -----------------------------------------------------------

CAPTIONS: dict[tuple[str, ...], str] = {
    ("multicall",): "the kernel enters Xen once: one multicall carries the whole lazy-MMU batch",
    ("wrprotect",): "write-protect the parent: its writable leaves lose RW, one mmu_update "
    "per L1 (PRESERVE_AD keeps Accessed/Dirty); shared pages are now copy-on-write",
    ("leaves",): "write the child's entries through Xen, in mmu_update batches",
    ("child",): "the child's tables were filled with plain stores while still data; now "
    "each is made read-only, then pinned: Xen validates it",
    ("child", "flush"): "the last pin and the TLB flush share one mmuext_op: no stale "
    "writable translation of a now-shared page survives",
    ("flush",): "flush the TLB: no stale writable translation of a now-shared page survives",
}
_LOG_WIDTHS = (5, 4, 21, None, 6)
"""Fixed widths of the log's columns (clock, who, call, -, result), so the
per-phase logs line up; the arguments take the rest."""


def _ext_phase(cmd: int) -> str:
    if abi.MMUEXT_PIN_L1_TABLE <= cmd <= abi.MMUEXT_PIN_L4_TABLE:
        return "child"
    return "flush" if cmd == abi.MMUEXT_TLB_FLUSH_LOCAL else "other"


def phases(rec: HypercallRecord) -> tuple[str, ...]:
    """The phase(s) of a fork one hypercall record belongs to (keys of
    :data:`CAPTIONS`; ``("other",)`` when it is none of them)."""
    args = rec.args
    if rec.op == "multicall":
        return ("multicall",)
    if rec.op == "mmu_update":
        cmds = {getattr(r, "ptr", 0) & 7 for r in args[0]}
        return ("wrprotect",) if abi.MMU_PT_UPDATE_PRESERVE_AD in cmds else ("leaves",)
    if rec.op == "update_va_mapping" and not args[1] & abi._PAGE_RW:
        return ("child",)
    if rec.op == "mmuext_op":
        return tuple(dict.fromkeys(_ext_phase(getattr(op, "cmd", -1)) for op in args[0]))
    return ("other",)


def phase_groups(records: Sequence[Record]) -> list[tuple[str, list[HypercallRecord]]]:
    """The hypercall records in clock order, consecutive ones of the same
    phase(s) together, each group with its caption."""
    calls = sorted((r for r in records if isinstance(r, HypercallRecord)), key=lambda r: r.clock)
    out: list[tuple[tuple[str, ...], list[HypercallRecord]]] = []
    for rec in calls:
        key = phases(rec)
        if out and out[-1][0] == key:
            out[-1][1].append(rec)
        else:
            out.append((key, [rec]))
    return [(CAPTIONS.get(key, " and ".join(key) + " calls"), recs) for key, recs in out]


def fork_log(fork: ForkCost, xen: Hypervisor) -> Group:
    """The hypercalls of one fork, one log per phase, each under its caption.
    Draw it while the fork's tables are alive: slots are labelled with the
    frame's current type."""
    parts: list[RenderableType] = []
    for n, (caption, recs) in enumerate(phase_groups(fork.records)):
        table = render.hypercall_log(recs, xen=xen)
        for col, width in zip(table.columns, _LOG_WIDTHS, strict=True):
            col.width = width
        table.title = f"{n + 1}. {caption}"
        table.title_style = "bold"
        table.show_header = n == 0
        parts.append(table)
    return Group(*parts)


# -- the pictures -----------------------------------------------------------------------


def cost_table(batched: Sequence[ForkCost], linux: Sequence[ForkCost]) -> Table:
    """Each fork's cost, minikern's batched fork above the Linux way."""
    table = Table(
        title="what each fork cost",
        title_justify="left",
        caption="batched: leaves write-protected by mmu_update, the child's filled by plain "
        "stores; linux: a trapped write per writable leaf, the child's leaves by mmu_update",
        caption_justify="left",
    )
    table.add_column("fork")
    table.add_column("style")
    table.add_column("hypercalls\n(kernel)", justify="right")
    table.add_column("calls Xen ran\n(+ multicall entries)", justify="right")
    table.add_column("requests", justify="right")
    table.add_column("trapped\nwrites", justify="right")
    table.add_column("TLB\nflushes", justify="right")
    for forks in (batched, linux):
        for f in forks:
            table.add_row(
                f"pid {f.parent} -> {f.child}",
                f.style,
                str(f.hypercalls),
                str(f.xen_calls),
                str(f.requests),
                str(f.trapped_writes),
                str(f.tlb_flushes),
            )
        table.add_section()
    return table


def verdict(run: Run) -> Text:
    """``audit: 0 violations, 0 frames leaked``: Xen's audit, plus the guest
    allocator's free count after every exit against the count after boot."""
    found = run.xen.audit()
    leaked = run.leaked() + sum(v.check == "leak" for v in found)
    k = run.kernel
    ok = not found and not leaked
    text = Text(
        f"audit: {len(found)} violations, {leaked} frames leaked",
        style="bold green" if ok else "bold red",
    )
    text.append(
        f"  (allocator: {k.boot_free} free after boot, {k.free_pages()} after every exit)",
        style="dim",
    )
    for v in found:
        text.append(f"\n  {v.check}: {v.message}", style="red")
    return text


@attrs.define(eq=False)
class Pictures:
    """What :func:`show` draws while the processes are alive."""

    before: RenderableType = ""
    after: RenderableType = ""
    fork: RenderableType = ""
    tree: RenderableType = ""
    tree_pid: int = 0

    def snapshot(self, stage: str, run: Run, procs: Sequence[Process]) -> None:
        """The memory map at each stage; at "after", the first fork's log and
        the first child's user tree as well."""
        xen = run.xen
        setattr(self, stage, render.memory_map(xen))
        if stage == "after":
            self.fork = fork_log(run.forks[0], xen)
            child = procs[1]
            self.tree_pid = child.pid
            self.tree = render.page_table_tree(xen, pfn_to_mfn(run.kernel.km, child.mm.user_l4))


def _n(count: int, noun: str) -> str:
    """``1 hypercall``, ``2 hypercalls``, ``4 TLB flushes``."""
    if count == 1:
        return f"1 {noun}"
    return f"{count} {noun}{'es' if noun.endswith('sh') else 's'}"


def show(seed: int = 0, console: Console | None = None) -> Run:
    """Run the workload of ``seed`` (batched, then the Linux way for the
    costs) and draw it on ``console``. Returns the batched run."""
    out = console if console is not None else Console()
    pics = Pictures()
    run = run_workload(seed, "batched", pics.snapshot)
    linux = run_workload(seed, "linux")
    first = run.forks[0]
    out.rule(f"minikern demo, seed {seed}: boot, init, three forks, exit")
    for event in run.events:
        out.print(f"  {event}")
    out.rule(f"one fork (pid {first.parent} -> {first.child}), hypercall by hypercall")
    out.print(
        f"{_n(first.hypercalls, 'hypercall')} from the kernel, {first.xen_calls} calls run by "
        f"Xen, {_n(first.trapped_writes, 'trapped write')}, {_n(first.tlb_flushes, 'TLB flush')}\n"
    )
    out.print(pics.fork)
    out.rule(f"the page tables of pid {pics.tree_pid} (its user L4) after its writes")
    out.print(pics.tree)
    out.rule("machine memory before the forks: init alone")
    out.print(pics.before)
    out.rule("after them: init and three children, before anyone exits")
    out.print(pics.after)
    out.rule("counters")
    out.print(cost_table(run.forks, linux.forks))
    out.rule("verdict, once every process has exited")
    out.print(verdict(run))
    return run
