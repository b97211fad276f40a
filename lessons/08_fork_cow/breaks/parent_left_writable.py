"""The parent left writable: wrprotect_parent changes nothing. The child maps every page
read-only, but the parent's leaves keep RW, so the parent's next write goes straight into
the frame it shares with the child, with no fault and no copy: the child sees the
parent's write (isolation broken)."""

from __future__ import annotations

from minikern.kmem import KernelMemory
from minikern.pgtable import AddressSpace


def wrprotect_parent(km: KernelMemory, mm: AddressSpace) -> None:
    return None
