"""The kernel: boot, processes, fork, exit, context switch.

``Kernel.boot`` gets a vCPU and ``start_info`` from the toolstack and boots as
a PV kernel does (``minikern.boot``). Processes each own an address space
(``minikern.pgtable``) built by the chosen strategy (``minikern.build``).

``Kernel.boot(guest_width=32)`` boots on a 32-bit PAE domain instead: the L3
on top, pinned with PIN_L3, each process with its own kernel L2, one base
(see ``minikern.pgtable``).

Exit follows Linux's ``xen_exit_mmap`` (``build.release_tree``): the CPU is
switched away from the dying tree first (NEW_BASEPTR to the boot L4,
NEW_USER_BASEPTR 0) -- while a tree is somebody's base, unpinning leaves it
typed and it cannot be made writable -- then the tree is unpinned and made
writable and its frames freed; then the data frames are dropped (a
copy-on-write page is freed only by its last user).

Every entry point runs under :func:`~minikern.errors.kernel_faults`: a page
fault of the kernel's own access is a :class:`~minikern.KernelPanic`.
"""

from __future__ import annotations

from typing import Any

import attrs

from hypervisor import abi
from minikern import toolstack
from minikern.args import choice_arg, int_arg
from minikern.boot import boot_memory
from minikern.build import STRATEGIES, new_tree, release_mm, tables_for
from minikern.fork import FORK_STYLES, fork_mm
from minikern.hypercall import kernel_faults
from minikern.kmem import KernelMemory
from minikern.pgtable import AddressSpace
from minikern.process import Process
from minikern.recipe import load_base
from minikern.vm import put_data

__all__ = ["GUEST_WIDTHS", "MAX_PAGES", "Kernel"]

GUEST_WIDTHS = (64, 32)
"""64-bit guests, and 32-bit PAE guests."""

MAX_PAGES = 1 << 18
"""The largest domain ``Kernel.boot`` makes (1 GiB): booting costs time per page."""


@attrs.define(eq=False)
class Kernel:
    """A booted minikern: ``hypervisor``, ``domain`` and ``vcpu`` are the machine
    it runs on; ``processes`` the live processes, oldest first."""

    hypervisor: Any
    domain: Any
    vcpu: abi.GuestVCpu
    km: KernelMemory
    strategy: str = "linux"
    fork_style: str = "batched"
    processes: list[Process] = attrs.Factory(list)
    current: Process | None = None
    next_pid: int = 1
    boot_free: int = 0
    """The allocator's free count right after boot."""

    @classmethod
    def boot(
        cls,
        nr_pages: int = 2048,
        *,
        hypervisor: Any = None,
        strategy: str = "linux",
        fork_style: str = "batched",
        guest_width: int = 64,
    ) -> Kernel:
        """Create a domain of ``nr_pages`` (on ``hypervisor``, or a new machine)
        and boot it. ``strategy``: "linux" or "minios" (how trees are built and
        pinned); ``fork_style``: "batched" or "linux" (see ``minikern.fork``);
        ``guest_width``: 64, or 32 for a 32-bit PAE guest (the L3 on top).
        Raises: TypeError / ValueError naming a wrong argument (``nr_pages`` at
        most :data:`MAX_PAGES`, and enough for the domain builder)."""
        int_arg("nr_pages", nr_pages, 1, MAX_PAGES)
        choice_arg("strategy", strategy, STRATEGIES)
        choice_arg("fork_style", fork_style, FORK_STYLES)
        if int_arg("guest_width", guest_width, 32, 64) not in GUEST_WIDTHS:
            raise ValueError(f"guest_width must be one of {GUEST_WIDTHS}, not {guest_width!r}")
        xen, domain, vcpu, start_info = toolstack.launch(nr_pages, hypervisor, guest_width)
        with kernel_faults():
            km = boot_memory(vcpu, start_info, toolstack.dmesg(xen, domain.domid))
        return cls(xen, domain, vcpu, km, strategy, fork_style, boot_free=km.alloc.free_count())

    def free_pages(self) -> int:
        """The guest allocator's free count."""
        return self.km.alloc.free_count()

    def _new_process(self, mm: AddressSpace) -> Process:
        p = Process(self, self.next_pid, mm)
        self.next_pid += 1
        self.processes.append(p)
        return p

    def _check(self, p: Process) -> None:
        if not isinstance(p, Process):
            raise TypeError(f"p must be a Process, not {type(p).__name__}")
        if p not in self.processes:
            raise ProcessLookupError(f"{p!r} is not a live process of this kernel")

    def spawn(self) -> Process:
        """A new process with an empty user address space."""
        self.km.alloc.ensure(2)
        with kernel_faults(self.km.hc):
            return self._new_process(new_tree(self.km, self.km.kernel_half))

    def fork(self, p: Process) -> Process:
        """A copy-on-write child of ``p``."""
        self._check(p)
        km, parent = self.km, p.mm
        km.alloc.ensure(len(tables_for(list(parent.ptes), parent.levels)) + 2)
        with kernel_faults(self.km.hc):
            child = fork_mm(km, parent, self.strategy, self.fork_style)
        for pfn in parent.ptes.values():
            km.mapcount[pfn] += 1
        child.vmas = parent.vmas.copy()
        return self._new_process(child)

    def switch_to(self, p: Process) -> None:
        """Load ``p``'s tree: NEW_BASEPTR and NEW_USER_BASEPTR in one mmuext_op
        (a PAE guest: NEW_BASEPTR of its L3 alone)."""
        self._check(p)
        if self.current is not p:
            with kernel_faults(self.km.hc):
                load_base(self.km, p.mm.l4, p.mm.user_base)
            self.current = p

    def exit(self, p: Process) -> None:
        """Tear ``p`` down and return every frame it held."""
        self._check(p)
        km, mm = self.km, p.mm
        loaded = self.current is p
        with kernel_faults(self.km.hc):
            release_mm(km, mm, loaded)
            if loaded:
                self.current = None
            put_data(km, list(mm.ptes.values()))
        mm.ptes.clear()
        mm.writable.clear()
        mm.tables.clear()
        mm.live = False
        self.processes.remove(p)
        p.alive = False
