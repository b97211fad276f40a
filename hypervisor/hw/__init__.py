"""Simulated x86 hardware: machine memory, the page walk and the TLB.

Nothing in here knows about Xen: no owners, no types, no rules.
"""

from hypervisor.hw.memory import Memory
from hypervisor.hw.mmu import Mmu, Translation, WalkFault, walk
from hypervisor.hw.tlb import Tlb, TlbEntry

__all__ = ["Memory", "Mmu", "Tlb", "TlbEntry", "Translation", "WalkFault", "walk"]
