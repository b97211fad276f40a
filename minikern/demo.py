"""``minikern demo``: boot, start init, fork three children, and look at what Xen saw.

The workload (:func:`run_workload`) is one deterministic run per seed: init maps
a region and writes every page; then three times, init writes to some of its
pages again (so they are writable once more), forks a child, and the child
writes to a few pages (copy-on-write) and unmaps a few. Then every process
exits. The seed picks the region and the pages (``random.Random(seed)``, here
in the cli layer: the kernel itself never draws a random number).

:func:`show` draws the run with ``hypervisor.render``: the hypercalls of one
fork, phase by phase; a child's page-table tree; the memory map before and
after the forks; the cost of each fork, batched and the Linux way; and the
audit's verdict.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import attrs
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from hypervisor import Hypervisor, abi, render
from hypervisor.trace import HypercallRecord, Record
from minikern.kernel import Kernel
from minikern.process import Process

__all__ = [
    "CAPTIONS",
    "CHILDREN",
    "ForkCost",
    "Pictures",
    "Run",
    "Workload",
    "cost_table",
    "fork_log",
    "phase_groups",
    "phases",
    "plan",
    "run_workload",
    "show",
    "verdict",
]

PAGE = abi.PAGE_SIZE
NR_PAGES = 384
"""The domain's size: small enough that the memory map shows one frame per glyph."""
TOTAL_FRAMES = 768
CHILDREN = 3
BASES = (0x400000, 0x600000, 0x10000000, 0x7F0000000000)
"""Where init's region may start (a seed picks one)."""

Snapshot = Callable[[str, "Run", Sequence[Process]], None]


# -- the workload ---------------------------------------------------------------------


@attrs.frozen
class ChildPlan:
    """What one round does: init writes ``init_writes`` again (page indexes;
    none before the first fork), the child writes ``cow`` and unmaps ``unmap``
    (first page, count)."""

    init_writes: tuple[int, ...]
    cow: tuple[int, ...]
    unmap: tuple[int, int]


@attrs.frozen
class Workload:
    """Everything a seed decides."""

    seed: int
    base: int
    pages: int
    rounds: tuple[ChildPlan, ...]


def plan(seed: int) -> Workload:
    """The workload of ``seed``: the same seed, the same workload."""
    rng = random.Random(seed)
    base = rng.choice(BASES)
    pages = rng.randint(12, 40)
    rounds = []
    for i in range(CHILDREN):
        rewrite = tuple(sorted(rng.sample(range(pages), 6))) if i else ()
        cow = tuple(sorted(rng.sample(range(pages), rng.randint(1, 4))))
        count = rng.randint(1, 6)
        rounds.append(ChildPlan(rewrite, cow, (rng.randrange(pages - count + 1), count)))
    return Workload(seed, base, pages, tuple(rounds))


@attrs.frozen
class ForkCost:
    """One fork, measured: ``hypercalls`` the kernel made (a multicall counts
    once), ``xen_calls`` Xen ran (its entries count too), ``requests``,
    ``trapped_writes``, ``tlb_flushes``, and the trace ``records`` in between."""

    parent: int
    child: int
    style: str
    hypercalls: int
    xen_calls: int
    requests: int
    trapped_writes: int
    tlb_flushes: int
    records: tuple[Record, ...]


@attrs.define(eq=False)
class Run:
    """A finished workload: the kernel (every process has exited), what
    happened, in words, and the cost of each fork."""

    workload: Workload
    kernel: Kernel
    events: list[str] = attrs.Factory(list)
    forks: list[ForkCost] = attrs.Factory(list)
    init_data: dict[int, bytes] = attrs.Factory(dict)
    """Page index -> what init last wrote there."""
    isolated: bool = True
    """Every read-back of init's memory after a child's write gave init's data."""

    @property
    def xen(self) -> Hypervisor:
        hv: Hypervisor = self.kernel.hypervisor
        return hv

    def leaked(self) -> int:
        """Frames the guest's allocator lacks now that every process has exited."""
        return self.kernel.boot_free - self.kernel.free_pages()

    def clean(self) -> bool:
        """Children's writes stayed invisible to init, no audit violation, no
        frame leaked."""
        return self.isolated and not self.leaked() and not self.xen.audit()


def _fork(run: Run, parent: Process) -> Process:
    """``k.fork(parent)``, measured."""
    k, xen = run.kernel, run.xen
    before, issued, first = xen.stats(), k.km.hc.issued, len(xen.trace.records)
    child = k.fork(parent)
    after = xen.stats()
    run.forks.append(
        ForkCost(
            parent.pid,
            child.pid,
            k.fork_style,
            k.km.hc.issued - issued,
            after.total_hypercalls - before.total_hypercalls,
            after.requests - before.requests,
            after.trapped_writes - before.trapped_writes,
            after.tlb_flushes - before.tlb_flushes,
            tuple(xen.trace.records[first:]),
        )
    )
    return child


def _pages(idx: Sequence[int]) -> str:
    return ("page " if len(idx) == 1 else "pages ") + ", ".join(map(str, idx))


def _init_writes(run: Run, init: Process, pages: Sequence[int], n: int) -> None:
    """Init writes a line to each page of ``pages`` in round ``n``."""
    for i in pages:
        data = f"init, round {n}, page {i}".encode()
        init.write(run.workload.base + i * PAGE, data)
        run.init_data[i] = data


def _check_isolation(run: Run, init: Process, child: Process, page: int) -> None:
    """Read back ``page`` as init, after ``child`` wrote to it."""
    want = run.init_data[page]
    seen = init.read(run.workload.base + page * PAGE, len(want))
    run.isolated &= seen == want
    verdict = "" if seen == want else f", NOT {want.decode()!r}"
    run.events.append(f"init still reads {seen.decode(errors='replace')!r} on page {page}{verdict}")


def _round(run: Run, init: Process, n: int, rp: ChildPlan) -> Process:
    """Init rewrites some pages, forks; the child writes (copy-on-write) and unmaps."""
    w = run.workload
    _init_writes(run, init, rp.init_writes, n)
    if rp.init_writes:
        run.events.append(f"init writes {_pages(rp.init_writes)} again")
    child = _fork(run, init)
    run.events.append(f"fork: init (pid {init.pid}) -> pid {child.pid}")
    for i in rp.cow:
        child.write(w.base + i * PAGE, f"pid {child.pid} was here".encode())
    run.events.append(f"pid {child.pid} writes {_pages(rp.cow)}: copy-on-write")
    _check_isolation(run, init, child, rp.cow[0])
    first, count = rp.unmap
    child.munmap(w.base + first * PAGE, count * PAGE)
    run.events.append(f"pid {child.pid} unmaps {_pages(range(first, first + count))}")
    return child


def run_workload(seed: int, fork_style: str = "batched", snapshot: Snapshot | None = None) -> Run:
    """Boot a fresh machine and run ``plan(seed)``; ``snapshot(stage, run,
    processes)`` is called at "before" (init alone) and "after" (init and its
    children, before anyone exits)."""
    w = plan(seed)
    xen = Hypervisor(total_frames=TOTAL_FRAMES)
    k = Kernel.boot(nr_pages=NR_PAGES, hypervisor=xen, fork_style=fork_style)
    run = Run(w, k)
    run.events.append(f"boot: d{k.domain.domid}, {NR_PAGES} pages, {k.boot_free} free")
    init = k.spawn()
    init.mmap(w.base, w.pages * PAGE, "rw")
    _init_writes(run, init, range(w.pages), 0)
    run.events.append(
        f"init (pid {init.pid}) maps pages 0-{w.pages - 1} at {w.base:#x} and writes each"
    )
    if snapshot is not None:
        snapshot("before", run, [init])
    children = [_round(run, init, n, rp) for n, rp in enumerate(w.rounds)]
    if snapshot is not None:
        snapshot("after", run, [init, *children])
    for p in [*children, init]:
        k.exit(p)
    run.events.append(f"pids {', '.join(str(c.pid) for c in children)} and init exit")
    return run


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
            self.tree = render.page_table_tree(xen, run.kernel.km.mfn(child.mm.user_l4))


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
