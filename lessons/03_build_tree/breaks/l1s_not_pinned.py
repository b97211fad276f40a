"""The L1s made read-only but never pinned. The tree still validates at PIN_L4 (Xen types
each L1 as it walks down), but the L1s' types now hang on their parents alone: at exit the
kernel unpins every L1 and Xen refuses to unpin what was never pinned
(``unpin.not-pinned``)."""

from __future__ import annotations

from hypervisor import abi
from minikern import recipe
from minikern.build import Tables
from minikern.kmem import KernelMemory


def protect_tables(km: KernelMemory, tables: Tables) -> None:
    for _level, pfn in tables:
        recipe.make_readonly(km, pfn, abi.UVMF_NONE)
