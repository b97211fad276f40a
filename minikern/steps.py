"""The page-table recipe, one small step per function, behind ONE registry.

The 2011 recipe for a table frame: **zero** it, **fill** its entries through
the direct map while it is still plain data, **make it read-only** (its own
direct-map entry loses RW), **pin** it (Xen validates the tree) or **link** it
into a live parent, **load** it as a base. Teardown mirrors it: switch away,
**unpin**, **make it writable** again, **free** it.

Every step is looked up in :data:`STEPS` when it runs, so a lesson swaps in a
student's (or a deliberately broken) version and the rest of the kernel keeps
working::

    with steps.override("make_readonly", my_make_readonly):
        k.spawn()

Steps that talk to Xen only *queue* their request (``km.hc``); whoever runs the
recipe decides where the batch ends. The call sites use the module-level
functions below (``steps.zero(km, pfn)``), which dispatch through the registry.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from hypervisor import abi
from minikern.kmem import KERNEL_PROT, TABLE_PROT, KernelMemory

__all__ = [
    "REFERENCE",
    "STEPS",
    "fill",
    "free",
    "link",
    "load_base",
    "make_readonly",
    "make_writable",
    "override",
    "pin",
    "unlink",
    "unpin",
    "zero",
]

StepFn = Callable[..., None]
STEPS: dict[str, StepFn] = {}
"""Step name -> the implementation in use."""
REFERENCE: dict[str, StepFn] = {}
"""Step name -> minikern's own implementation."""

JUNK = b"\x01" * abi.PAGE_SIZE
"""Freed frames are filled with this (xv6's ``memset(pa, 1, PGSIZE)``): as a
table every entry would be present with an absurd mfn, so a frame used as a
table without being zeroed fails validation loudly."""
_PIN = {1: abi.MMUEXT_PIN_L1_TABLE, 2: abi.MMUEXT_PIN_L2_TABLE}
_PIN |= {3: abi.MMUEXT_PIN_L3_TABLE, 4: abi.MMUEXT_PIN_L4_TABLE}


def reference(name: str) -> Callable[[StepFn], StepFn]:
    """Register ``fn`` as the reference implementation of step ``name``."""

    def deco(fn: StepFn) -> StepFn:
        STEPS[name] = REFERENCE[name] = fn
        return fn

    return deco


@contextmanager
def override(name: str, fn: StepFn) -> Iterator[StepFn]:
    """Run step ``name`` as ``fn`` inside the block; yields the replaced one."""
    if name not in STEPS:
        raise KeyError(f"no step named {name!r}; steps are {sorted(STEPS)}")
    old = STEPS[name]
    STEPS[name] = fn
    try:
        yield old
    finally:
        STEPS[name] = old


# -- reference implementations -------------------------------------------------------


@reference("zero")
def zero_frame(km: KernelMemory, pfn: int) -> None:
    """Zero ``pfn`` with plain stores through the direct map (it must still be
    writable: a dirty frame could fail validation later)."""
    km.vcpu.write(km.va(pfn), bytes(abi.PAGE_SIZE))


@reference("fill")
def fill_table(km: KernelMemory, pfn: int, entries: Mapping[int, int]) -> None:
    """Write ``entries`` (slot -> value) into a freshly zeroed table frame with
    plain stores, while it is still plain data: no hypercall at all."""
    image = bytearray(abi.PAGE_SIZE)
    for slot, value in entries.items():
        struct.pack_into("<Q", image, 8 * slot, value)
    km.vcpu.write(km.va(pfn), bytes(image))


@reference("make_readonly")
def set_readonly(km: KernelMemory, pfn: int, flags: int = abi.UVMF_NONE) -> None:
    """Queue: drop RW from ``pfn``'s own direct-map entry (update_va_mapping)."""
    km.hc.uvm(km.va(pfn), km.pte(pfn, KERNEL_PROT & ~abi._PAGE_RW), flags)


@reference("pin")
def pin_table(km: KernelMemory, pfn: int, level: int) -> None:
    """Queue: MMUEXT_PIN_Ln_TABLE -- Xen validates the tree below ``pfn``."""
    km.hc.ext(_PIN[level], km.mfn(pfn))


@reference("link")
def link_table(km: KernelMemory, parent: int, slot: int, child: int) -> None:
    """Queue: point entry ``slot`` of table ``parent`` at table ``child``."""
    km.hc.mmu(km.entry_ma(parent, slot) | abi.MMU_NORMAL_PT_UPDATE, km.pte(child, TABLE_PROT))


@reference("unlink")
def unlink_table(km: KernelMemory, parent: int, slot: int) -> None:
    """Queue: clear entry ``slot`` of table ``parent``."""
    km.hc.mmu(km.entry_ma(parent, slot) | abi.MMU_NORMAL_PT_UPDATE, 0)


@reference("load_base")
def load_base_ptrs(km: KernelMemory, kernel_l4: int, user_l4: int | None) -> None:
    """Now: NEW_BASEPTR and NEW_USER_BASEPTR (0 for none) in one mmuext_op."""
    user = km.mfn(user_l4) if user_l4 is not None else 0
    km.hc.now((abi.MMUEXT_NEW_BASEPTR, km.mfn(kernel_l4)), (abi.MMUEXT_NEW_USER_BASEPTR, user))


@reference("unpin")
def unpin_table(km: KernelMemory, pfn: int) -> None:
    """Queue: MMUEXT_UNPIN_TABLE."""
    km.hc.ext(abi.MMUEXT_UNPIN_TABLE, km.mfn(pfn))


@reference("make_writable")
def set_writable(km: KernelMemory, pfn: int, flags: int = abi.UVMF_NONE) -> None:
    """Queue: give ``pfn``'s direct-map entry RW back (only once it is untyped)."""
    km.hc.uvm(km.va(pfn), km.pte(pfn, KERNEL_PROT), flags)


@reference("free")
def free_frame(km: KernelMemory, pfn: int) -> None:
    """Junk-fill ``pfn`` through the direct map and return it to the allocator.
    Any queued work is issued first: the frame must really be writable now."""
    km.hc.flush()
    km.vcpu.write(km.va(pfn), JUNK)
    km.alloc.release(pfn)


# -- dispatch: what the kernel calls -----------------------------------------------------


def _run(name: str, *args: Any) -> None:
    STEPS[name](*args)


def zero(km: KernelMemory, pfn: int) -> None:
    """Step "zero"."""
    _run("zero", km, pfn)


def fill(km: KernelMemory, pfn: int, entries: Mapping[int, int]) -> None:
    """Step "fill"."""
    _run("fill", km, pfn, entries)


def make_readonly(km: KernelMemory, pfn: int, flags: int = abi.UVMF_NONE) -> None:
    """Step "make_readonly"."""
    _run("make_readonly", km, pfn, flags)


def pin(km: KernelMemory, pfn: int, level: int) -> None:
    """Step "pin"."""
    _run("pin", km, pfn, level)


def link(km: KernelMemory, parent: int, slot: int, child: int) -> None:
    """Step "link"."""
    _run("link", km, parent, slot, child)


def unlink(km: KernelMemory, parent: int, slot: int) -> None:
    """Step "unlink"."""
    _run("unlink", km, parent, slot)


def load_base(km: KernelMemory, kernel_l4: int, user_l4: int | None) -> None:
    """Step "load_base"."""
    _run("load_base", km, kernel_l4, user_l4)


def unpin(km: KernelMemory, pfn: int) -> None:
    """Step "unpin"."""
    _run("unpin", km, pfn)


def make_writable(km: KernelMemory, pfn: int, flags: int = abi.UVMF_NONE) -> None:
    """Step "make_writable"."""
    _run("make_writable", km, pfn, flags)


def free(km: KernelMemory, pfn: int) -> None:
    """Step "free"."""
    _run("free", km, pfn)
