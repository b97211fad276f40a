"""``Hypervisor``: the simulated machine running Xen, and ``Domain`` handles."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from hypervisor import abi
from hypervisor.argcheck import need_bool, need_instance, need_int
from hypervisor.builder import build_domain
from hypervisor.config import Config
from hypervisor.console import Refusal
from hypervisor.hypercalls import TABLE
from hypervisor.mm.audit import Violation, audit
from hypervisor.mm.domain import PvDomain
from hypervisor.mm.frames import FrameInfo, PageInfo, PageType
from hypervisor.mm.state import INVALID_M2P_ENTRY, IO_FRAMES, XEN_FRAMES, XenState
from hypervisor.trace import DomainSpec, Tracer
from hypervisor.vcpu import VCpu

__all__ = ["MAX_FRAMES", "MAX_VCPUS", "Domain", "Hypervisor", "Stats"]

MAX_FRAMES = 1 << 40
"""x86-64's 52-bit physical addresses: 2**40 frames of 4 KiB."""
MAX_VCPUS = 512
"""More vCPUs than any lesson needs (Xen's own limit for PV guests is higher)."""


class Domain:
    """A guest domain: its id, rights, width, vCPUs and boot information."""

    def __init__(
        self, state: PvDomain, vcpus: list[VCpu], start_info: abi.StartInfo, p2m: tuple[int, ...]
    ) -> None:
        self._d = state
        self.vcpus = vcpus
        self.start_info = start_info
        self.initial_p2m = p2m

    def __repr__(self) -> str:
        return f"<Domain d{self.domid} {self.guest_width}-bit, {self.start_info.nr_pages} pages>"

    @property
    def domid(self) -> int:
        return self._d.domid

    @property
    def privileged(self) -> bool:
        return self._d.privileged

    @property
    def guest_width(self) -> int:
        return self._d.guest_width

    @property
    def levels(self) -> int:
        return self._d.levels

    @property
    def refusals(self) -> tuple[Refusal, ...]:
        """Every refusal of this domain's requests, oldest first (see
        :meth:`Hypervisor.console`)."""
        return self._d.console.read()

    @property
    def vm_assist(self) -> int:
        """The enabled VMASST_TYPE_* bits."""
        return self._d.vm_assist


@attrs.frozen
class Stats:
    """A snapshot of the hypervisor's counters."""

    hypercalls: Mapping[str, int]
    """Calls per hypercall name (multicall sub-calls included)."""
    total_hypercalls: int
    requests: int
    """mmu_update requests and mmuext_op ops submitted."""
    trapped_writes: int
    page_faults: int
    tlb_flushes: int


class Hypervisor:
    """A machine of ``total_frames`` 4 KiB frames running Xen's PV MMU rules.

    MFNs below 256 (the first MiB) belong to DOMID_IO and the next 16 to Xen.
    """

    def __init__(self, total_frames: int = 16384, config: Config | None = None) -> None:
        need_int("total_frames", total_frames, IO_FRAMES + XEN_FRAMES + 16, MAX_FRAMES)
        if config is not None:
            need_instance("config", config, Config, "a hypervisor.Config or None")
        self.config = config if config is not None else Config()
        self._xen = XenState(total_frames, self.config)
        self.domains: list[Domain] = []

    def __repr__(self) -> str:
        return f"<Hypervisor {self.total_frames} frames, {len(self.domains)} domains>"

    @property
    def total_frames(self) -> int:
        return self._xen.total_frames

    @property
    def state(self) -> XenState:
        """Xen's internal state (for the hypervisor track of the lessons and
        for rendering; a guest never sees it)."""
        return self._xen

    def create_domain(
        self, nr_pages: int, *, privileged: bool = False, guest_width: int = 64, vcpus: int = 1
    ) -> Domain:
        """Run the domain builder; domain ids are handed out 0, 1, 2, ...
        ValueError if the machine has too few free frames for it."""
        need_int("nr_pages", nr_pages, 1)
        need_bool("privileged", privileged)
        need_int("guest_width", guest_width)
        if guest_width not in (32, 64):
            raise ValueError(f"guest_width must be 32 or 64, not {guest_width}")
        need_int("vcpus", vcpus, 1, MAX_VCPUS)
        if nr_pages + 1 > self._xen.free_frame_count():
            raise ValueError(
                f"nr_pages {nr_pages} (+1 for shared_info) is more than the machine's "
                f"{self._xen.free_frame_count()} free frames"
            )
        tracer = self._xen.tracer
        spec = DomainSpec(nr_pages, privileged, guest_width, vcpus, len(tracer.records))
        built = build_domain(self._xen, len(self.domains), nr_pages, privileged, guest_width, vcpus)
        tracer.domains.append(spec)
        handles = [VCpu(self._xen, v) for v in built.domain.vcpus]
        dom = Domain(built.domain, handles, built.start_info, built.p2m)
        self.domains.append(dom)
        return dom

    def domain(self, domid: int) -> Domain:
        """The domain with id ``domid``; ValueError if there is none."""
        need_int("domid", domid)
        if not 0 <= domid < len(self.domains):
            raise ValueError(
                f"domid {domid}: there is no domain {domid} ({len(self.domains)} exist)"
            )
        return self.domains[domid]

    # -- introspection ------------------------------------------------------------

    def _check_mfn(self, mfn: int) -> None:
        need_int("mfn", mfn)
        if not 0 <= mfn < self.total_frames:
            raise ValueError(f"mfn {mfn:#x} is not a frame of this machine")

    def frame(self, mfn: int) -> FrameInfo:
        """A snapshot of frame ``mfn``'s metadata."""
        self._check_mfn(mfn)
        pg = self._xen.frames.get(abi.Mfn(mfn))
        if pg is None and mfn < IO_FRAMES:
            pg = PageInfo(abi.DOMID_IO, count=1, allocated=True, type=PageType.WRITABLE)
        return FrameInfo.from_page(mfn, pg)

    def m2p(self, mfn: int) -> int:
        """The M2P entry of ``mfn`` (INVALID_M2P_ENTRY when unset)."""
        self._check_mfn(mfn)
        return self._xen.m2p.get(abi.Mfn(mfn), INVALID_M2P_ENTRY)

    def read_frame(self, mfn: int) -> bytes:
        """The frame's 4096 bytes as the machine holds them."""
        self._check_mfn(mfn)
        return self._xen.mem.frame_bytes(mfn)

    def console(self, domid: int, clear: bool = False) -> tuple[Refusal, ...]:
        """Every refusal of domain ``domid``'s requests, oldest first (Xen's
        console, ``xl dmesg``): refused hypercalls, refused multicall entries,
        refused trapped writes; with ``clear`` the log is emptied
        (``xl dmesg -c``). See :mod:`hypervisor.console`."""
        need_int("domid", domid)
        need_bool("clear", clear)
        if domid not in self._xen.domains:
            raise ValueError(f"domid {domid}: there is no domain {domid}")
        return self._xen.domains[domid].console.read(clear)

    def audit(self) -> list[Violation]:
        """Recompute every count from first principles; empty when all is well."""
        return audit(self._xen)

    @property
    def trace(self) -> Tracer:
        return self._xen.tracer

    def free_frames(self) -> int:
        """Frames not owned by anyone."""
        return self._xen.free_frame_count()

    def stats(self) -> Stats:
        s = self._xen.stats
        names = [spec.name for spec in TABLE.values()]
        return Stats(
            hypercalls={n: s[n] for n in names if s[n]},
            total_hypercalls=s["hypercalls"],
            requests=s["requests"],
            trapped_writes=s["trapped_writes"],
            page_faults=s["page_faults"],
            tlb_flushes=s["tlb_flushes"],
        )
