"""What a lesson's test files are written with.

A test file (``lessons/<id>/tests/test_*.py``, hidden ones under ``tests/hidden/``) holds

- **workloads**: ``@workload(plan=...)`` functions that drive the kernel. A workload runs in
  the child process, with the student's lesson functions installed and every other lesson
  function the reference. Its ``plan`` function turns a seeded :class:`random.Random` into a
  JSON-able dict (addresses, bytes, counts); the grader makes the plan and sends it to the
  child, so the child never learns the seed.
- **checks**: ``@check(workload, points=N, name="...")`` functions. A check runs in the
  grader, never in the child, on a :class:`Machine`: a fresh, trusted hypervisor on which the
  grader replayed what the child's workload did. It raises :class:`Fail` (or calls
  :func:`expect`) when a property of the machine does not hold. Each check is one test with
  its points; several checks may share one workload (it runs once).

Checks test properties of the machine (audit clean, types, pins, what each process reads,
the recipe's order in the trace), never one exact trace, so every correct solution passes.
A check must also fail when the workload never got to do its work: a starter, and a
function that returns at once, must score zero (``minikern lab verify`` proves it).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator
from typing import Any

import attrs

__all__ = [
    "Check",
    "Fail",
    "Guest",
    "Machine",
    "Plan",
    "ProcessView",
    "Workload",
    "check",
    "expect",
    "plan_rng",
    "workload",
]

Plan = dict[str, Any]
"""A workload's parameters: JSON-able (ints, strings, lists, dicts; bytes as hex)."""
USER_FLAGS_NEEDED = 0x5  # present | user, at every level of a user walk


class Fail(Exception):  # noqa: N818 -- reads as what happened to the test
    """A check's property does not hold. ``rule`` (a rule id of ``hypervisor.rules``, or a
    lesson's own ``lesson.<what>`` id) keys the hints; empty: the grader takes the rule
    of the first refusal on the replayed machine, if any."""

    def __init__(self, message: str, rule: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.rule = rule


def expect(condition: object, message: str, rule: str = "") -> None:
    """Raise :class:`Fail` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise Fail(message, rule)


def _no_plan(rng: random.Random) -> Plan:
    return {}


@attrs.frozen
class Workload:
    """A workload: ``run(guest, plan)`` in the child on a machine of ``frames`` frames with
    one domain of ``nr_pages`` (a ``guest_width``-bit guest: 64, or 32 for PAE);
    ``plan(rng)`` picks its parameters from the seed."""

    name: str
    run: Callable[[Guest, Plan], None]
    plan: Callable[[random.Random], Plan]
    nr_pages: int
    frames: int
    doc: str
    guest_width: int = 64


@attrs.frozen
class Check:
    """One test: ``fn(machine, plan)`` on the replayed machine of ``workload``."""

    key: str
    """The check function's name (``-k`` matches it and ``name``)."""
    name: str
    points: int
    workload: Workload
    fn: Callable[[Machine, Plan], None]


def workload(
    *,
    plan: Callable[[random.Random], Plan] = _no_plan,
    nr_pages: int = 512,
    frames: int = 16384,
    guest_width: int = 64,
) -> Callable[[Callable[[Guest, Plan], None]], Workload]:
    """Declare a workload (decorator); ``guest_width=32`` boots a 32-bit PAE guest."""
    if guest_width not in (32, 64):
        raise ValueError(f"guest_width must be 32 or 64, not {guest_width!r}")

    def deco(fn: Callable[[Guest, Plan], None]) -> Workload:
        doc = (fn.__doc__ or "").strip().splitlines()
        first = doc[0] if doc else ""
        return Workload(fn.__name__, fn, plan, nr_pages, frames, first, guest_width)

    return deco


def check(
    on: Workload, *, points: int, name: str
) -> Callable[[Callable[[Machine, Plan], None]], Check]:
    """Declare a test worth ``points`` evaluated on ``on``'s replayed machine (decorator)."""
    if type(points) is not int or points < 0:
        raise ValueError(f"points must be an int >= 0, not {points!r}")

    def deco(fn: Callable[[Machine, Plan], None]) -> Check:
        return Check(fn.__name__, name, points, on, fn)

    return deco


def plan_rng(seed: int, lesson: str, workload_name: str) -> random.Random:
    """The generator a workload's plan is drawn from: one per (seed, lesson, workload)."""
    return random.Random(f"{seed}:{lesson}:{workload_name}")


# -- the child side ---------------------------------------------------------------------


class Guest:
    """What a workload drives: a fresh machine, and the minikern it boots on it.

    ``boot`` makes the machine (recording every store, so the run replays) and boots the
    kernel; ``kernel``, ``xen`` and ``vcpu`` are then at hand. The live processes at the
    end (and any the workload :meth:`remember`\\ s) are sent to the grader with their trees.
    """

    def __init__(self, w: Workload) -> None:
        self.workload = w
        self.kernel: Any = None
        self.xen: Any = None
        self.remembered: dict[int, Any] = {}

    def boot(self, **options: Any) -> Any:
        """Boot minikern (``Kernel.boot`` options: ``strategy``, ``fork_style``) on a
        guest of the workload's declared ``guest_width``."""
        from hypervisor import Hypervisor
        from minikern import Kernel

        if self.kernel is not None:
            raise RuntimeError("a workload boots one kernel")
        width = options.setdefault("guest_width", self.workload.guest_width)
        if width != self.workload.guest_width:
            raise ValueError("declare the guest width on @workload(guest_width=...)")
        self.xen = Hypervisor(total_frames=self.workload.frames)
        self.xen.trace.record_stores = True
        self.kernel = Kernel.boot(self.workload.nr_pages, hypervisor=self.xen, **options)
        return self.kernel

    @property
    def vcpu(self) -> Any:
        return self.kernel.vcpu

    def remember(self, process: Any) -> None:
        """Send ``process``'s tree to the grader even if it exits before the end."""
        self.remembered[process.pid] = self._view(process)

    def _view(self, process: Any) -> dict[str, int]:
        p2m = self.kernel.km.p2m
        return {"l4": int(p2m[process.mm.l4]), "user_l4": int(p2m[process.mm.user_l4])}

    def processes(self) -> dict[int, dict[str, int]]:
        """pid -> the mfns of its kernel and user L4 (remembered ones, then live ones)."""
        out = dict(self.remembered)
        if self.kernel is not None:
            for p in self.kernel.processes:
                out[int(p.pid)] = self._view(p)
        return out


# -- the grader side --------------------------------------------------------------------


@attrs.frozen
class ProcessView:
    """A process as the child reported it: the mfns of its two L4s. (Only where to look:
    every fact a check relies on is read from the trusted machine.)"""

    pid: int
    l4: int
    user_l4: int


class Machine:
    """The trusted machine a check looks at: the grader's own hypervisor, on which it
    replayed the child's record. ``processes`` come from the child (where to look);
    ``calls`` are the hypercalls as the trusted machine ran them."""

    def __init__(self, xen: Any, processes: dict[int, ProcessView], completed: bool) -> None:
        self.xen = xen
        self.processes = processes
        self._audit: list[Any] | None = None
        self.completed = completed
        """The child said the workload ran to its end (it may lie: only ever a reason to fail)."""

    # -- the domain -------------------------------------------------------------------

    @property
    def domain(self) -> Any:
        return self.xen.domains[0]

    @property
    def vcpu(self) -> Any:
        return self.domain.vcpus[0]

    def mfn_of(self, pfn: int) -> int:
        """The domain's mfn for ``pfn`` as the domain builder set it up."""
        return int(self.domain.initial_p2m[pfn])

    @property
    def calls(self) -> list[Any]:
        """Every hypercall the trusted machine ran (multicall entries at depth 1)."""
        return list(self.xen.trace.hypercalls())

    @property
    def refusals(self) -> list[Any]:
        """The hypercalls (and multicall entries) the trusted machine refused, in order."""
        return [c for c in self.calls if c.result != 0]

    def audit(self) -> list[Any]:
        """The trusted machine's audit (computed once: checks only look)."""
        if self._audit is None:
            self._audit = list(self.xen.audit())
        return list(self._audit)

    def frame(self, mfn: int) -> Any:
        return self.xen.frame(mfn)

    def process(self, pid: int) -> ProcessView:
        view = self.processes.get(pid)
        if view is None:
            raise Fail(f"process {pid} was not there at the end of the workload")
        return view

    def frames(self) -> Iterator[Any]:
        """Every frame of the domain (pfn order)."""
        for mfn in self.domain.initial_p2m:
            yield self.xen.frame(int(mfn))

    def pinned(self) -> set[int]:
        """The mfns of the domain's pinned frames."""
        return {f.mfn for f in self.frames() if f.pinned}

    # -- walking trees ----------------------------------------------------------------

    def entry(self, table_mfn: int, slot: int) -> int:
        """Entry ``slot`` of the table in frame ``table_mfn``, from machine memory."""
        if not 0 <= table_mfn < self.xen.total_frames:
            return 0
        raw = self.xen.read_frame(table_mfn)
        return int.from_bytes(raw[8 * slot : 8 * slot + 8], "little")

    def entries(self, table_mfn: int) -> list[int]:
        """The 512 entries of the table in frame ``table_mfn``, from machine memory
        (all zero for a frame beyond memory, like :meth:`entry`)."""
        if not 0 <= table_mfn < self.xen.total_frames:
            return [0] * 512
        raw = self.xen.read_frame(table_mfn)
        return list(struct.unpack(f"<{len(raw) // 8}Q", raw))

    def tables_below(self, l4: int) -> list[tuple[int, int]]:
        """``(level, mfn)`` of every table the user half (slots 0-255) of the L4 in
        frame ``l4`` reaches, each once, parents before their children."""
        from hypervisor import abi

        found: dict[tuple[int, int], None] = {}
        todo = [(4, l4)]
        while todo:
            level, mfn = todo.pop()
            if level == 1:
                continue
            for e in self.entries(mfn)[: 256 if level == 4 else 512]:
                child = abi.pte_mfn(e)
                live = e & abi._PAGE_PRESENT and 0 < child < self.xen.total_frames
                if live and (level - 1, child) not in found:
                    found[(level - 1, child)] = None
                    todo.append((level - 1, child))
        return list(found)

    def walk(self, top_mfn: int, va: int, *, user: bool = True) -> int | None:
        """The leaf entry mapping ``va`` from the L4 in ``top_mfn`` (None if any level is
        not present, or, for ``user``, not marked user)."""
        from hypervisor import abi

        mfn = top_mfn
        entry = 0
        for level in (4, 3, 2, 1):
            slot = (va >> (12 + 9 * (level - 1))) & 511
            entry = self.entry(mfn, slot)
            need = USER_FLAGS_NEEDED if user else abi._PAGE_PRESENT
            if entry & need != need:
                return None
            mfn = abi.pte_mfn(entry)
        return entry

    def read(self, top_mfn: int, va: int, n: int, *, user: bool = True) -> bytes | None:
        """``n`` bytes at ``va`` through the tree at ``top_mfn`` (None if not all mapped)."""
        from hypervisor import abi

        out = bytearray()
        while n > 0:
            leaf = self.walk(top_mfn, va, user=user)
            if leaf is None:
                return None
            off = va & 0xFFF
            size = min(n, abi.PAGE_SIZE - off)
            out += self.xen.read_frame(abi.pte_mfn(leaf))[off : off + size]
            va, n = va + size, n - size
        return bytes(out)

    def read_user(self, pid: int, va: int, n: int) -> bytes | None:
        """What process ``pid``'s user code reads at ``va`` (through its user L4)."""
        return self.read(self.process(pid).user_l4, va, n, user=True)
