"""The tracer: everything observable leaves the hypervisor through here.

Every hypercall, trapped write, page fault and TLB flush becomes a frozen
record stamped with a logical clock (it ticks per hypercall and per memory
access -- never the wall clock), so a trace is reproducible byte for byte and
can be replayed against a fresh hypervisor. Listeners (trio's Instrument
style) see records as they are made; the core never prints.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import attrs

__all__ = [
    "FlushRecord",
    "from_jsonl",
    "HypercallRecord",
    "PageFaultRecord",
    "Record",
    "StoreRecord",
    "Tracer",
    "TrappedWriteRecord",
]


@attrs.frozen
class HypercallRecord:
    """One hypercall: its arguments as decoded, ``result`` (0 or -errno) and
    ``done`` (requests completed). ``rule`` is the broken rule's id, if any."""

    clock: int
    domid: int
    vcpu: int
    op: str
    args: tuple[Any, ...]
    result: int
    done: int
    rule: str = ""
    depth: int = 0
    """0 for a call the guest made, 1 for a sub-call of a multicall."""
    kind: str = "hypercall"


@attrs.frozen
class TrappedWriteRecord:
    """A store through a read-only mapping of a live L1, emulated by Xen (ptwr)."""

    clock: int
    domid: int
    vcpu: int
    va: int
    mfn: int
    slot: int
    old: int
    new: int
    result: int
    rule: str = ""
    kind: str = "trapped_write"


@attrs.frozen
class StoreRecord:
    """A guest write to memory (recorded only with ``Tracer.record_stores``),
    so that a run which fills tables with plain stores can be replayed."""

    clock: int
    domid: int
    vcpu: int
    va: int
    data: str
    """The bytes written, in hex."""
    user: bool
    op: str = "write"
    """``"store"`` (one access of 1-8 bytes) or ``"write"`` (a byte run)."""
    kind: str = "store"


@attrs.frozen
class PageFaultRecord:
    """A page fault delivered to the guest."""

    clock: int
    domid: int
    vcpu: int
    va: int
    error_code: int
    kind: str = "page_fault"


@attrs.frozen
class FlushRecord:
    """A TLB flush: ``scope`` is ``"all"``, ``"va"`` or ``"mfn"``; ``reason`` says
    who asked (``"new_baseptr"``, ``"type_change"``, ``"l2plus_update"``, ...)."""

    clock: int
    domid: int
    vcpu: int
    scope: str
    target: int
    reason: str
    kind: str = "tlb_flush"


Record = HypercallRecord | TrappedWriteRecord | PageFaultRecord | FlushRecord | StoreRecord
Listener = Callable[[Record], None]


class Tracer:
    """Collects records in order; iterate it, or export JSON lines."""

    def __init__(self) -> None:
        self.clock = 0
        self.records: list[Record] = []
        self.enabled = True
        self.record_stores = False
        """Also record every guest write (off by default: it is every store)."""
        self._listeners: list[Listener] = []

    def tick(self) -> int:
        """Advance the logical clock by one and return it."""
        self.clock += 1
        return self.clock

    def emit(self, record: Record) -> None:
        if self.enabled:
            self.records.append(record)
        for listener in self._listeners:
            listener(record)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def hypercalls(self) -> list[HypercallRecord]:
        return [r for r in self.records if isinstance(r, HypercallRecord)]

    def to_jsonl(self) -> str:
        """The whole trace, one JSON object per line (request records become
        lists of their fields, so :func:`from_jsonl` gives replayable args)."""
        return "".join(json.dumps(_jsonable(_fields(r))) + "\n" for r in self.records)


_KINDS: dict[str, type[Any]] = {
    "hypercall": HypercallRecord,
    "trapped_write": TrappedWriteRecord,
    "page_fault": PageFaultRecord,
    "tlb_flush": FlushRecord,
    "store": StoreRecord,
}


def _fields(record: Record) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in attrs.fields(type(record))}


def _tupled(value: Any) -> Any:
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


def from_jsonl(text: str) -> list[Record]:
    """Records back from :meth:`Tracer.to_jsonl` output."""
    out: list[Record] = []
    for line in text.splitlines():
        if line.strip():
            data = json.loads(line)
            cls = _KINDS[data["kind"]]
            if cls is HypercallRecord:
                data["args"] = _tupled(data["args"])
            out.append(cls(**data))
    return out


def _jsonable(value: Any) -> Any:
    if attrs.has(type(value)):  # a request record: its fields, in order
        return [_jsonable(getattr(value, f.name)) for f in attrs.fields(type(value))]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, int | str | float | bool) or value is None:
        return value
    return repr(value)
