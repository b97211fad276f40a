"""The demo's workload: boot, start init, fork three children, exit them all.

One deterministic run per seed (:func:`run_workload`): init maps a region and
writes every page; then three times, init writes to some of its pages again
(so they are writable once more), forks a child, and the child writes to a
few pages (copy-on-write) and unmaps a few. Then every process exits. The
seed picks the region and the pages (``random.Random(seed)``, here in the cli
layer: the kernel itself never draws a random number). Nothing here draws:
the pictures are :mod:`minikern.cli.demo`'s.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import attrs

from hypervisor import Hypervisor, abi
from hypervisor.trace import Record
from minikern.kernel import Kernel
from minikern.process import Process

__all__ = [
    "BASES",
    "CHILDREN",
    "ChildPlan",
    "ForkCost",
    "Run",
    "Snapshot",
    "Workload",
    "plan",
    "run_workload",
]

PAGE = abi.PAGE_SIZE
NR_PAGES = 384
"""The domain's size: small enough that the memory map shows one frame per glyph."""
TOTAL_FRAMES = 768
CHILDREN = 3
BASES = (0x400000, 0x600000, 0x10000000, 0x7F0000000000)
"""Where init's region may start (a seed picks one)."""

Snapshot = Callable[[str, "Run", Sequence[Process]], None]


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
    xen.trace.seed = seed
    xen.trace.meta["workload"] = f"minikern demo ({fork_style} fork)"
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
