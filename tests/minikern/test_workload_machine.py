"""A random workload against a plain model of each process's memory, with the
hypervisor's audit after every step: 64-bit and 32-bit PAE guests, both
strategies."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    precondition,
    rule,
)
from mkhelpers import PAGE, assert_audit_clean

from minikern import Kernel, Process, SegmentationFault

REGIONS = (0x400000, 0x5FE000, 0x7FFF_FFFF_C000)
"""Four pages each: plain, across an L1 boundary, at the top of user space."""
REGIONS_PAE = (0x400000, 0x3FFFE000, 0xBFFF_C000)
"""The same for a 32-bit PAE guest: plain, across an L2 (L3 slot) boundary,
at the top of user space (3 GiB)."""
Model = dict[int, tuple[str, bytearray]]

pages = st.tuples(st.integers(0, 2), st.integers(0, 3), st.integers(1, 4))
"""(region index, first page, page count)."""


class Workload(RuleBasedStateMachine):
    procs = Bundle("procs")

    def __init__(self) -> None:
        super().__init__()
        self.k = Kernel.boot(nr_pages=2048, strategy=self.strategy, guest_width=self.guest_width)
        self.model: dict[int, Model] = {}
        self.live: dict[int, Process] = {}

    strategy = "linux"
    guest_width = 64
    regions = REGIONS

    def _vas(self, where: tuple[int, int, int]) -> tuple[int, int]:
        region, first, count = where
        return self.regions[region] + first * PAGE, min(count, 4 - first)

    def _vpns(self, va: int, count: int) -> list[int]:
        return [(va >> 12) + i for i in range(count)]

    @precondition(lambda self: len(self.live) < 4)
    @rule(target=procs)
    def spawn(self) -> Process:
        p = self.k.spawn()
        self.model[p.pid], self.live[p.pid] = {}, p
        return p

    @precondition(lambda self: len(self.live) < 4)
    @rule(target=procs, p=procs)
    def fork(self, p: Process) -> object:
        if not p.alive:
            return multiple()
        c = self.k.fork(p)
        self.model[c.pid] = {v: (pr, bytearray(b)) for v, (pr, b) in self.model[p.pid].items()}
        self.live[c.pid] = c
        return c

    @rule(p=consumes(procs))
    def exit(self, p: Process) -> None:
        if p.alive:
            self.k.exit(p)
            del self.model[p.pid], self.live[p.pid]

    @rule(p=procs)
    def switch(self, p: Process) -> None:
        if p.alive:
            self.k.switch_to(p)

    @rule(p=procs, where=pages, prot=st.sampled_from(["r", "rw"]))
    def mmap(self, p: Process, where: tuple[int, int, int], prot: str) -> None:
        if not p.alive:
            return
        va, count = self._vas(where)
        p.mmap(va, count * PAGE, prot)
        for vpn in self._vpns(va, count):
            self.model[p.pid][vpn] = (prot, bytearray(PAGE))

    @rule(p=procs, where=pages)
    def munmap(self, p: Process, where: tuple[int, int, int]) -> None:
        if not p.alive:
            return
        va, count = self._vas(where)
        vpns, m = self._vpns(va, count), self.model[p.pid]
        if all(v in m for v in vpns):
            p.munmap(va, count * PAGE)
            for v in vpns:
                del m[v]
        else:
            try:
                p.munmap(va, count * PAGE)
            except SegmentationFault:
                return
            raise AssertionError("munmap of unmapped pages succeeded")

    @rule(p=procs, where=pages, prot=st.sampled_from(["r", "rw"]))
    def mprotect(self, p: Process, where: tuple[int, int, int], prot: str) -> None:
        if not p.alive:
            return
        va, count = self._vas(where)
        vpns, m = self._vpns(va, count), self.model[p.pid]
        if all(v in m for v in vpns):
            p.mprotect(va, count * PAGE, prot)
            for v in vpns:
                m[v] = (prot, m[v][1])
        else:
            try:
                p.mprotect(va, count * PAGE, prot)
            except SegmentationFault:
                return
            raise AssertionError("mprotect of unmapped pages succeeded")

    @rule(
        p=procs,
        where=pages,
        offset=st.integers(0, PAGE - 1),
        data=st.binary(min_size=1, max_size=16),
    )
    def write(self, p: Process, where: tuple[int, int, int], offset: int, data: bytes) -> None:
        if not p.alive:
            return
        va = self._vas(where)[0] + min(offset, PAGE - len(data))
        entry = self.model[p.pid].get(va >> 12)
        if entry is None or entry[0] != "rw":
            try:
                p.write(va, data)
            except SegmentationFault:
                return
            raise AssertionError("a bad write succeeded")
        p.write(va, data)
        entry[1][va & 0xFFF : (va & 0xFFF) + len(data)] = data

    @rule(p=procs, where=pages, offset=st.integers(0, PAGE - 1), n=st.integers(1, 32))
    def read(self, p: Process, where: tuple[int, int, int], offset: int, n: int) -> None:
        if not p.alive:
            return
        va = self._vas(where)[0] + min(offset, PAGE - n)
        entry = self.model[p.pid].get(va >> 12)
        if entry is None:
            try:
                p.read(va, n)
            except SegmentationFault:
                return
            raise AssertionError("a bad read succeeded")
        assert p.read(va, n) == bytes(entry[1][va & 0xFFF : (va & 0xFFF) + n])

    @invariant()
    def hypervisor_audit_is_clean(self) -> None:
        assert_audit_clean(self.k)

    @invariant()
    def no_frames_leak_once_all_exit(self) -> None:
        if not self.live:
            assert self.k.free_pages() == self.k.boot_free

    def teardown(self) -> None:
        for p in list(self.live.values()):
            self.k.exit(p)
        assert self.k.free_pages() == self.k.boot_free
        assert_audit_clean(self.k)


class MiniosWorkload(Workload):
    strategy = "minios"


class PaeWorkload(Workload):
    guest_width = 32
    regions = REGIONS_PAE


class PaeMiniosWorkload(PaeWorkload):
    strategy = "minios"


_SETTINGS = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestWorkloadLinux = Workload.TestCase
TestWorkloadLinux.settings = _SETTINGS
TestWorkloadMinios = MiniosWorkload.TestCase
TestWorkloadMinios.settings = _SETTINGS
_PAE_SETTINGS = settings(_SETTINGS, max_examples=10)
TestWorkloadPae = PaeWorkload.TestCase
TestWorkloadPae.settings = _PAE_SETTINGS
TestWorkloadPaeMinios = PaeMiniosWorkload.TestCase
TestWorkloadPaeMinios.settings = _PAE_SETTINGS
