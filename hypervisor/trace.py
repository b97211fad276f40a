"""The tracer: everything observable leaves the hypervisor through here.

Every hypercall, trapped write, page fault and TLB flush becomes a frozen
record stamped with a logical clock (it ticks per hypercall and per memory
access -- never the wall clock), so a trace is reproducible byte for byte and
can be replayed against a fresh hypervisor. Listeners (trio's Instrument
style) see records as they are made; the core never prints.

What a replay needs is recorded by default: every guest store
(:class:`StoreRecord`, compactly: a page of zeros is a few bytes of JSON) and
every load that walked the page tables (:class:`LoadRecord`: it filled the TLB
and set ACCESSED bits). The export (:meth:`Tracer.to_jsonl`) starts with a
:class:`TraceHeader` from which :mod:`hypervisor.replay` rebuilds the
starting machine.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from typing import Any

import attrs

__all__ = [
    "FORMAT",
    "DomainSpec",
    "FlushRecord",
    "from_jsonl",
    "header_json",
    "parse_jsonl",
    "HypercallRecord",
    "LoadRecord",
    "PageFaultRecord",
    "Record",
    "StoreRecord",
    "TraceFormatError",
    "TraceHeader",
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
    """A guest write to memory, made before the access (recorded while
    ``Tracer.record_stores``, the default), so that a run which fills tables
    with plain stores can be replayed. ``data`` is the bytes written (a page
    of one repeated byte is shared, not copied); the JSON export writes them
    as ``data`` (hex, without the trailing run of one byte value), ``pad``
    (that value) and ``length``, so a zeroed page costs a few bytes."""

    clock: int
    domid: int
    vcpu: int
    va: int
    data: bytes
    user: bool
    op: str = "write"
    """``"store"`` (one access of 1-8 bytes) or ``"write"`` (a byte run)."""
    kind: str = "store"

    @classmethod
    def of(
        cls, clock: int, domid: int, vcpu: int, va: int, data: bytes, user: bool, op: str
    ) -> StoreRecord:
        """The record of writing ``data`` (a full page of one byte value is
        replaced by a shared copy, so zeroing pages keeps no memory)."""
        return cls(clock, domid, vcpu, va, _shared(data), user, op)

    def payload(self) -> bytes:
        """The bytes that were written."""
        return self.data


PAGE_BYTES = 4096
_UNIFORM_PAGES = [bytes((b,)) * PAGE_BYTES for b in range(256)]


def _shared(data: bytes) -> bytes:
    """``data``, or the shared copy of it if it is a page of one byte value."""
    if len(data) == PAGE_BYTES and data[0] == data[-1]:
        same = _UNIFORM_PAGES[data[0]]
        if data == same:
            return same
    return data


MAX_ACCESS = 1 << 24
"""The longest store or load a parsed trace may ask for (16 MiB)."""


def _store_json(rec: StoreRecord) -> dict[str, Any]:
    """The JSON object of a store: trailing run of one byte kept as pad/length."""
    data = rec.data
    pad = data[-1] if data else 0
    end = len(data)
    if pad == 0:
        end = (int.from_bytes(data, "little").bit_length() + 7) // 8
    elif data == bytes((pad,)) * end:
        end = 0
    else:
        while end and data[end - 1] == pad:
            end -= 1
    out = _fields(rec)
    out.update(data=data[:end].hex(), length=len(data), pad=pad)
    return out


def _store_record(data: dict[str, Any], line: int) -> StoreRecord:
    """A store back from its JSON object (see :func:`_store_json`)."""
    body, length, pad = data.pop("data", None), data.pop("length", None), data.pop("pad", 0)
    if not isinstance(body, str) or type(length) is not int or type(pad) is not int:
        raise TraceFormatError(line, "a store needs 'data' (hex), 'length' and 'pad' (ints)")
    try:
        raw = bytes.fromhex(body)
    except ValueError:
        raise TraceFormatError(line, "a store's 'data' must be hex") from None
    if not 0 <= pad <= 255 or not len(raw) <= length <= MAX_ACCESS:
        raise TraceFormatError(line, f"a store of {length} bytes with pad {pad} is impossible")
    data["data"] = b""
    rec: StoreRecord = _checked(StoreRecord, data, line, "a 'store' record")
    return attrs.evolve(rec, data=raw + bytes((pad,)) * (length - len(raw)))


@attrs.frozen
class LoadRecord:
    """A guest read whose page walk ran (a TLB miss: it filled the TLB and set
    ACCESSED bits) or faulted; reads served by the TLB change nothing and
    are not recorded. ``clock`` is the clock before the read."""

    clock: int
    domid: int
    vcpu: int
    va: int
    length: int
    user: bool
    kind: str = "load"


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


Record = (
    HypercallRecord | TrappedWriteRecord | PageFaultRecord | FlushRecord | StoreRecord | LoadRecord
)
Listener = Callable[[Record], None]
_RECORD_TYPES = (
    HypercallRecord,
    TrappedWriteRecord,
    PageFaultRecord,
    FlushRecord,
    StoreRecord,
    LoadRecord,
)

FORMAT = 1
"""The version of the JSON-lines trace format (the header's ``format``)."""


def _package_version() -> str:
    try:
        return metadata.version("minikern")
    except metadata.PackageNotFoundError:  # pragma: no cover - a bare checkout
        return "unknown"


@attrs.frozen
class DomainSpec:
    """One ``Hypervisor.create_domain`` call: its arguments, and ``at``, how
    many trace records had been made when it ran."""

    nr_pages: int
    privileged: bool
    guest_width: int
    vcpus: int
    at: int = 0


@attrs.frozen
class TraceHeader:
    """The first line of an exported trace: enough to rebuild the starting
    machine (``total_frames``, ``config`` knobs, every domain's creation) and
    to say where the trace came from (``version``, ``seed``, ``meta``).
    ``stores``: whether guest stores and table walks were recorded."""

    format: int
    version: str
    total_frames: int
    config: Mapping[str, Any]
    domains: tuple[DomainSpec, ...]
    seed: int | None = None
    meta: Mapping[str, Any] = attrs.Factory(dict)
    stores: bool = True
    kind: str = "header"


class TraceFormatError(ValueError):
    """A trace that cannot be read: ``line`` (1-based) says where."""

    def __init__(self, line: int, why: str) -> None:
        super().__init__(f"trace line {line}: {why}")
        self.line = line
        self.why = why


class Tracer:
    """Collects records in order; iterate it, or export JSON lines."""

    def __init__(self, total_frames: int = 0, config: Mapping[str, Any] | None = None) -> None:
        self.clock = 0
        self._records: list[Record | tuple[Any, ...]] = []
        self._raw_from = -1
        """Index of the first record kept as a ``(class, *fields)`` tuple, not
        made yet (-1: none; see :meth:`defer`)."""
        self.enabled = True
        self.record_stores = True
        """Record guest stores and table-walking loads (what a replay needs)."""
        self.total_frames = total_frames
        self.config: Mapping[str, Any] = dict(config or {})
        self.domains: list[DomainSpec] = []
        """Every domain created on the machine, in order (for the header)."""
        self.seed: int | None = None
        """The workload's seed, if the caller sets one (goes into the header)."""
        self.meta: dict[str, Any] = {}
        """Free JSON-able notes for the header (e.g. a lesson id)."""
        self._listeners: list[Listener] = []

    def tick(self) -> int:
        """Advance the logical clock by one and return it."""
        self.clock += 1
        return self.clock

    @property
    def records(self) -> list[Record]:
        """Every record so far, in order."""
        if self._raw_from >= 0:
            self._make_pending()
        return self._records  # type: ignore[return-value]

    def _make_pending(self) -> None:
        """Make the records kept as ``(class, *fields)`` tuples (:meth:`defer`)."""
        recs = self._records
        for i in range(self._raw_from, len(recs)):
            r = recs[i]
            if type(r) is tuple:
                recs[i] = r[0](*r[1:])
        self._raw_from = -1

    def emit(self, record: Record) -> None:
        """Append ``record`` (if enabled) and show it to every listener."""
        if not isinstance(record, _RECORD_TYPES):
            raise TypeError(f"record must be a trace record, not {type(record).__name__}")
        if self.enabled:
            self._records.append(record)
        for listener in self._listeners:
            listener(record)

    def defer(self, cls: type[Record], *fields: Any) -> None:
        """Record ``cls(*fields)`` (if enabled). With no listener the record
        is made only when ``records`` is read: a kernel's run makes hundreds
        of records for every one anyone reads."""
        if self._listeners:
            self.emit(cls(*fields))
        elif self.enabled:
            if self._raw_from < 0:
                self._raw_from = len(self._records)
            self._records.append((cls, *fields))

    def store(
        self, clock: int, domid: int, vcpu: int, va: int, data: bytes, user: bool, op: str
    ) -> None:
        """Record a guest store (:class:`StoreRecord` fields, in order), a
        page of one byte value as the shared copy (:meth:`defer`)."""
        if self._listeners:
            self.emit(StoreRecord.of(clock, domid, vcpu, va, data, user, op))
        elif self.enabled:
            if self._raw_from < 0:
                self._raw_from = len(self._records)
            self._records.append((StoreRecord, clock, domid, vcpu, va, _shared(data), user, op))

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(record)`` for every record made from now on."""
        if not callable(listener):
            raise TypeError(f"listener must be callable, not {type(listener).__name__}")
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``; ValueError if it was never added."""
        if listener not in self._listeners:
            raise ValueError(f"listener {listener!r:.60} was never added")
        self._listeners.remove(listener)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def hypercalls(self) -> list[HypercallRecord]:
        return [r for r in self.records if isinstance(r, HypercallRecord)]

    def header(self) -> TraceHeader:
        """The header of this trace as it stands now."""
        return TraceHeader(
            FORMAT,
            _package_version(),
            self.total_frames,
            dict(self.config),
            tuple(self.domains),
            self.seed,
            dict(self.meta),
            self.record_stores,
        )

    def to_jsonl(self) -> str:
        """The whole trace, one JSON object per line: the header, then every
        record (request records become lists of their fields, so
        :func:`from_jsonl` gives replayable args)."""
        lines = [json.dumps(header_json(self.header()))]
        lines.extend(json.dumps(_record_json(r)) for r in self.records)
        return "\n".join(lines) + "\n"


_KINDS: dict[str, type[Any]] = {
    "hypercall": HypercallRecord,
    "trapped_write": TrappedWriteRecord,
    "page_fault": PageFaultRecord,
    "tlb_flush": FlushRecord,
    "store": StoreRecord,
    "load": LoadRecord,
}


def _record_json(record: Record) -> dict[str, Any]:
    if isinstance(record, StoreRecord):
        return _store_json(record)
    return {k: _jsonable(v) for k, v in _fields(record).items()}


def _fields(record: Any) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in attrs.fields(type(record))}


def _tupled(value: Any) -> Any:
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


_SCALARS: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "str": (str,),
    "bool": (bool,),
    "bytes": (bytes,),
    "int | None": (int, type(None)),
    "tuple[Any, ...]": (tuple,),
}


def _checked(cls: type[Any], data: dict[str, Any], line: int, what: str) -> Any:
    """``cls(**data)`` once every field is present with a value of its type."""
    names = {f.name for f in attrs.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise TraceFormatError(line, f"unknown field(s) {unknown} in {what}")
    for f in attrs.fields(cls):
        if f.name not in data:
            if f.default is attrs.NOTHING:
                raise TraceFormatError(line, f"{what} needs {f.name!r}")
            continue
        want = _SCALARS.get(str(f.type))
        value = data[f.name]
        if want is not None and (
            not isinstance(value, want) or (bool not in want and type(value) is bool)
        ):
            raise TraceFormatError(line, f"{f.name!r} must be {f.type}, not {value!r}")
    return cls(**data)


def header_json(header: TraceHeader) -> dict[str, Any]:
    """The header as a JSON object (``kind`` first; domains as objects)."""
    fields = _fields(header)
    fields["domains"] = [_fields(d) for d in header.domains]
    return {"kind": fields.pop("kind"), **_jsonable(fields)}


def _header(data: dict[str, Any], line: int) -> TraceHeader:
    if not isinstance(data.get("config"), dict) or not isinstance(data.get("meta", {}), dict):
        raise TraceFormatError(line, "the header's 'config' and 'meta' must be objects")
    domains = data.get("domains")
    if not isinstance(domains, list) or not all(isinstance(d, dict) for d in domains):
        raise TraceFormatError(line, "the header's 'domains' must be a list of objects")
    specs = tuple(_checked(DomainSpec, d, line, "a header domain") for d in domains)
    header: TraceHeader = _checked(TraceHeader, {**data, "domains": specs}, line, "the header")
    return header


def parse_jsonl(text: str) -> tuple[TraceHeader | None, list[Record]]:
    """The header (None if the trace has none) and the records of a
    :meth:`Tracer.to_jsonl` export. Raises :class:`TraceFormatError`."""
    header: TraceHeader | None = None
    out: list[Record] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise TraceFormatError(n, f"not JSON ({exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
            raise TraceFormatError(n, "a record is a JSON object with a string 'kind'")
        if data["kind"] == "header":
            if header is not None or out:
                raise TraceFormatError(n, "the header must be the first line, and only one")
            header = _header(data, n)
            continue
        cls = _KINDS.get(data["kind"])
        if cls is None:
            raise TraceFormatError(n, f"unknown record kind {data['kind']!r}")
        if cls is StoreRecord:
            out.append(_store_record(data, n))
            continue
        if cls is HypercallRecord and isinstance(data.get("args"), list):
            data["args"] = _tupled(data["args"])
        rec = _checked(cls, data, n, f"a {data['kind']!r} record")
        if isinstance(rec, LoadRecord) and not 0 <= rec.length <= MAX_ACCESS:
            raise TraceFormatError(n, f"a load of {rec.length} bytes is impossible")
        out.append(rec)
    return header, out


def from_jsonl(text: str) -> list[Record]:
    """The records of :meth:`Tracer.to_jsonl` output (the header skipped)."""
    return parse_jsonl(text)[1]


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
