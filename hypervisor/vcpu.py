"""``VCpu``: what a guest kernel can do on a CPU -- touch memory through the
MMU and its TLB, drop to user mode, and call Xen."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from hypervisor import abi
from hypervisor.argcheck import need_instance, need_int
from hypervisor.errors import PF_PRESENT, PF_USER, PF_WRITE, PageFault
from hypervisor.hw import WalkFault
from hypervisor.hypercalls import invoke
from hypervisor.hypercalls.common import guest_va_ok
from hypervisor.mm.domain import PvVcpu
from hypervisor.mm.ptwr import ptwr_emulate
from hypervisor.mm.state import XenState
from hypervisor.trace import LoadRecord, PageFaultRecord

__all__ = ["VCpu"]

_SIZES = (1, 2, 4, 8)
_NO_BASE = {
    False: "no kernel base is loaded (cr3 is 0): load one with MMUEXT_NEW_BASEPTR",
    True: "user mode, but no user base is loaded (user_base is 0):"
    " give the vCPU one with MMUEXT_NEW_USER_BASEPTR before running user code",
}
"""Why an access faults on a vCPU with no page table loaded, by mode."""


def _check_size(size: object) -> None:
    need_int("size", size)
    if size not in _SIZES:
        raise ValueError(f"size must be 1, 2, 4 or 8, not {size}")


class VCpu:
    """One virtual CPU of a domain (implements :class:`hypervisor.abi.GuestVCpu`)."""

    def __init__(self, xen: XenState, state: PvVcpu) -> None:
        self._xen = xen
        self._v = state
        self._tracer = xen.tracer
        self._mem = xen.mem

    def __repr__(self) -> str:
        return f"<VCpu d{self._v.domain.domid}v{self._v.vcpu_id} cr3={self.cr3:#x}>"

    # -- registers ---------------------------------------------------------------

    @property
    def vcpu_id(self) -> int:
        return self._v.vcpu_id

    @property
    def domid(self) -> int:
        return self._v.domain.domid

    @property
    def cr3(self) -> int:
        """MFN of the current kernel base (``guest_table``), 0 if none."""
        return self._v.guest_table

    @property
    def user_base(self) -> int:
        """MFN of the user base (``guest_table_user``), 0 if none."""
        return self._v.guest_table_user

    @property
    def in_user_mode(self) -> bool:
        return self._v.in_user_mode

    @property
    def tlb_size(self) -> int:
        """How many translations the TLB holds right now."""
        return len(self._v.mmu.tlb)

    @contextmanager
    def user_mode(self) -> Iterator[None]:
        """Run the accesses inside as user code: the user base is loaded
        (a 32-bit guest keeps its one base) and US is checked at every level."""
        v = self._v
        if v.in_user_mode:
            yield
            return
        v.in_user_mode = True
        v.mmu.root = v.guest_table if v.domain.is_32bit else v.guest_table_user
        try:
            yield
        finally:
            v.in_user_mode = False
            v.mmu.root = v.guest_table

    # -- memory ------------------------------------------------------------------

    def _fault(self, va: int, code: int, reason: str) -> PageFault:
        xen, v = self._xen, self._v
        xen.stats["page_faults"] += 1
        xen.tracer.emit(PageFaultRecord(xen.tracer.clock, v.domain.domid, v.vcpu_id, va, code))
        return PageFault(va, code, reason)

    def _translate(self, va: int, write: bool) -> int:
        """The frame behind ``va`` for this access, or a PageFault."""
        try:
            return self._walk(va, write)
        except WalkFault as f:
            raise self._fault(va, f.error_code, f.why) from None

    def _walk(self, va: int, write: bool) -> int:
        """Like :meth:`_translate`, but a failed walk stays a WalkFault."""
        v = self._v
        self._tracer.clock += 1
        if type(va) is not int or not guest_va_ok(v.domain, va):
            code = (PF_WRITE if write else 0) | (PF_USER if v.in_user_mode else 0)
            bad = va if type(va) is int else -1
            what = f"{va:#x}" if type(va) is int else repr(va)
            raise self._fault(bad, code | PF_PRESENT, f"{what} is not a guest address")
        if not v.mmu.root:
            code = (PF_WRITE if write else 0) | (PF_USER if v.in_user_mode else 0)
            raise WalkFault(va, code, v.domain.levels, _NO_BASE[v.in_user_mode])
        return v.mmu.translate(va, write=write, user=v.in_user_mode)

    def load(self, va: int, size: int = 8) -> int:
        """Read a little-endian integer of ``size`` bytes (1, 2, 4, 8) at ``va``."""
        _check_size(size)
        return int.from_bytes(self.read(va, size), "little")

    def store(self, va: int, value: int, size: int = 8) -> None:
        """Write ``value`` as ``size`` little-endian bytes at ``va``. A store
        through a read-only mapping of a live L1 may be emulated (ptwr)."""
        _check_size(size)
        need_int("value", value)
        if not 0 <= value < 1 << (8 * size):
            raise ValueError(f"value {value:#x} does not fit in {size} bytes")
        data = value.to_bytes(size, "little")
        self._record_store(va, data, "store")
        if type(va) is int and (va & 0xFFF) + size > 4096:
            # One access: both pages are translated before any byte is written.
            first = self._translate(va, write=True)
            second = self._translate((va | 0xFFF) + 1, write=True)
            split = 4096 - (va & 0xFFF)
            self._poke(first, va & 0xFFF, data[:split])
            self._poke(second, 0, data[split:])
            return
        try:
            mfn = self._walk(va, write=True)
        except WalkFault as f:
            if not f.error_code & PF_PRESENT or f.error_code & PF_USER:
                raise self._fault(va, f.error_code, f.why) from None
            why = ptwr_emulate(self._xen, self._v, va, value, size)
            if why is not None:
                raise self._fault(va, f.error_code, why) from None
            return
        self._poke(mfn, va & 0xFFF, data)

    def _record_store(self, va: int, data: bytes, op: str) -> None:
        tracer = self._tracer
        if tracer.record_stores:
            v = self._v
            at = va if type(va) is int else -1
            tracer.store(tracer.clock, v.domain.domid, v.vcpu_id, at, data, v.in_user_mode, op)

    def _poke(self, mfn: int, offset: int, data: bytes) -> None:
        """Raw bytes into a frame (writes to non-RAM frames are dropped)."""
        mem = self._mem
        if 0 <= mfn < mem.total_frames:  # mem.is_ram, inlined
            mem.write(mfn, offset, data)

    def read(self, va: int, n: int) -> bytes:
        """``n`` bytes from ``va`` (may cross pages). A read that walks the
        tables (or faults) is traced as a :class:`LoadRecord`."""
        need_int("n", n, 0)
        tracer, mmu = self._xen.tracer, self._v.mmu
        clock, walks = tracer.clock, mmu.walks
        try:
            return self._read(va, n)
        except PageFault:
            walks = -1
            raise
        finally:
            if mmu.walks != walks and tracer.record_stores:
                v = self._v
                at = va if type(va) is int else -1
                tracer.emit(LoadRecord(clock, v.domain.domid, v.vcpu_id, at, n, v.in_user_mode))

    def _read(self, va: int, n: int) -> bytes:
        if type(va) is not int:
            self._translate(va, write=False)  # not an address: a page fault
        out = bytearray()
        mem = self._xen.mem
        while len(out) < n:
            off = va & 0xFFF
            chunk = min(n - len(out), 4096 - off)
            mfn = self._translate(va, write=False)
            if mem.is_ram(mfn):
                out += mem.read(mfn, off, chunk)
            else:
                out += b"\xff" * chunk
            va += chunk
        return bytes(out)

    def write(self, va: int, data: bytes) -> None:
        """Write ``data`` (bytes-like) at ``va`` (may cross pages)."""
        if type(data) is not bytes:
            need_instance("data", data, (bytes, bytearray, memoryview), "bytes")
            data = bytes(data)
        self._record_store(va, data, "write")
        if type(va) is not int and data:
            self._translate(va, write=True)  # not an address: a page fault
        pos = 0
        while pos < len(data):
            off = va & 0xFFF
            chunk = min(len(data) - pos, 4096 - off)
            try:
                mfn = self._walk(va, write=True)
            except WalkFault as f:
                if not f.error_code & PF_PRESENT or f.error_code & PF_USER:
                    raise self._fault(va, f.error_code, f.why) from None
                self._emulate(va, data[pos : pos + chunk], f.error_code)
            else:
                self._poke(mfn, off, data[pos : pos + chunk])
            va += chunk
            pos += chunk

    def _emulate(self, va: int, data: bytes, error_code: int) -> None:
        """Trapped writes: emulate ``data`` at ``va`` as naturally aligned stores."""
        xen, v = self._xen, self._v
        pos = 0
        while pos < len(data):
            size = 8
            while (va + pos) % size or size > len(data) - pos:
                size //= 2
            value = int.from_bytes(data[pos : pos + size], "little")
            why = ptwr_emulate(xen, v, va + pos, value, size)
            if why is not None:
                raise self._fault(va + pos, error_code, why)
            pos += size

    # -- hypercalls ----------------------------------------------------------------

    def mmu_update(self, reqs: Sequence[Any], foreigndom: int = abi.DOMID_SELF) -> int:
        """HYPERVISOR_mmu_update: returns the number of requests done."""
        result: int = invoke(self._xen, self._v, abi.HYPERVISOR_mmu_update, (reqs, foreigndom))
        return result

    def mmuext_op(self, ops: Sequence[Any], foreigndom: int = abi.DOMID_SELF) -> int:
        """HYPERVISOR_mmuext_op: returns the number of ops done."""
        result: int = invoke(self._xen, self._v, abi.HYPERVISOR_mmuext_op, (ops, foreigndom))
        return result

    def update_va_mapping(self, va: int, val: int, flags: int = abi.UVMF_NONE) -> None:
        """HYPERVISOR_update_va_mapping."""
        invoke(self._xen, self._v, abi.HYPERVISOR_update_va_mapping, (va, val, flags))

    def update_va_mapping_otherdomain(self, va: int, val: int, flags: int, domid: int) -> None:
        """HYPERVISOR_update_va_mapping_otherdomain."""
        invoke(
            self._xen,
            self._v,
            abi.HYPERVISOR_update_va_mapping_otherdomain,
            (va, val, flags, domid),
        )

    def vm_assist(self, cmd: int, type: int) -> None:
        """HYPERVISOR_vm_assist."""
        invoke(self._xen, self._v, abi.HYPERVISOR_vm_assist, (cmd, type))

    def multicall(self, entries: Sequence[Any]) -> list[int]:
        """HYPERVISOR_multicall: every entry's result, 0 or -errno."""
        result: list[int] = invoke(self._xen, self._v, abi.HYPERVISOR_multicall, (entries,))
        return result
