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
    "HypercallRecord",
    "PageFaultRecord",
    "Record",
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


Record = HypercallRecord | TrappedWriteRecord | PageFaultRecord | FlushRecord
Listener = Callable[[Record], None]


class Tracer:
    """Collects records in order; iterate it, or export JSON lines."""

    def __init__(self) -> None:
        self.clock = 0
        self.records: list[Record] = []
        self.enabled = True
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
        """The whole trace, one JSON object per line."""
        return "".join(json.dumps(_jsonable(attrs.asdict(r))) + "\n" for r in self.records)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, int | str | float | bool) or value is None:
        return value
    return repr(value)
