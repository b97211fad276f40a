"""The machine as Xen's memory-management code sees it: memory, the frame
table, the M2P, the domains, the version knobs, the tracer and the counters.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import attrs

from hypervisor.abi import DOMID_IO, DOMID_XEN, Mfn
from hypervisor.config import Config
from hypervisor.hw import Memory
from hypervisor.mm.domain import PvDomain, PvVcpu
from hypervisor.mm.frames import FrameTable, PageInfo, PageInfoArgs, PageType
from hypervisor.rules import FASTPATH_COMPARE
from hypervisor.trace import FlushRecord, Tracer

__all__ = ["IO_FRAMES", "INVALID_M2P_ENTRY", "XEN_FRAMES", "XenState"]

IO_FRAMES = 256
"""The first MiB of RAM belongs to DOMID_IO."""
XEN_FRAMES = 16
"""Frames owned by Xen itself, right after the first MiB; Xen's L4 slots
256-271 point at them. They are Xen-heap pages shared read-only with
DOMID_XEN (``share_xen_page_with_guest(..., SHARE_ro)``): type NONE with one
permanent type reference, so no domain can map them writable, pin them or
clear them."""
INVALID_M2P_ENTRY = (1 << 64) - 1


class XenState:
    """Everything the hypervisor keeps about the machine."""

    def __init__(self, total_frames: int, config: Config) -> None:
        self.config = config
        self.mem = Memory(total_frames)
        self.total_frames = total_frames
        self.frames = FrameTable()
        self.m2p: dict[Mfn, int] = {}
        self.domains: dict[int, PvDomain] = {}
        self.tracer = Tracer(total_frames, attrs.asdict(config))
        self.stats: Counter[str] = Counter()
        self.fast_l1, self.fast_upper = FASTPATH_COMPARE[config.fastpath]
        self.dom_io = PvDomain(DOMID_IO)
        self.dom_xen = PvDomain(DOMID_XEN)
        self._next_fresh = IO_FRAMES + XEN_FRAMES
        self._freed: list[Mfn] = []
        for mfn in range(IO_FRAMES, IO_FRAMES + XEN_FRAMES):
            self.frames[Mfn(mfn)] = PageInfo(
                DOMID_XEN, count=1, type_count=1, validated=True, xen_heap=True
            )

    # -- frames ---------------------------------------------------------------

    def is_io(self, mfn: Mfn) -> bool:
        """An I/O frame: not RAM, or RAM owned by DOMID_IO (the first MiB)."""
        return not 0 <= mfn < self.total_frames or mfn < IO_FRAMES

    def free_frame_count(self) -> int:
        return self.total_frames - self._next_fresh + len(self._freed)

    def alloc_frames(self, domid: int, n: int, *, mapped_writable: bool = False) -> list[Mfn]:
        """Hand ``n`` free frames to ``domid`` (allocated, zero-filled, M2P
        invalid). ``mapped_writable``: each frame also starts with the
        references of one writable mapping (a general and a writable type
        reference), as the domain builder's bootstrap mappings take them
        (dom0_build.c: ``get_page_and_type(page, d, PGT_writable_page)``)."""
        if n > self.free_frame_count():
            raise ValueError(f"machine has {self.free_frame_count()} free frames, {n} wanted")
        mfns = [self._freed.pop() for _ in range(min(n, len(self._freed)))]
        start = self._next_fresh
        self._next_fresh += n - len(mfns)
        fresh: Iterable[Mfn] = range(start, self._next_fresh)  # type: ignore[assignment]
        mfns.extend(fresh)
        fresh_info: PageInfoArgs = (
            (domid, 2, PageType.WRITABLE, 1, True, False, True)
            if mapped_writable
            else (domid, 1, PageType.NONE, 0, False, False, True)
        )
        self.frames.add_bulk(mfns, fresh_info)
        return mfns

    def free_frame(self, mfn: Mfn) -> None:
        """The last reference went: the frame returns to the heap, scrubbed."""
        del self.frames[mfn]
        self.m2p.pop(mfn, None)
        self.mem.zero(mfn)
        self._freed.append(mfn)

    def domain(self, domid: int) -> PvDomain | None:
        if domid == DOMID_IO:
            return self.dom_io
        if domid == DOMID_XEN:
            return self.dom_xen
        return self.domains.get(domid)

    # -- TLB flushes Xen performs -----------------------------------------------

    def flush_vcpu(self, v: PvVcpu, reason: str) -> None:
        """Flush one vCPU's whole TLB."""
        v.mmu.tlb.flush_all()
        self.stats["tlb_flushes"] += 1
        self.tracer.emit(
            FlushRecord(self.tracer.clock, v.domain.domid, v.vcpu_id, "all", 0, reason)
        )

    def flush_va(self, v: PvVcpu, va: int, reason: str) -> None:
        """Invalidate one page on one vCPU."""
        v.mmu.tlb.flush_va(va >> 12)
        self.stats["tlb_flushes"] += 1
        self.tracer.emit(
            FlushRecord(self.tracer.clock, v.domain.domid, v.vcpu_id, "va", va, reason)
        )

    def flush_domain(self, d: PvDomain, reason: str) -> None:
        for v in d.vcpus:
            self.flush_vcpu(v, reason)

    def type_change_flush(self, mfn: Mfn, owner: int | None) -> None:
        """A frame changes type: every vCPU of its owner is flushed, and every
        other vCPU forgets the translations that map the frame, so no stale
        writable translation outlives the change (mm.c _get_page_type)."""
        for d in self.domains.values():
            for v in d.vcpus:
                if not v.mmu.tlb.entries:
                    continue  # flushing an empty TLB changes nothing
                if d.domid == owner:
                    self.flush_vcpu(v, "type_change")
                else:
                    v.mmu.tlb.flush_mfn(mfn)
