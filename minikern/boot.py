"""Boot from ``start_info``, as a PV kernel does (Linux ``xen_start_kernel``,
Mini-OS ``arch_init_mm``).

1. Read the P2M array (one 8-byte mfn per pfn) from guest memory at
   ``start_info.mfn_list``.
2. Every pfn after the bootstrap tables is free: hand them to the allocator.
3. Enable writable page tables (``VMASST_TYPE_writable_pagetables``), so a
   plain store into a live L1 is trapped and emulated instead of faulting.
4. Keep the bootstrap direct map as the kernel's own view of memory, and
   remember the boot L4's kernel half (slots 272..511: slot 511 maps the
   kernel) for every process L4 to copy. The boot L4 stays pinned and is the
   base the CPU returns to when no process is loaded.
"""

from __future__ import annotations

import struct
from typing import cast

from hypervisor import abi
from hypervisor.abi import Mfn, Pfn
from minikern.alloc import FrameAllocator
from minikern.hypercall import Console, Hypercalls
from minikern.kmem import KernelMemory

__all__ = ["KERNEL_SLOTS", "boot_memory"]

KERNEL_SLOTS = range(272, 512)
"""The guest-owned kernel half of an L4 (256..271 belong to Xen)."""


def read_p2m(vcpu: abi.GuestVCpu, si: abi.StartInfo) -> list[Mfn]:
    """The P2M array, read through the bootstrap mapping."""
    raw = vcpu.read(si.mfn_list, 8 * si.nr_pages)
    return cast(list[Mfn], list(struct.unpack(f"<{si.nr_pages}Q", raw)))


def boot_memory(
    vcpu: abi.GuestVCpu, si: abi.StartInfo, console: Console | None = None
) -> KernelMemory:
    """Steps 1-4 above; returns the kernel's memory state. ``console`` reads
    Xen's console (the toolstack's ``dmesg``), to explain refusals."""
    p2m = read_p2m(vcpu, si)
    boot_l4 = Pfn((si.pt_base - si.virt_base) >> abi.PAGE_SHIFT)
    alloc = FrameAllocator.from_range(boot_l4 + si.nr_pt_frames, si.nr_pages)
    hc = Hypercalls(vcpu, console=console)
    hc.vm_assist(abi.VMASST_CMD_enable, abi.VMASST_TYPE_writable_pagetables)
    km = KernelMemory(vcpu, hc, si.virt_base, p2m, alloc, boot_l4)
    first, count = KERNEL_SLOTS.start, len(KERNEL_SLOTS)
    raw = vcpu.read(km.va(boot_l4) + 8 * first, 8 * count)
    for slot, entry in zip(KERNEL_SLOTS, struct.unpack(f"<{count}Q", raw), strict=True):
        if entry & abi._PAGE_PRESENT:
            km.kernel_half[slot] = entry
    return km
