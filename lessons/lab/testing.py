"""What a lesson's test files are written with.

A test file (``lessons/<id>/tests/test_*.py``, hidden ones under ``tests/hidden/``) holds

- **workloads**: ``@workload(plan=...)`` functions that drive the kernel. A workload runs in
  the child process, with the student's lesson functions installed and every other lesson
  function the reference. Its ``plan`` function turns a seeded :class:`random.Random` into a
  JSON-able dict (addresses, bytes, counts); the grader makes the plan and sends it to the
  child, so the child never learns the seed.
- **batteries** (hypervisor track): ``@battery(plan=..., frames=..., guests=...)`` functions
  ``(h: Host, plan)`` that drive hypercalls, stores and loads from one or more domains on a
  hypervisor running the student's lesson functions. A battery is open-loop: what it issues
  depends only on the plan, never on results, so the grader runs the same battery on its own
  trusted hypervisor and compares every operation's outcome (see :class:`Host`).
- **checks**: ``@check(workload, points=N, name="...")`` functions. A check runs in the
  grader, never in the child, on a :class:`Machine`: a fresh, trusted hypervisor on which the
  grader replayed what the child's workload did. It raises :class:`Fail` (or calls
  :func:`expect`) when a property of the machine does not hold. Each check is one test with
  its points; several checks may share one workload (it runs once). A check on a battery
  gets a :class:`Comparison` instead: the trusted run and its divergences from the child's.

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
    "Battery",
    "Check",
    "Comparison",
    "Divergence",
    "Dom",
    "Fail",
    "Guest",
    "Host",
    "Machine",
    "Plan",
    "ProcessView",
    "Workload",
    "battery",
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
    """One test: ``fn(machine, plan)`` on the replayed machine of ``workload`` (or
    ``fn(comparison, plan)`` when ``workload`` is a :class:`Battery`)."""

    key: str
    """The check function's name (``-k`` matches it and ``name``)."""
    name: str
    points: int
    workload: Workload | Battery
    fn: Callable[[Any, Plan], None]


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
    on: Workload | Battery, *, points: int, name: str
) -> Callable[[Callable[[Any, Plan], None]], Check]:
    """Declare a test worth ``points`` evaluated on ``on``'s replayed machine, or for a
    battery on the :class:`Comparison` of its two runs (decorator)."""
    if type(points) is not int or points < 0:
        raise ValueError(f"points must be an int >= 0, not {points!r}")
    if not isinstance(on, Workload | Battery):
        raise TypeError(f"a check is on a @workload or a @battery, not {on!r:.80}")

    def deco(fn: Callable[[Any, Plan], None]) -> Check:
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


# -- batteries (hypervisor track) ---------------------------------------------------------

_OUTCOME_KEYS = ("status", "errno", "rule", "done", "value", "code")
"""What of an operation's outcome is compared (``error``, a crash's text, is not)."""
_DIGEST_FIELDS = ("count", "type_count", "type", "validated", "pinned")


@attrs.frozen
class Dom:
    """One domain a battery's machine is built with (``Hypervisor.create_domain``)."""

    nr_pages: int = 64
    privileged: bool = False
    guest_width: int = 64


@attrs.frozen
class Battery:
    """A battery: ``run(host, plan)`` issues hypercalls, stores and loads on a machine of
    ``frames`` frames with one domain per entry of ``guests``; ``plan(rng)`` picks its
    parameters from the seed. It is open-loop: it never looks at a result."""

    name: str
    run: Callable[[Host, Plan], None]
    plan: Callable[[random.Random], Plan]
    frames: int
    guests: tuple[Dom, ...]
    doc: str


def battery(
    *,
    plan: Callable[[random.Random], Plan] = _no_plan,
    frames: int = 1024,
    guests: tuple[Dom | int, ...] = (Dom(), Dom()),
) -> Callable[[Callable[[Host, Plan], None]], Battery]:
    """Declare a battery (decorator). ``guests``: a :class:`Dom` (or a page count) per
    domain, domain ids 0, 1, ... in that order."""
    doms = tuple(g if isinstance(g, Dom) else Dom(nr_pages=g) for g in guests)
    if not doms:
        raise ValueError("a battery needs at least one domain")

    def deco(fn: Callable[[Host, Plan], None]) -> Battery:
        doc = (fn.__doc__ or "").strip().splitlines()
        return Battery(fn.__name__, fn, plan, frames, doms, doc[0] if doc else "")

    return deco


BLAME: list[str] = []
"""The lesson function an exception last escaped from (the child's wrapper appends it)."""

Op = dict[str, Any]
"""One operation as recorded: ``i``, ``call`` (its text), ``labels``, ``out`` (the outcome:
``status`` ok | refused | fault | crashed, and ``errno``, ``rule``, ``done``, ``value``,
``code``, ``error`` as they apply) and ``digest`` (mfn -> the frame's count, type_count,
type, validated, pinned after it)."""


def _errno_name(number: int) -> str:
    import errno

    return errno.errorcode.get(abs(number), str(number))


def _flags_text(val: int) -> str:
    from hypervisor import abi

    if not val & abi._PAGE_PRESENT:
        return "not present"
    return "RW" if val & abi._PAGE_RW else "RO"


class Host:
    """What a battery drives: a fresh hypervisor with the battery's domains.

    Everything a battery does to the machine goes through the operation methods
    (:meth:`set_entry`, :meth:`mmu_update`, :meth:`mmuext`, :meth:`pin`, :meth:`unpin`,
    :meth:`update_va_mapping`, :meth:`store`, :meth:`load`, :meth:`audit`): each is one
    numbered operation whose outcome is recorded -- success with its value, Xen's refusal
    (errno, rule id, ``done``), a page fault, or a crash of the code under test -- with a
    digest of the frames it names. Nothing is raised to the battery, so it goes on.
    :meth:`case` labels the operations that follow; checks select divergences by label.

    The rest only reads: ``xen``, :meth:`domain`, :meth:`vcpu`, :meth:`mfn` (the domain
    builder's P2M), :meth:`va` (where the builder mapped a pfn), :meth:`l1` (the boot L1
    mapping pfns 0..511), :meth:`tables`, :meth:`free_pfn`, :meth:`entry`.
    """

    def __init__(self, b: Battery) -> None:
        from hypervisor import Hypervisor

        self.battery = b
        self.xen: Any = Hypervisor(total_frames=b.frames)
        for spec in b.guests:
            self.xen.create_domain(
                spec.nr_pages, privileged=spec.privileged, guest_width=spec.guest_width
            )
        self.ops: list[Op] = []
        self.labels: tuple[str, ...] = ()

    # -- reading the start-of-day machine ------------------------------------------------

    def domain(self, i: int) -> Any:
        return self.xen.domains[i]

    def vcpu(self, i: int, n: int = 0) -> Any:
        return self.xen.domains[i].vcpus[n]

    def mfn(self, i: int, pfn: int) -> int:
        """Domain ``i``'s mfn for ``pfn``, as the domain builder laid it out."""
        return int(self.xen.domains[i].initial_p2m[pfn])

    def va(self, i: int, pfn: int) -> int:
        """Where the domain builder mapped domain ``i``'s ``pfn`` (read-write, except its
        page tables); the boot L1's slot ``pfn % 512`` holds that mapping."""
        return int(self.xen.domains[i].start_info.virt_base) + pfn * 4096

    def tables(self, i: int) -> list[int]:
        """The pfns of domain ``i``'s bootstrap page tables, top level first (the L1s
        last)."""
        info = self.xen.domains[i].start_info
        first = (info.pt_base - info.virt_base) // 4096
        return list(range(first, first + info.nr_pt_frames))

    def l1(self, i: int, n: int = 0) -> int:
        """The mfn of domain ``i``'s ``n``-th boot L1 (it maps pfns ``512n..512n+511``;
        its slots beyond the domain's pages are empty)."""
        nr_l1 = -(-self.xen.domains[i].start_info.nr_pages // 512)
        return self.mfn(i, self.tables(i)[-nr_l1 + n])

    def free_pfn(self, i: int, n: int = 0) -> int:
        """The ``n``-th pfn of domain ``i`` that the builder left free (plain RW data)."""
        return self.tables(i)[-1] + 1 + n

    def entry(self, mfn: int, slot: int) -> int:
        """Entry ``slot`` of frame ``mfn`` as machine memory holds it now."""
        raw = self.xen.read_frame(mfn)
        return int.from_bytes(raw[8 * slot : 8 * slot + 8], "little")

    # -- labels ----------------------------------------------------------------------------

    def case(self, *labels: str) -> _Case:
        """Label the operations that follow with ``labels`` (checks select divergences by
        them): ``with h.case("rw-pagetable"): ...`` for a block, or a bare call, which
        holds until the next one."""
        return _Case(self, tuple(labels))

    # -- operations --------------------------------------------------------------------------

    def set_entry(
        self,
        i: int,
        table: int,
        slot: int,
        val: int,
        *,
        level: int = 1,
        foreigndom: int | None = None,
        touch: tuple[int, ...] = (),
    ) -> None:
        """One ``mmu_update`` (``MMU_NORMAL_PT_UPDATE``) from domain ``i``: entry ``slot`` of
        the level-``level`` table in frame ``table`` becomes ``val``. Its value is the entry
        as stored afterwards; its digest covers the frame ``val`` maps and ``touch`` (not
        the table: one wrong count there would make every later update diverge)."""
        from hypervisor import abi

        fd = abi.DOMID_SELF if foreigndom is None else foreigndom
        call = f"mmu_update L{level} mfn {table:#x} slot {slot} <- {val:#x} ({_flags_text(val)})"
        if fd != abi.DOMID_SELF:
            call += f" foreigndom {fd:#x}"
        req = abi.MmuUpdate((table << 12) + 8 * slot, val)
        mapped = (abi.pte_mfn(val),) if val & abi._PAGE_PRESENT else ()

        def action() -> Any:
            self.vcpu(i).mmu_update([req], fd)
            return self.entry(table, slot)

        self._op(i, call, (*mapped, *touch), action, "update")

    def mmu_update(
        self,
        i: int,
        reqs: list[tuple[int, int]],
        foreigndom: int | None = None,
        *,
        touch: tuple[int, ...] = (),
    ) -> None:
        """``mmu_update`` of ``(ptr, val)`` requests from domain ``i``; its value is the
        number done; its digest covers each request's frame and ``touch``."""
        from hypervisor import abi

        fd = abi.DOMID_SELF if foreigndom is None else foreigndom
        text = ", ".join(f"{p:#x} <- {v:#x}" for p, v in reqs)
        call = f"mmu_update [{text}]" + (f" foreigndom {fd:#x}" if fd != abi.DOMID_SELF else "")
        frames = tuple(p >> 12 for p, _ in reqs)
        self._op(
            i,
            call,
            (*frames, *touch),
            lambda: self.vcpu(i).mmu_update([abi.MmuUpdate(p, v) for p, v in reqs], fd),
        )

    def mmuext(
        self,
        i: int,
        cmd: int,
        arg1: int = 0,
        arg2: int = 0,
        *,
        foreigndom: int | None = None,
        touch: tuple[int, ...] = (),
    ) -> None:
        """One ``mmuext_op`` from domain ``i``; its digest covers ``arg1`` (as an mfn) and
        ``touch``."""
        from hypervisor import abi

        fd = abi.DOMID_SELF if foreigndom is None else foreigndom
        names = {v: k for k, v in vars(abi).items() if k.startswith("MMUEXT_") and type(v) is int}
        call = f"mmuext_op {names.get(cmd, cmd)} {arg1:#x}" + (f" {arg2:#x}" if arg2 else "")
        if fd != abi.DOMID_SELF:
            call += f" foreigndom {fd:#x}"
        self._op(
            i,
            call,
            (arg1, *touch),
            lambda: self.vcpu(i).mmuext_op([abi.MmuExtOp(cmd, arg1, arg2)], fd),
        )

    def pin(self, i: int, level: int, mfn: int) -> None:
        """``MMUEXT_PIN_L<level>_TABLE`` of ``mfn`` from domain ``i``."""
        self.mmuext(i, level - 1, mfn)  # MMUEXT_PIN_L1_TABLE is 0 ... L4 is 3

    def unpin(self, i: int, mfn: int) -> None:
        from hypervisor import abi

        self.mmuext(i, abi.MMUEXT_UNPIN_TABLE, mfn)

    def update_va_mapping(self, i: int, va: int, val: int, flags: int = 2) -> None:
        """``update_va_mapping`` of ``va`` to ``val`` from domain ``i`` (default flags
        ``UVMF_INVLPG``); its digest covers the frame ``val`` maps."""
        from hypervisor import abi

        call = f"update_va_mapping {va:#x} <- {val:#x} ({_flags_text(val)})"
        mapped = (abi.pte_mfn(val),) if val & abi._PAGE_PRESENT else ()
        self._op(i, call, mapped, lambda: self.vcpu(i).update_va_mapping(va, val, flags))

    def store(self, i: int, va: int, value: int, size: int = 8) -> None:
        """A plain store by domain ``i``'s kernel (a trapped write if ``va`` is a read-only
        mapping of a live L1)."""
        call = f"store {value:#x} at {va:#x}"
        self._op(i, call, (), lambda: self.vcpu(i).store(va, value, size), "store")

    def load(self, i: int, va: int, n: int = 8) -> None:
        """``n`` bytes read by domain ``i``'s kernel at ``va``; its value is their hex."""
        call = f"load {n} bytes at {va:#x}"
        self._op(i, call, (), lambda: self.vcpu(i).read(va, n).hex(), "load")

    def audit(self) -> None:
        """The machine's audit; its value is how many violations it found."""
        self._op(-1, "audit", (), lambda: len(self.xen.audit()), "audit")

    # -- recording -----------------------------------------------------------------------------

    def _op(
        self,
        i: int,
        call: str,
        touch: tuple[int, ...],
        action: Callable[[], Any],
        kind: str = "call",
    ) -> None:
        from hypervisor.errors import HypercallError, PageFault

        out: dict[str, Any]
        BLAME.clear()
        try:
            value = action()
            out = {"status": "ok"}
            if value is not None:
                out["value"] = value
        except HypercallError as exc:
            errno = exc.errno or 0
            out = {"status": "refused", "errno": _errno_name(errno), "rule": exc.rule}
            out["done"] = exc.done
        except PageFault as exc:
            out = {"status": "fault", "code": exc.error_code}
        except BaseException as exc:  # the code under test crashed inside the hypervisor
            out = {"status": "crashed", "error": f"{type(exc).__name__}: {exc}"[:500]}
            step, cause = getattr(exc, "step", None), getattr(exc, "cause", None)
            if isinstance(step, str) and isinstance(cause, str):  # the seam's LessonFunctionError
                out["error"], out["in"] = cause[:500], step.rpartition(":")[2]
            elif BLAME:
                out["in"] = BLAME[-1]
        prefix = f"d{i} " if i >= 0 and len(self.battery.guests) > 1 else ""
        digest = {f"{m:#x}": self._digest(m) for m in dict.fromkeys(touch)}
        self.ops.append(
            {
                "i": len(self.ops),
                "call": prefix + call,
                "kind": kind,
                "labels": list(self.labels),
                "out": out,
                "digest": digest,
            }
        )

    def _digest(self, mfn: int) -> list[Any]:
        try:
            if not 0 <= mfn < self.xen.total_frames:
                return ["outside memory"]
            f = self.xen.frame(mfn)
            return [int(f.count), int(f.type_count), f.type.name, bool(f.validated), bool(f.pinned)]
        except Exception as exc:  # state the code under test left unreadable
            return [f"unreadable: {type(exc).__name__}"]


class _Case:
    def __init__(self, host: Host, labels: tuple[str, ...]) -> None:
        self.host, self.before = host, host.labels
        host.labels = labels

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self.host.labels = self.before


def run_battery(
    b: Battery, plan: Plan, install: Callable[[], None] | None = None
) -> tuple[Host, str]:
    """Run ``b`` on a fresh :class:`Host`: the host, and the error that stopped the battery
    itself ("" when it ran to its end). ``install`` runs once the start-of-day machine is
    built (the domain builder validates the boot tables with the reference) and before
    the battery: the child installs the student's functions there."""
    host = Host(b)
    try:
        if install is not None:
            install()
        b.run(host, plan)
    except BaseException as exc:
        return host, f"{type(exc).__name__}: {exc}"[:2000]
    return host, ""


# -- comparing two runs of a battery (the grader side) ---------------------------------------


def _outcome(out: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(out.get(k) for k in _OUTCOME_KEYS)


_OK = {
    "update": ("allowed it (stored {v})", "allows it (stored {v})"),
    "call": ("allowed it", "allows it"),
    "load": ("it read {v}", "it reads {v}"),
    "store": ("the store went through", "the store goes through"),
    "audit": ("the audit found {v} problems", "its audit finds {v}"),
}


def _verdict(out: dict[str, Any] | None, kind: str, yours: bool, who: str = "") -> str:
    """An outcome in words, to follow ``your get_page_from_l1e`` / ``with your ...`` (when
    ``yours``) or ``Xen`` / ``on Xen``."""
    if out is None:
        return "never got to it (your run of the battery stopped before)"
    status = out.get("status")
    if status == "ok":
        mine, xens = _OK.get(kind, _OK["call"])
        return (mine if yours else xens).format(v=_short(out.get("value")))
    if status == "refused":
        said = "refused it" if yours else "refuses it"
        return f"{said} with {out.get('errno')} ({out.get('rule')})"
    if status == "fault":
        code = out.get("code")
        return f"it page-faulted (code {code})" if yours else f"it page-faults (code {code})"
    if status == "crashed":
        where = f" in {out['in']}" if out.get("in") and str(out["in"]) not in who else ""
        return f"raised {out.get('error', '')}{where}"
    return f"did something else ({status!r:.40})"


def describe(out: dict[str, Any] | None, kind: str, yours: bool) -> str:
    """An operation's outcome in a few words (``yours``: the student's run)."""
    return _verdict(out, kind, yours)


def _short(value: Any) -> str:
    text = f"{value:#x}" if type(value) is int else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


@attrs.frozen
class Divergence:
    """Operation ``index`` came out differently in the student's run: ``yours`` (None:
    never reported) and ``xen``'s outcomes, ``frames`` the digest differences in words,
    ``labels`` the battery's labels on it (from the trusted run)."""

    index: int
    call: str
    labels: tuple[str, ...]
    yours: dict[str, Any] | None
    xen: dict[str, Any]
    frames: tuple[str, ...]
    kind: str = "call"
    """What the operation is: ``update`` (an entry written by a hypercall), ``call``
    (another hypercall), ``load``, ``store`` or ``audit``."""

    @property
    def your_value(self) -> Any:
        """The value the student's run reported for this operation (what a load read, the
        entry stored, ...; None if there was none)."""
        return self.yours.get("value") if self.yours is not None else None

    @property
    def rule(self) -> str:
        """The rule a hint is keyed by: Xen's refusal, else the student's, else
        ``lesson.counts`` (the outcome agrees, the frames do not)."""
        if self.yours is not None and _outcome(self.yours) == _outcome(self.xen):
            return "lesson.counts"
        for out in (self.xen, self.yours or {}):
            if out.get("status") == "refused" and out.get("rule"):
                return str(out["rule"])
        return ""

    def message(self, who: str = "your code") -> str:
        """``op 7 mmu_update ...: your get_page_from_l1e allowed it; Xen refuses it with
        EBUSY (l1.writable-pagetable): principle -- fix``."""
        head = f"op {self.index} {self.call}: "
        direct = self.kind in ("update", "call")
        mine = f"{who} " if direct else f"with {who} "
        xen = "Xen " if direct else "on Xen "
        if self.kind == "audit":
            mine, xen = f"with {who} ", "Xen: "
        yours = _verdict(self.yours, self.kind, True, who)
        if self.yours is not None and _outcome(self.yours) == _outcome(self.xen):
            text = f"{head}{mine}{yours} as on Xen, but the frames differ: "
            return text + "; ".join(self.frames)
        text = f"{head}{mine}{yours}; {xen}{_verdict(self.xen, self.kind, False)}"
        if self.xen.get("status") == "refused":
            from hypervisor.rules import RULES

            rule = RULES.get(str(self.xen.get("rule")))
            if rule is not None:
                text += f": {rule.principle} — {rule.fix}"
        if self.frames:
            text += ". Frames: " + "; ".join(self.frames)
        return text


def _frames_diff(yours: Any, xen: dict[str, Any]) -> tuple[str, ...]:
    out = []
    mine = yours if isinstance(yours, dict) else {}
    for mfn, want in xen.items():
        got = mine.get(mfn)
        if got == want:
            continue
        if not isinstance(got, list) or len(got) != len(want):
            out.append(f"mfn {mfn}: {_short(got)} (Xen {want})")
            continue
        parts = [
            f"{name} {g} (Xen {w})"
            for name, g, w in zip(_DIGEST_FIELDS, got, want, strict=False)
            if g != w
        ]
        out.append(f"mfn {mfn}: " + ", ".join(parts))
    return tuple(out)


def compare(xen_ops: list[Op], your_ops: list[Op]) -> list[Divergence]:
    """Every operation whose outcome or digest differs between the trusted run
    (``xen_ops``) and the student's (``your_ops``, already checked to be the same calls);
    an operation the student's run never reported diverges too."""
    out = []
    for i, want in enumerate(xen_ops):
        got = your_ops[i] if i < len(your_ops) else None
        yours = got["out"] if got is not None else None
        frames = _frames_diff(got["digest"] if got is not None else {}, want["digest"])
        if yours is None or _outcome(yours) != _outcome(want["out"]) or frames:
            labels = tuple(want["labels"])
            kind = str(want.get("kind", "call"))
            out.append(Divergence(i, want["call"], labels, yours, want["out"], frames, kind))
    return out


class Comparison:
    """What a battery's check looks at: the trusted run (``host``: its machine, ``xen``,
    and ``ops``, every operation with Xen's outcome), the ``plan``, and the
    ``divergences`` of the student's run from it, each tagged with the battery's labels.
    The student's outcomes are only ever compared, never believed."""

    def __init__(
        self, host: Host, plan: Plan, divergences: list[Divergence], who: str = "your code"
    ) -> None:
        self.host = host
        self.xen = host.xen
        self.ops = host.ops
        self.plan = plan
        self.divergences = divergences
        self.who = who
        self.yours: list[Op] = []
        """The student's run as the child reported it (for drawing it; never believed)."""
        self.stopped = ""
        """Why the student's run of the battery stopped early, as the child said ("")."""

    def labelled(self, label: str) -> list[Op]:
        """The trusted run's operations labelled ``label``."""
        return [op for op in self.ops if label in op["labels"]]

    def diverging(self, *labels: str) -> list[Divergence]:
        """The divergences tagged with any of ``labels`` (all of them with none)."""
        if not labels:
            return list(self.divergences)
        return [d for d in self.divergences if set(labels) & set(d.labels)]

    def expect_agrees(self, *labels: str, rule: str = "") -> None:
        """Fail with the first divergence tagged with any of ``labels`` (its message and
        rule, or ``rule``). Every label must name operations of the battery (a typo would
        make the check pass on anything: that is the lesson's bug, a ValueError)."""
        for label in labels:
            if not self.labelled(label):
                raise ValueError(f"no operation of the battery is labelled {label!r}")
        found = self.diverging(*labels)
        if found:
            first = found[0]
            more = f" (and {len(found) - 1} more such operations)" if len(found) > 1 else ""
            raise Fail(first.message(self.who) + more, rule or first.rule)
