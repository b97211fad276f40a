"""A software TLB that really caches translations.

Entries are tagged with the root table they were walked from (like a PCID),
so switching between a kernel and a user base keeps both sets. An entry stays
until a flush removes it: no capacity eviction and no randomness, so a stale
translation is observable and reproducible.
"""

from __future__ import annotations

from typing import NamedTuple

from hypervisor.abi import Mfn

__all__ = ["Tlb", "TlbEntry"]


class TlbEntry(NamedTuple):
    """A cached translation of one 4 KiB page: the frame and the effective
    permissions of the whole walk (RW and US ANDed over every level)."""

    mfn: Mfn
    writable: bool
    user: bool
    dirty: bool


class Tlb:
    """Translations keyed by ``(root mfn, virtual page number)``."""

    __slots__ = ("entries", "flushes")

    def __init__(self) -> None:
        self.entries: dict[tuple[int, int], TlbEntry] = {}
        self.flushes = 0

    def flush_all(self) -> None:
        """Forget every translation (a CR3 load or a full flush)."""
        self.entries.clear()
        self.flushes += 1

    def flush_va(self, vpn: int) -> None:
        """Forget the translations of one page under every root (INVLPG)."""
        for key in [k for k in self.entries if k[1] == vpn]:
            del self.entries[key]
        self.flushes += 1

    def flush_mfn(self, mfn: int) -> None:
        """Forget every translation that maps frame ``mfn``."""
        doomed = [k for k, e in self.entries.items() if e.mfn == mfn]
        for key in doomed:
            del self.entries[key]

    def __len__(self) -> int:
        return len(self.entries)
