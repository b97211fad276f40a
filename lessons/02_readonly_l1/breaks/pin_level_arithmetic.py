"""The PIN command computed, not looked up: ``MMUEXT_PIN_L1_TABLE + level``. The
commands are numbered from 0 (PIN_L1 is 0 ... PIN_L4 is 3), so an L1 is pinned as an L2
and an L4 "pinned" with command 4, which is MMUEXT_UNPIN_TABLE: Xen refuses to unpin a
table that is not pinned (``unpin.not-pinned``)."""

from __future__ import annotations

from hypervisor import abi
from hypervisor.abi import Pfn
from minikern import kmem
from minikern.kmem import KernelMemory


def pin_table(km: KernelMemory, pfn: Pfn, level: int) -> None:
    km.hc.ext(abi.MMUEXT_PIN_L1_TABLE + level, kmem.pfn_to_mfn(km, pfn))
