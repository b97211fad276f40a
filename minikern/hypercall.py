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
hypervisor's explanation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import attrs

from hypervisor import abi
from minikern.errors import KernelPanic

__all__ = ["LINUX_PTE_BATCH", "MC_BATCH", "MMU_BATCH", "Hypercalls"]

MMU_BATCH = 512
"""Requests per ``mmu_update``: one page table's worth."""
MC_BATCH = 32
"""Entries per ``multicall`` (Linux's ``MC_BATCH``)."""
LINUX_PTE_BATCH = 31
"""PTE updates per flush in Linux (16-byte requests in a 512-byte argument area)."""

_MERGE = (abi.HYPERVISOR_mmu_update, abi.HYPERVISOR_mmuext_op)
_NAMES = {int(h): h.name for h in abi.Hypercall}


@attrs.define(eq=False)
class _Pending:
    """One queued hypercall; ``items`` grows while requests merge into it."""

    op: int
    items: list[Any]

    def args(self) -> tuple[Any, ...]:
        if self.op in _MERGE:
            return (list(self.items), abi.DOMID_SELF)
        return tuple(self.items)


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
        else:
            self._append(_Pending(op, [item]))
        self._queued()

    def mmu(self, ptr: int, val: int) -> None:
        """Queue one ``mmu_update`` request (``ptr`` carries the command)."""
        self._merge(abi.HYPERVISOR_mmu_update, abi.MmuUpdate(ptr, val), self.mmu_batch)

    def ext(self, cmd: int, arg1: int = 0, arg2: int = 0) -> None:
        """Queue one ``mmuext_op`` command."""
        self._merge(abi.HYPERVISOR_mmuext_op, abi.MmuExtOp(cmd, arg1, arg2), self.mmu_batch)

    def uvm(self, va: int, val: int, flags: int = abi.UVMF_NONE) -> None:
        """Queue one ``update_va_mapping``."""
        self._append(_Pending(abi.HYPERVISOR_update_va_mapping, [va, val, flags]))
        self._queued()

    def vm_assist(self, cmd: int, type: int) -> None:
        """HYPERVISOR_vm_assist, issued at once."""
        self.flush()
        self.issued += 1
        self.entries += 1
        try:
            self.vcpu.vm_assist(cmd, type)
        except OSError as exc:
            raise _refused("vm_assist", (cmd, type), exc) from exc

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
            raise _refused(_NAMES[p.op], args, exc) from exc

    def _multicall(self, batch: Sequence[_Pending]) -> None:
        """One multicall; every entry's result is checked."""
        if len(batch) == 1:
            self._direct(batch[0])
            return
        self.issued += 1
        self.entries += len(batch)
        calls = [abi.MulticallEntry(p.op, p.args()) for p in batch]
        try:
            results = self.vcpu.multicall(calls)
        except OSError as exc:
            raise _refused("multicall", (calls,), exc) from exc
        failed = [(i, r) for i, r in enumerate(results) if r != 0]
        if failed:
            what = "; ".join(
                f"entry {i} {_NAMES[batch[i].op]}{_short(batch[i].args())} -> -{abi.errno_name(r)}"
                for i, r in failed
            )
            raise KernelPanic(
                f"panic: {len(failed)} of {len(batch)} multicall entries failed: {what}",
                errno=-failed[0][1],
            )

    def now(self, *ops: tuple[int, int]) -> None:
        """Issue any queued work, then ``(cmd, arg1)`` commands as one ``mmuext_op``."""
        self.flush()
        items: list[Any] = [abi.MmuExtOp(cmd, arg1) for cmd, arg1 in ops]
        self._direct(_Pending(abi.HYPERVISOR_mmuext_op, items))


def _short(args: tuple[Any, ...]) -> str:
    text = repr(args)
    return text if len(text) < 160 else text[:157] + "..."


def _refused(name: str, args: tuple[Any, ...], exc: OSError) -> KernelPanic:
    """Xen refused a call the kernel made: the kernel's bug, said loudly."""
    rule = str(getattr(exc, "rule", ""))
    return KernelPanic(
        f"panic: Xen refused {name}{_short(args)}: {exc}", rule=rule, errno=exc.errno or 0
    )
