"""The only door to Xen: hypercalls, and Linux's lazy-MMU batching.

Outside a :meth:`Hypercalls.lazy` section every queued request is issued at
once. Inside, requests queue up in order and leave as one hypercall when the
outermost section ends (or a batch fills up):

- consecutive page-table writes merge into one ``mmu_update`` of up to
  :data:`MMU_BATCH` requests (one L1's worth, like Mini-OS -- Linux stops at 31
  because its argument area is 512 bytes);
- consecutive ``mmuext_op`` commands merge into one ``mmuext_op``;
- a flush with one entry is issued directly, several become one ``multicall``
  of at most :data:`MC_BATCH` entries, and every entry's result is checked
  (Xen runs them all and reports each one; it never stops early).

A call Xen refuses is a kernel bug, raised as :class:`KernelPanic` with the
hypervisor's explanation, its errno and rule id, and the lesson function
(``minikern.steps``) that queued the refused request. Lesson 11's function
lives here: :func:`issue_multicall`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import attrs

from hypervisor import abi
from minikern import steps
from minikern.errors import KernelPanic, page_fault_of

__all__ = [
    "LINUX_PTE_BATCH",
    "MC_BATCH",
    "MMU_BATCH",
    "Console",
    "Hypercalls",
    "RefusalRecord",
    "issue_multicall",
    "kernel_faults",
]

MMU_BATCH = 512
"""Requests per ``mmu_update``: one page table's worth."""
MC_BATCH = 32
"""Entries per ``multicall`` (Linux's ``MC_BATCH``)."""
LINUX_PTE_BATCH = 31
"""PTE updates per flush in Linux (16-byte requests in a 512-byte argument area)."""

_MERGE = (abi.HYPERVISOR_mmu_update, abi.HYPERVISOR_mmuext_op)
_NAMES = {int(h): h.name for h in abi.Hypercall}
Chain = tuple[str, ...]


class RefusalRecord(Protocol):
    """One line of Xen's console as the kernel reads it (``hypervisor.console.Refusal``)."""

    @property
    def errno(self) -> int: ...
    @property
    def rule(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def done(self) -> int: ...
    @property
    def multicall_slot(self) -> int | None: ...
    @property
    def va(self) -> int | None: ...


Console = Callable[[], Sequence[RefusalRecord]]
"""Reads Xen's console: this domain's refusals, oldest first (``toolstack.dmesg``)."""


@attrs.define(eq=False)
class _Pending:
    """One queued hypercall; ``items`` grows while requests merge into it, and
    ``by[i]`` is the chain of lesson functions that queued ``items[i]``."""

    op: int
    items: list[Any]
    by: list[Chain]

    def args(self) -> tuple[Any, ...]:
        if self.op in _MERGE:
            return (list(self.items), abi.DOMID_SELF)
        return tuple(self.items)


@steps.swappable
def issue_multicall(
    vcpu: abi.GuestVCpu, calls: Sequence[abi.MulticallEntry]
) -> list[tuple[int, int]]:
    """Now: ``calls`` as one ``HYPERVISOR_multicall``. Xen runs every entry and
    writes each one's result (0 or -errno); it never stops early, so every
    result must be checked. Returns ``(index, result)`` of each entry that
    failed, in order (empty: all succeeded)."""
    results = vcpu.multicall(list(calls))
    return [(i, r) for i, r in enumerate(results) if r != 0]


@attrs.define(eq=False)
class Hypercalls:
    """The vCPU's hypercalls with a lazy-MMU queue. ``issued`` counts the
    hypercalls the kernel made (a multicall counts once), ``entries`` the
    hypercalls carried (a multicall's entries each count)."""

    vcpu: abi.GuestVCpu
    mmu_batch: int = MMU_BATCH
    mc_batch: int = MC_BATCH
    issued: int = 0
    entries: int = 0
    queue: list[_Pending] = attrs.Factory(list)
    depth: int = 0
    console: Console | None = None
    """Xen's console, read to quote Xen's explanation of a refused multicall
    entry or trapped write (None: the errno alone)."""

    # -- lazy mode -------------------------------------------------------------

    @contextmanager
    def lazy(self) -> Iterator[None]:
        """Queue everything inside; flush when the outermost section ends."""
        self.depth += 1
        try:
            yield
        except BaseException:
            self.depth -= 1
            if not self.depth:
                self.queue.clear()
            raise
        self.depth -= 1
        if not self.depth:
            self.flush()

    @contextmanager
    def limits(self, mmu_batch: int, mc_batch: int) -> Iterator[None]:
        """Smaller batches inside (Linux's: 31 requests, one call per flush);
        what was queued before is issued on entry, what is left on exit."""
        self.flush()
        saved = self.mmu_batch, self.mc_batch
        self.mmu_batch, self.mc_batch = mmu_batch, mc_batch
        try:
            yield
        finally:
            self.mmu_batch, self.mc_batch = saved
        self.flush()

    def _queued(self) -> None:
        """A request was queued: issue it now unless lazy."""
        if not self.depth:
            self.flush()

    def _append(self, p: _Pending) -> None:
        """Start a new queued call, issuing the queue first if it is full."""
        if len(self.queue) >= self.mc_batch:
            self.flush()
        self.queue.append(p)

    # -- queueing ------------------------------------------------------------------

    def _merge(self, op: int, item: Any, cap: int) -> None:
        last = self.queue[-1] if self.queue else None
        if last is not None and last.op == op and len(last.items) < cap:
            last.items.append(item)
            last.by.append(steps.queued_by())
        else:
            self._append(_Pending(op, [item], [steps.queued_by()]))
        self._queued()

    def mmu(self, ptr: int, val: int) -> None:
        """Queue one ``mmu_update`` request (``ptr`` carries the command)."""
        self._merge(abi.HYPERVISOR_mmu_update, abi.MmuUpdate(ptr, val), self.mmu_batch)

    def ext(self, cmd: int, arg1: int = 0, arg2: int = 0) -> None:
        """Queue one ``mmuext_op`` command."""
        self._merge(abi.HYPERVISOR_mmuext_op, abi.MmuExtOp(cmd, arg1, arg2), self.mmu_batch)

    def uvm(self, va: int, val: int, flags: int = abi.UVMF_NONE) -> None:
        """Queue one ``update_va_mapping``."""
        self._append(
            _Pending(abi.HYPERVISOR_update_va_mapping, [va, val, flags], [steps.queued_by()])
        )
        self._queued()

    def vm_assist(self, cmd: int, type: int) -> None:
        """HYPERVISOR_vm_assist, issued at once."""
        self.flush()
        self.issued += 1
        self.entries += 1
        try:
            self.vcpu.vm_assist(cmd, type)
        except OSError as exc:
            raise _refused(_Pending(abi.HYPERVISOR_vm_assist, [cmd, type], []), exc) from exc

    # -- issuing -------------------------------------------------------------------

    def flush(self) -> None:
        """Issue everything queued: one direct call, or multicalls of MC_BATCH."""
        pending, self.queue = self.queue, []
        if len(pending) == 1:
            self._direct(pending[0])
        for i in range(0, len(pending) if len(pending) > 1 else 0, self.mc_batch):
            self._multicall(pending[i : i + self.mc_batch])

    def _direct(self, p: _Pending) -> None:
        """Issue one hypercall outside a multicall."""
        self.issued += 1
        self.entries += 1
        args = p.args()
        try:
            if p.op == abi.HYPERVISOR_mmu_update:
                self.vcpu.mmu_update(*args)
            elif p.op == abi.HYPERVISOR_mmuext_op:
                self.vcpu.mmuext_op(*args)
            else:
                self.vcpu.update_va_mapping(*args)
        except OSError as exc:
            raise _refused(p, exc) from exc

    def _multicall(self, batch: Sequence[_Pending]) -> None:
        """One multicall (:func:`issue_multicall`); a failed entry is a panic."""
        if len(batch) == 1:
            self._direct(batch[0])
            return
        self.issued += 1
        self.entries += len(batch)
        calls = [abi.MulticallEntry(p.op, p.args()) for p in batch]
        try:
            failed = issue_multicall(self.vcpu, calls)
        except OSError as exc:
            raise _refused(_Pending(abi.HYPERVISOR_multicall, [calls], []), exc) from exc
        if not _is_failure_list(failed, len(batch)):
            raise KernelPanic(
                f"panic: issue_multicall returned {failed!r:.120}, not a list of "
                f"(entry index, -errno) pairs for the {len(batch)} entries",
                step=issue_multicall.__module__ + ":issue_multicall",
            )
        if failed:
            raise _entry_failed(batch, failed, self._refusals(len(failed)))

    def _refusals(self, n: int) -> dict[int, RefusalRecord]:
        """The console's last ``n`` refusals of multicall entries, by slot."""
        tail = self.console()[-n:] if self.console is not None else ()
        return {r.multicall_slot: r for r in tail if r.multicall_slot is not None}

    def trapped_write_refusal(self, va: int) -> RefusalRecord | None:
        """The console's last refusal if it is of a trapped write to ``va``."""
        tail = self.console()[-1:] if self.console is not None else ()
        return tail[0] if tail and tail[0].va == va else None

    def now(self, *ops: tuple[int, int]) -> None:
        """Issue any queued work, then ``(cmd, arg1)`` commands as one ``mmuext_op``."""
        self.flush()
        items: list[Any] = [abi.MmuExtOp(cmd, arg1) for cmd, arg1 in ops]
        by = [steps.queued_by()] * len(items)
        self._direct(_Pending(abi.HYPERVISOR_mmuext_op, items, by))


def _is_failure_list(failed: object, n: int) -> bool:
    """Is ``failed`` what :func:`issue_multicall` promises for ``n`` entries?"""
    return isinstance(failed, list) and all(
        isinstance(f, tuple)
        and len(f) == 2
        and type(f[0]) is int
        and type(f[1]) is int
        and 0 <= f[0] < n
        and f[1] < 0
        for f in failed
    )


# -- refusals, in words -------------------------------------------------------------------


def describe(op: int, item: Any) -> str:
    """One request in Xen's words, numbers in hex: ``MMUEXT_PIN_L4_TABLE mfn 0x1a2``."""
    if op == abi.HYPERVISOR_mmu_update and isinstance(item, abi.MmuUpdate):
        ptr, val = item.ptr, item.val
        cmd = _enum_name(abi.MmuCmd, ptr & 7) if isinstance(ptr, int) else "?"
        return f"{cmd} ptr {_hex(ptr)} val {_hex(val)}"
    if op == abi.HYPERVISOR_mmuext_op and isinstance(item, abi.MmuExtOp):
        return f"{_enum_name(abi.MmuExtCmd, item.cmd)} {_hex(item.arg1)}"
    if op == abi.HYPERVISOR_update_va_mapping and isinstance(item, list) and len(item) == 3:
        return f"va {_hex(item[0])} val {_hex(item[1])} flags {_hex(item[2])}"
    return repr(item)


def _hex(value: object) -> str:
    return f"{value:#x}" if isinstance(value, int) else repr(value)


def _enum_name(kind: Any, value: object) -> str:
    try:
        return str(kind(value).name)
    except (ValueError, TypeError):
        return f"command {value!r}"


def _requests(p: _Pending) -> list[tuple[str, Chain]]:
    """Each request of ``p`` in words, with the lesson functions that queued it."""
    if p.op in _MERGE:
        return [(describe(p.op, item), by) for item, by in zip(p.items, p.by, strict=False)]
    return [(describe(p.op, p.items), p.by[0] if p.by else ())]


def _blame(by: Chain) -> str:
    """``queued by minikern.recipe:pin_table (in minikern.build:pin_tree)``."""
    if not by:
        return "queued by the kernel itself (no lesson function)"
    outer = " < ".join(reversed(by[:-1]))
    return f"queued by {by[-1]}" + (f" (in {outer})" if outer else "")


def _panic(
    where: str, p: _Pending, done: int, errno: int, rule: str, message: str, more: str = ""
) -> KernelPanic:
    """The panic for request ``done`` of call ``p``, refused as ``errno``/``rule``
    with Xen's ``message``::

        panic: Xen refused mmuext_op (request 1 of 2): EINVAL [type.writable-mapped]
          MMUEXT_PIN_L4_TABLE 0x11c
          Xen: mfn 0x11c is still mapped writable by ...
          queued by minikern.recipe:pin_table (in minikern.build:pin_tree)
    """
    name = _NAMES.get(p.op, str(p.op))
    reqs = _requests(p)
    index = done if 0 <= done < len(reqs) else 0
    what, by = reqs[index] if reqs else (name, ())
    part = f" (request {index} of {len(reqs)})" if len(reqs) > 1 else ""
    tag = f" [{rule}]" if rule else ""
    xen = f"\n  Xen: {message}" if message else ""
    return KernelPanic(
        f"panic: Xen refused {where}{name}{part}: {abi.errno_name(errno)}{tag}\n"
        f"  {what}{xen}\n  {_blame(by)}{more}",
        rule=rule,
        errno=errno,
        step=by[-1] if by else "",
    )


def _refused(p: _Pending, exc: OSError) -> KernelPanic:
    """Xen refused the direct call ``p``: the kernel's bug, said loudly."""
    done = getattr(exc, "done", 0)
    rule = getattr(exc, "rule", "")
    return _panic(
        "",
        p,
        done if isinstance(done, int) else 0,
        exc.errno or 0,
        rule if isinstance(rule, str) else "",
        str(exc),
    )


def _entry_failed(
    batch: Sequence[_Pending], failed: list[tuple[int, int]], log: dict[int, RefusalRecord]
) -> KernelPanic:
    """Entries of a multicall failed: the first one in full (Xen's console
    has its explanation), the others listed."""
    index, result = failed[0]
    first = log.get(index)
    others = "".join(
        f"\n  also entry {i} {_NAMES.get(batch[i].op, '?')}: {abi.errno_name(r)}"
        + (f" [{log[i].rule}]" if i in log else "")
        for i, r in failed[1:]
    )
    return _panic(
        f"entry {index} of a multicall of {len(batch)}, ",
        batch[index],
        first.done if first is not None else 0,
        -result,
        first.rule if first is not None else "",
        first.message if first is not None else "",
        others,
    )


@contextmanager
def kernel_faults(hc: Hypercalls | None = None) -> Iterator[None]:
    """Inside, a page fault of the kernel's own access is a :class:`KernelPanic`
    (Linux's "unable to handle page fault" oops), naming the access and the
    lesson function that made it -- and, for a trapped write Xen refused,
    quoting Xen's console. Other exceptions pass through."""
    try:
        yield
    except Exception as exc:
        fault = page_fault_of(exc)
        if fault is None:
            raise
        raise _oops(exc, fault[0], fault[1], hc) from exc


def _oops(exc: Exception, va: int, code: int, hc: Hypercalls | None) -> KernelPanic:
    chain: Chain = getattr(exc, "minikern_steps", None) or ()
    access = "write" if code & 2 else "read"
    who = f" in {chain[-1]}" if chain else ""
    refusal = hc.trapped_write_refusal(va) if hc is not None and code & 2 else None
    xen = ""
    if refusal is not None:
        xen = f"\n  Xen refused the trapped write: {refusal.message} [{refusal.rule}]"
    return KernelPanic(
        f"panic: kernel page fault{who}: {access} at {va:#x} (error code {code:#x}): {exc}{xen}",
        rule=refusal.rule if refusal is not None else "",
        errno=refusal.errno if refusal is not None else 0,
        step=chain[-1] if chain else "",
    )
