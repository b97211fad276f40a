"""The guest's whole view of the hypervisor: ``public/xen.h`` plus ``errno.h``.

Every name here has Xen's C spelling and value, so a grep for
``MMUEXT_PIN_L4_TABLE`` finds the same thing in ``xen/include/public/xen.h`` and
in this project.  A guest kernel (``minikern``) imports this module and nothing
else from the hypervisor: it receives a vCPU at boot that satisfies
:class:`GuestVCpu` -- the moral equivalent of the hypercall page.

Errno values are Linux's, as Xen's guests see them (``EINVAL == 22``), written
out here rather than taken from Python's :mod:`errno`, which follows the
platform (under Pyodide ``errno.EINVAL`` is 28).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Final, NewType, Protocol

import attrs

# --------------------------------------------------------------------------
# Address and frame-number types: mypy catches the classic mfn/pfn mix-up.

Mfn = NewType("Mfn", int)
"""Machine frame number: the real frame index (physical address >> 12)."""
Pfn = NewType("Pfn", int)
"""Guest pseudo-physical frame number (index into the guest's P2M)."""
MAddr = NewType("MAddr", int)
"""Machine (physical) address."""
VAddr = NewType("VAddr", int)
"""Guest virtual address."""

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT

# --------------------------------------------------------------------------
# errno.h -- hypercalls return the negative value; HypercallError.errno holds
# the positive one.

EPERM = 1
ENOENT = 2
ESRCH = 3
ENOMEM = 12
EACCES = 13
EFAULT = 14
EBUSY = 16
EEXIST = 17
EINVAL = 22
ERANGE = 34
ENOSYS = 38
EOPNOTSUPP = 95

_ERRNO_NAMES = {
    EPERM: "EPERM",
    ENOENT: "ENOENT",
    ESRCH: "ESRCH",
    ENOMEM: "ENOMEM",
    EACCES: "EACCES",
    EFAULT: "EFAULT",
    EBUSY: "EBUSY",
    EEXIST: "EEXIST",
    EINVAL: "EINVAL",
    ERANGE: "ERANGE",
    ENOSYS: "ENOSYS",
    EOPNOTSUPP: "EOPNOTSUPP",
}


def errno_name(err: int) -> str:
    """``errno_name(22) == "EINVAL"``; accepts negative values too."""
    return _ERRNO_NAMES.get(abs(err), f"E{abs(err)}")


# --------------------------------------------------------------------------
# Hypercall numbers (xen.h)


class Hypercall(enum.IntEnum):
    """Hypercall numbers, as in ``xen.h``."""

    mmu_update = 1
    multicall = 13
    update_va_mapping = 14
    vm_assist = 21
    update_va_mapping_otherdomain = 22
    mmuext_op = 26


HYPERVISOR_mmu_update = 1
HYPERVISOR_multicall = 13
HYPERVISOR_update_va_mapping = 14
HYPERVISOR_vm_assist = 21
HYPERVISOR_update_va_mapping_otherdomain = 22
HYPERVISOR_mmuext_op = 26

# --------------------------------------------------------------------------
# mmu_update commands: the low 3 bits of ``ptr``.


class MmuCmd(enum.IntEnum):
    """``mmu_update`` command, carried in ``ptr & 7``."""

    MMU_NORMAL_PT_UPDATE = 0
    MMU_MACHPHYS_UPDATE = 1
    MMU_PT_UPDATE_PRESERVE_AD = 2
    MMU_PT_UPDATE_NO_TRANSLATE = 3


MMU_NORMAL_PT_UPDATE = 0
MMU_MACHPHYS_UPDATE = 1
MMU_PT_UPDATE_PRESERVE_AD = 2
MMU_PT_UPDATE_NO_TRANSLATE = 3

# --------------------------------------------------------------------------
# mmuext_op commands


class MmuExtCmd(enum.IntEnum):
    """``mmuext_op`` command numbers."""

    MMUEXT_PIN_L1_TABLE = 0
    MMUEXT_PIN_L2_TABLE = 1
    MMUEXT_PIN_L3_TABLE = 2
    MMUEXT_PIN_L4_TABLE = 3
    MMUEXT_UNPIN_TABLE = 4
    MMUEXT_NEW_BASEPTR = 5
    MMUEXT_TLB_FLUSH_LOCAL = 6
    MMUEXT_INVLPG_LOCAL = 7
    MMUEXT_TLB_FLUSH_MULTI = 8
    MMUEXT_INVLPG_MULTI = 9
    MMUEXT_TLB_FLUSH_ALL = 10
    MMUEXT_INVLPG_ALL = 11
    MMUEXT_FLUSH_CACHE = 12
    MMUEXT_SET_LDT = 13
    MMUEXT_NEW_USER_BASEPTR = 15
    MMUEXT_CLEAR_PAGE = 16
    MMUEXT_COPY_PAGE = 17
    MMUEXT_FLUSH_CACHE_GLOBAL = 18
    MMUEXT_MARK_SUPER = 19
    MMUEXT_UNMARK_SUPER = 20


MMUEXT_PIN_L1_TABLE = 0
MMUEXT_PIN_L2_TABLE = 1
MMUEXT_PIN_L3_TABLE = 2
MMUEXT_PIN_L4_TABLE = 3
MMUEXT_UNPIN_TABLE = 4
MMUEXT_NEW_BASEPTR = 5
MMUEXT_TLB_FLUSH_LOCAL = 6
MMUEXT_INVLPG_LOCAL = 7
MMUEXT_TLB_FLUSH_MULTI = 8
MMUEXT_INVLPG_MULTI = 9
MMUEXT_TLB_FLUSH_ALL = 10
MMUEXT_INVLPG_ALL = 11
MMUEXT_FLUSH_CACHE = 12
MMUEXT_SET_LDT = 13
MMUEXT_NEW_USER_BASEPTR = 15
MMUEXT_CLEAR_PAGE = 16
MMUEXT_COPY_PAGE = 17
MMUEXT_FLUSH_CACHE_GLOBAL = 18
MMUEXT_MARK_SUPER = 19
MMUEXT_UNMARK_SUPER = 20

# --------------------------------------------------------------------------
# update_va_mapping flags

UVMF_NONE = 0
UVMF_TLB_FLUSH = 1
UVMF_INVLPG = 2
UVMF_FLUSHTYPE_MASK = 3
UVMF_LOCAL = 0
UVMF_ALL = 4

# --------------------------------------------------------------------------
# vm_assist

VMASST_CMD_enable = 0
VMASST_CMD_disable = 1
VMASST_TYPE_4gb_segments = 0
VMASST_TYPE_4gb_segments_notify = 1
VMASST_TYPE_writable_pagetables = 2
VMASST_TYPE_pae_extended_cr3 = 3
VMASST_TYPE_architectural_iopl = 5
VMASST_TYPE_runstate_update_flag = 6
VMASST_TYPE_m2p_strict = 32

# --------------------------------------------------------------------------
# Special domain ids

DOMID_SELF = 0x7FF0
DOMID_IO = 0x7FF1
DOMID_XEN = 0x7FF2
DOMID_COW = 0x7FF3
DOMID_INVALID = 0x7FF4
DOMID_IDLE = 0x7FFF
DOMID_FIRST_RESERVED = 0x7FF0

# --------------------------------------------------------------------------
# Page-table entry bits (asm/page.h)


class Pte(enum.IntFlag):
    """The flag bits of a 64-bit page-table entry."""

    PRESENT = 0x1
    """P: the entry maps something; every other bit is ignored by hardware when clear."""
    RW = 0x2
    """Writable. A page-table frame may never be mapped with RW (Xen: EBUSY)."""
    USER = 0x4
    """US: user mode may use this mapping (checked at every level)."""
    PWT = 0x8
    """Write-through caching; refused for unprivileged guests."""
    PCD = 0x10
    """Cache disable; refused for unprivileged guests."""
    ACCESSED = 0x20
    """A: set by the page walk in every entry it uses."""
    DIRTY = 0x40
    """D: set by the page walk in the leaf entry on a write."""
    PSE = 0x80
    """PAT in an L1, superpage (PSE) in L2/L3: always refused above L1."""
    GLOBAL = 0x100
    """G: allowed in L1 entries only."""
    AVAIL = 0xE00
    """Bits 9-11, free for the guest's own use."""
    NX = 1 << 63
    """No-execute."""


# The same bits as plain ints with Xen's C names: the hypervisor and the guest
# test entries with these (an ``IntFlag`` operation costs a method call).
_PAGE_PRESENT: Final = int(Pte.PRESENT)
_PAGE_RW: Final = int(Pte.RW)
_PAGE_USER: Final = int(Pte.USER)
_PAGE_PWT: Final = int(Pte.PWT)
_PAGE_PCD: Final = int(Pte.PCD)
_PAGE_ACCESSED: Final = int(Pte.ACCESSED)
_PAGE_DIRTY: Final = int(Pte.DIRTY)
_PAGE_PSE: Final = int(Pte.PSE)
_PAGE_PAT: Final = int(Pte.PSE)
"""In an L1 entry bit 7 is PAT, not PSE."""
_PAGE_GLOBAL: Final = int(Pte.GLOBAL)
_PAGE_AVAIL: Final = int(Pte.AVAIL)
_PAGE_NX: Final = int(Pte.NX)
_PAGE_AVAIL_HIGH: Final = 0x7FF << 52
"""Bits 52-62, free for the guest's own use."""

PADDR_BITS = 52
PTE_MFN_MASK: Final = ((1 << PADDR_BITS) - 1) & ~(PAGE_SIZE - 1)
"""Bits 12-51 of an entry: the machine frame number, shifted."""
PTE_FLAGS_MASK: Final = ((1 << 64) - 1) & ~PTE_MFN_MASK
"""Bits 0-11 and 52-63 of an entry: its flags (``Pte`` bits, AVAIL and NX)."""

L1_PAGETABLE_ENTRIES = 512
INVALID_MFN = (1 << 40) - 1

HYPERVISOR_VIRT_START = 0xFFFF800000000000
HYPERVISOR_VIRT_END = 0xFFFF880000000000
HYPERVISOR_COMPAT_VIRT_START = 0xF5800000
MACH2PHYS_VIRT_START = 0xFFFF800000000000
FIRST_RESERVED_GDT_ENTRY = 14 * 512

# --------------------------------------------------------------------------
# Request records. They accept any values when built; the hypercall checks them.


def hex_repr(value: object) -> str:
    """Ints in hex (frames, addresses, entries), anything else as ``repr``:
    the ``repr`` of every field that holds a frame, address or entry."""
    return f"{value:#x}" if type(value) is int else repr(value)


@attrs.frozen
class MmuUpdate:
    """``struct mmu_update``: ``ptr`` is a machine address whose low 3 bits carry
    the command; ``val`` the new entry (or, for MACHPHYS, the pfn)."""

    ptr: Any = attrs.field(repr=hex_repr)
    val: Any = attrs.field(repr=hex_repr)


@attrs.frozen
class MmuExtOp:
    """``struct mmuext_op``: ``arg1`` is an mfn or linear address; ``arg2`` is
    ``nr_ents``, a vCPU mask (an int bitmap) or ``src_mfn``."""

    cmd: Any
    arg1: Any = attrs.field(default=0, repr=hex_repr)
    arg2: Any = attrs.field(default=0, repr=hex_repr)


@attrs.frozen
class MulticallEntry:
    """One entry of ``HYPERVISOR_multicall``: a hypercall number and that call's
    positional arguments (as the :class:`GuestVCpu` method takes them)."""

    op: Any
    args: Any = ()


@attrs.frozen
class StartInfo:
    """``struct start_info`` with Xen's field names, handed to the guest at boot."""

    nr_pages: int
    virt_base: int
    pt_base: int
    """Virtual address of the top-level page table."""
    nr_pt_frames: int
    mfn_list: int
    """Virtual address of the P2M array (one 8-byte mfn per pfn)."""
    shared_info: int
    """Machine address of the shared-info page."""
    flags: int = 0
    magic: str = "xen-3.0-x86_64"
    first_p2m_pfn: int = 0
    nr_p2m_frames: int = 0


class GuestVCpu(Protocol):
    """What a PV guest kernel can do on a vCPU: memory through the MMU, and
    hypercalls. ``hypervisor.VCpu`` implements it."""

    @property
    def cr3(self) -> int: ...
    @property
    def user_base(self) -> int: ...
    @property
    def vcpu_id(self) -> int: ...
    def load(self, va: int, size: int = 8) -> int: ...
    def store(self, va: int, value: int, size: int = 8) -> None: ...
    def read(self, va: int, n: int) -> bytes: ...
    def write(self, va: int, data: bytes) -> None: ...
    def user_mode(self) -> AbstractContextManager[None]: ...
    def mmu_update(self, reqs: Sequence[Any], foreigndom: int = DOMID_SELF) -> int: ...
    def mmuext_op(self, ops: Sequence[Any], foreigndom: int = DOMID_SELF) -> int: ...
    def update_va_mapping(self, va: int, val: int, flags: int = UVMF_NONE) -> None: ...
    def update_va_mapping_otherdomain(self, va: int, val: int, flags: int, domid: int) -> None: ...
    def vm_assist(self, cmd: int, type: int) -> None: ...
    def multicall(self, entries: Sequence[Any]) -> list[int]: ...


# --------------------------------------------------------------------------
# Building and reading entries. The results are plain ints typed as Mfn: the
# NewType costs nothing at run time (no call), so these stay cheap enough for
# Xen's own hot paths.


def pte_mfn(pte: int) -> Mfn:
    """The machine frame number in bits 12-51 of entry ``pte`` (Xen: ``l1e_get_pfn``)."""
    return (pte & PTE_MFN_MASK) >> PAGE_SHIFT  # type: ignore[return-value]


def pte_flags(pte: int) -> int:
    """Entry ``pte`` without its frame number: bits 0-11 and 52-63 (``l1e_get_flags``)."""
    return pte & PTE_FLAGS_MASK


def make_pte(mfn: int, flags: int) -> int:
    """An entry mapping ``mfn`` with ``flags`` (``Pte`` bits, NX included)
    (Xen: ``l1e_from_pfn``)."""
    return (mfn << PAGE_SHIFT) | flags


def maddr_mfn(maddr: int) -> Mfn:
    """The frame holding machine address ``maddr`` (an ``mmu_update`` ptr)."""
    return maddr >> PAGE_SHIFT  # type: ignore[return-value]


def maddr_slot(maddr: int) -> int:
    """The index of the 8-byte entry at machine address ``maddr`` in its frame."""
    return (maddr & (PAGE_SIZE - 8)) >> 3


def mfn_maddr(mfn: int) -> MAddr:
    """The machine address of the first byte of frame ``mfn``."""
    return mfn << PAGE_SHIFT  # type: ignore[return-value]
