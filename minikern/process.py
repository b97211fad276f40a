"""A process: a pid and an address space, touched as user code.

``read``/``write`` switch the CPU to the process and run as user code, one
page at a time; a page fault is handed to the kernel's fault handler
(``vm.handle_fault``) and the access retried. A fault the kernel cannot fix
becomes :class:`SegmentationFault`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Protocol, TypeVar

import attrs

from hypervisor import abi
from minikern import vm
from minikern.args import bytes_arg, choice_arg, flag_arg, int_arg
from minikern.errors import page_fault_of, panic
from minikern.hypercall import kernel_faults
from minikern.kmem import KernelMemory
from minikern.pgtable import AddressSpace

__all__ = ["Process", "ProcessHost"]

T = TypeVar("T")
ADDRESS_LIMIT = 1 << 64
"""Addresses are 64-bit."""
_RETRIES = 4


class ProcessHost(Protocol):
    """What a process needs of its kernel (``minikern.Kernel``): its memory,
    its vCPU, and switching the CPU to a process."""

    km: KernelMemory
    vcpu: abi.GuestVCpu

    def switch_to(self, p: Process) -> None: ...


def _chunks(va: int, n: int) -> Iterator[tuple[int, int]]:
    """``(va, size)`` pieces of ``[va, va+n)`` that do not cross a page."""
    while n > 0:
        size = min(n, abi.PAGE_SIZE - va % abi.PAGE_SIZE)
        yield va, size
        va, n = va + size, n - size


@attrs.define(eq=False)
class Process:
    """A user process of ``kernel``; ``mm`` is its address space."""

    kernel: ProcessHost
    pid: int
    mm: AddressSpace
    alive: bool = True

    def __repr__(self) -> str:
        state = "" if self.alive else " exited"
        return f"<Process {self.pid}{state}, {len(self.mm.ptes)} pages resident>"

    def _check(self) -> None:
        if not self.alive:
            raise ProcessLookupError(f"process {self.pid} has exited")

    def mmap(self, va: int, length: int, prot: str = "rw", *, populate: bool = False) -> None:
        """Map ``[va, va+length)`` anonymous, demand-zero, ``prot`` "r" or "rw"."""
        self._check()
        choice_arg("prot", prot, vm.PROTS)
        flag_arg("populate", populate)
        with kernel_faults(self.kernel.km.hc):
            vm.do_mmap(self.kernel.km, self.mm, va, length, prot, populate)

    def munmap(self, va: int, length: int) -> None:
        """Unmap ``[va, va+length)``; SegmentationFault if any page is unmapped."""
        self._check()
        with kernel_faults(self.kernel.km.hc):
            vm.do_munmap(self.kernel.km, self.mm, va, length)

    def mprotect(self, va: int, length: int, prot: str) -> None:
        """Change the protection of ``[va, va+length)`` (all of it mapped)."""
        self._check()
        with kernel_faults(self.kernel.km.hc):
            vm.do_mprotect(self.kernel.km, self.mm, va, length, prot)

    def read(self, va: int, n: int) -> bytes:
        """``n`` bytes at ``va``, read as user code."""
        self._check()
        int_arg("va", va, 0, ADDRESS_LIMIT - 1)
        int_arg("n", n, 0, ADDRESS_LIMIT - va)
        vcpu = self.kernel.vcpu
        out = bytearray()
        for addr, size in _chunks(va, n):
            out += self._user(addr, False, functools.partial(vcpu.read, addr, size))
        return bytes(out)

    def write(self, va: int, data: bytes) -> None:
        """Write ``data`` at ``va`` as user code."""
        self._check()
        int_arg("va", va, 0, ADDRESS_LIMIT - 1)
        data = bytes_arg("data", data)
        int_arg("len(data)", len(data), 0, ADDRESS_LIMIT - va)
        vcpu = self.kernel.vcpu
        pos = 0
        for addr, size in _chunks(va, len(data)):
            piece = data[pos : pos + size]
            self._user(addr, True, functools.partial(vcpu.write, addr, piece))
            pos += size

    def _user(self, va: int, write: bool, access: Callable[[], T]) -> T:
        """Run ``access`` in user mode on this process, fixing faults between tries."""
        k = self.kernel
        k.switch_to(self)
        for _ in range(_RETRIES):
            try:
                with k.vcpu.user_mode():
                    return access()
            except Exception as exc:
                fault = page_fault_of(exc)
                if fault is None:
                    raise
                with kernel_faults(k.km.hc):
                    vm.handle_fault(k.km, self.mm, fault[0], bool(fault[1] & 2) or write)
        raise panic(f"trap: access at {va:#x} keeps faulting after {_RETRIES} fixes")
