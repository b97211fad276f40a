"""Xen's view of domains and vCPUs (``struct domain``, ``struct vcpu``): the
state the memory-management code reads and changes. The public ``Domain`` and
``VCpu`` handles wrap these."""

from __future__ import annotations

import attrs

from hypervisor.abi import DOMID_IO, Mfn
from hypervisor.console import Console
from hypervisor.hw import Mmu
from hypervisor.rules import L1_CACHE_ATTRS, L1_DISALLOW_MASK

__all__ = ["NO_TABLE", "PvDomain", "PvVcpu"]

NO_TABLE = Mfn(0)
"""A base pointer with nothing loaded."""


@attrs.define(eq=False)
class PvVcpu:
    """One vCPU: its base pointers (``guest_table``, ``guest_table_user``), its
    mode, and the hardware MMU it runs on."""

    vcpu_id: int
    domain: PvDomain
    mmu: Mmu
    guest_table: Mfn = NO_TABLE
    """The kernel base pointer (``cr3``); 0 when none is loaded."""
    guest_table_user: Mfn = NO_TABLE
    """The user base pointer (64-bit guests); 0 when none is loaded."""
    in_user_mode: bool = False
    ldt_base: int = 0
    ldt_ents: int = 0


@attrs.define(eq=False)
class PvDomain:
    """A paravirtualised domain. Special owners (``DOMID_IO``, ``DOMID_XEN``)
    are domains too, with no vCPUs."""

    domid: int
    privileged: bool = False
    guest_width: int = 64
    vm_assist: int = 0
    vcpus: list[PvVcpu] = attrs.Factory(list)
    console: Console = attrs.Factory(Console)
    """Every refusal of this domain's requests (what ``xl dmesg`` would show)."""
    l1_mask: int = attrs.field(init=False)
    """Flags refused in this domain's L1s (mm.c ``l1_disallow_mask``): cache
    attributes are allowed only with I/O privileges."""
    pv64: bool = attrs.field(init=False)
    """A 64-bit guest: its kernel runs in ring 3 and Xen adjusts its entries
    (``!is_pv_32bit_domain``)."""

    def __attrs_post_init__(self) -> None:
        relaxed = self.privileged or self.domid == DOMID_IO
        self.l1_mask = L1_DISALLOW_MASK & ~L1_CACHE_ATTRS if relaxed else L1_DISALLOW_MASK
        self.pv64 = self.guest_width != 32

    @property
    def is_32bit(self) -> bool:
        return self.guest_width == 32

    @property
    def levels(self) -> int:
        """Paging levels: 4, or 3 for a 32-bit PAE guest."""
        return 3 if self.guest_width == 32 else 4

    def assist(self, vmasst_type: int) -> bool:
        """Is ``VMASST_TYPE_<vmasst_type>`` enabled?"""
        return bool(self.vm_assist >> vmasst_type & 1)
