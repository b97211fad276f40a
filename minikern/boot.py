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

   A 32-bit PAE guest (``start_info.magic`` "xen-3.0-x86_32p") has the L3 on
   top; its slot 3 holds the kernel's L2 (the "kernel pmd": 3..4 GiB, with
   the direct map at ``0xC0000000``), whose slots from
   :data:`PAE_XEN_L2_FIRST` up are Xen's. An L2 in slot 3 may belong to one
   L3 only (Xen gives it the ``pae_xen_l2`` type and refuses a second L3), so,
   like Linux with an unshared kernel pmd, each process gets its own kernel
   L2: remember the boot kernel L2's guest slots for each to copy.
"""

from __future__ import annotations

import struct
from typing import cast

from hypervisor import abi
from hypervisor.abi import Mfn, Pfn
from minikern.alloc import FrameAllocator
from minikern.hypercall import Console, Hypercalls
from minikern.kmem import KernelMemory

__all__ = ["KERNEL_SLOTS", "PAE_KERNEL_L3_SLOT", "PAE_XEN_L2_FIRST", "boot_memory"]

KERNEL_SLOTS = range(272, 512)
"""The guest-owned kernel half of an L4 (256..271 belong to Xen)."""
PAE_KERNEL_L3_SLOT = 3
"""The PAE L3 slot of the kernel (3..4 GiB); slots 0..2 are user space."""
PAE_XEN_L2_FIRST = (abi.HYPERVISOR_COMPAT_VIRT_START >> 21) & 511
"""First slot of a PAE kernel L2 that belongs to Xen (428: 0xF5800000 up)."""


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
    km.pae = si.magic.endswith("x86_32p")
    table, slots = boot_l4, KERNEL_SLOTS
    if km.pae:
        table, slots = kernel_l2_of(km, boot_l4), range(PAE_XEN_L2_FIRST)
    first, count = slots.start, len(slots)
    raw = vcpu.read(km.va(table) + 8 * first, 8 * count)
    for slot, entry in zip(slots, struct.unpack(f"<{count}Q", raw), strict=True):
        if entry & abi._PAGE_PRESENT:
            km.kernel_half[slot] = entry
    return km


def kernel_l2_of(km: KernelMemory, l3: Pfn) -> Pfn:
    """pfn of the kernel L2 in slot 3 of the PAE L3 ``l3`` (the P2M, inverted:
    the guest keeps no M2P of its own)."""
    mfn = abi.pte_mfn(km.load_entry(l3, PAE_KERNEL_L3_SLOT))
    return Pfn(km.p2m.index(mfn))
