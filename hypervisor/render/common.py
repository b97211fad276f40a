"""Small formatting helpers shared by the renderables: owners, entry flags,
entries, and the per-domain palette."""

from __future__ import annotations

from hypervisor import abi
from hypervisor.mm.frames import PageType

__all__ = [
    "DOMAIN_STYLES",
    "domain_style",
    "entry_text",
    "flags_text",
    "owner_text",
    "type_text",
]

_FLAG_NAMES = (
    (abi._PAGE_PRESENT, "P"),
    (abi._PAGE_RW, "RW"),
    (abi._PAGE_USER, "US"),
    (abi._PAGE_PWT, "PWT"),
    (abi._PAGE_PCD, "PCD"),
    (abi._PAGE_ACCESSED, "A"),
    (abi._PAGE_DIRTY, "D"),
    (abi._PAGE_PSE, "PSE"),
    (abi._PAGE_GLOBAL, "G"),
    (abi._PAGE_NX, "NX"),
)

DOMAIN_STYLES = ("green", "blue", "magenta", "cyan", "yellow", "bright_green", "bright_blue")
"""Colours handed to domains 0, 1, 2, ... (cycled)."""


def domain_style(domid: int) -> str:
    """The colour of domain ``domid`` in every picture."""
    return DOMAIN_STYLES[domid % len(DOMAIN_STYLES)]


def owner_text(owner: int | None) -> str:
    """``d3``, ``IO``, ``Xen`` or ``free``."""
    if owner is None:
        return "free"
    if owner == abi.DOMID_IO:
        return "IO"
    if owner == abi.DOMID_XEN:
        return "Xen"
    return f"d{owner}"


def type_text(t: PageType) -> str:
    """``L1`` .. ``L4`` for tables, the lower-case name otherwise."""
    return t.name if t.is_pagetable else t.name.lower()


def flags_text(entry: int, sep: str = " ") -> str:
    """The set flag bits of a page-table entry, e.g. ``P RW US A``; ``PAT``
    is spelled ``PSE`` (the same bit). Returns ``-`` when no flag is set."""
    names = [name for bit, name in _FLAG_NAMES if entry & bit]
    return sep.join(names) if names else "-"


def entry_text(entry: int) -> str:
    """A compact entry: ``0x319|P|RW`` (mfn, then flags), or ``0`` for an empty one."""
    if entry == 0:
        return "0"
    mfn = abi.pte_mfn(entry)
    flags = flags_text(entry, "|")
    return f"{mfn:#x}" if flags == "-" else f"{mfn:#x}|{flags}"
