"""The page-table tree of one address space, drawn from the bytes in memory.

Each line is one present entry: its slot, the virtual range it covers, the
frame it points at and its flags. L1 tables are summarised in one line below their parent entry (how
many entries, how many writable data pages, how many read-only mappings of
page tables ...) instead of 512 lines, Xen's own slots are collapsed, and a
table with more than ``max_children`` present entries ends with "… N more".
"""

from __future__ import annotations

import struct
from collections import Counter

from rich.text import Text
from rich.tree import Tree

from hypervisor import abi
from hypervisor.argcheck import need_instance, need_int
from hypervisor.machine import Hypervisor
from hypervisor.mm.frames import FrameInfo, PageType
from hypervisor.mm.upper import PAE_FIRST_XEN_L2_SLOT, XEN_L4_SLOTS
from hypervisor.render.common import domain_style, flags_text, owner_text, type_text

__all__ = ["page_table_tree", "va_range"]

_SHIFT = {4: 39, 3: 30, 2: 21, 1: 12}
_WORDS = struct.Struct("<512Q")


def _canonical(va: int) -> int:
    """Sign-extend bit 47, as x86-64 does."""
    return va | ~((1 << 48) - 1) & (1 << 64) - 1 if va & 1 << 47 else va


def va_range(prefix: int, level: int, slot: int, levels: int) -> tuple[int, int]:
    """The first and last VA covered by ``slot`` of a level-``level`` table
    reached by the VA bits ``prefix``; canonical for 4 levels, 32-bit for 3."""
    need_int("prefix", prefix, 0, (1 << 64) - 1)
    need_int("level", level, 1, 4)
    need_int("slot", slot, 0, 511)
    need_int("levels", levels)
    if levels not in (3, 4) or level > levels:
        raise ValueError(f"levels must be 3 or 4 (and at least level {level}), not {levels}")
    start = prefix | slot << _SHIFT[level]
    end = start + (1 << _SHIFT[level]) - 1
    if levels == 4:
        return _canonical(start), _canonical(end)
    return start, end


def _va_text(start: int, end: int, levels: int) -> str:
    digits = 16 if levels == 4 else 8
    return f"{start:#0{digits + 2}x}-{end:#0{digits + 2}x}"


def _entries(xen: Hypervisor, mfn: int) -> tuple[int, ...]:
    return _WORDS.unpack(xen.read_frame(mfn))


def _target(entry: int) -> int:
    return abi.pte_mfn(entry)


def _frame(xen: Hypervisor, mfn: int) -> FrameInfo | None:
    return xen.frame(mfn) if 0 <= mfn < xen.total_frames else None


def _table_label(info: FrameInfo) -> Text:
    """``L4 mfn 0x112 (d0, pinned, type count 2)``."""
    bits = [owner_text(info.owner)]
    if info.pinned:
        bits.append("pinned")
    bits.append(f"type count {info.type_count}")
    style = domain_style(info.owner) if info.owner is not None and info.owner < 0x7FF0 else ""
    text = Text(f"L{int(info.type)} mfn {info.mfn:#x}", style=f"bold {style}".strip())
    text.append(f" ({', '.join(bits)})")
    return text


def _xen_slots(level: int, info: FrameInfo, levels: int) -> range:
    """The slots of this table that belong to Xen."""
    if level == 4:
        return XEN_L4_SLOTS
    if level == 2 and levels == 3 and info.pae_xen_l2:
        return range(PAE_FIRST_XEN_L2_SLOT, 512)
    return range(0)


def _l1_summary(xen: Hypervisor, mfn: int) -> str:
    """``488 present (12 RW data, 5 RO tables)``: the present entries of L1
    ``mfn`` by access and by what the target frame is."""
    kinds: Counter[str] = Counter()
    present = 0
    for entry in _entries(xen, mfn):
        if not entry & abi._PAGE_PRESENT:
            continue
        present += 1
        access = "RW" if entry & abi._PAGE_RW else "RO"
        info = _frame(xen, _target(entry))
        if info is None or info.owner == abi.DOMID_IO:
            what = "I/O"
        elif info.owner is None:
            what = "free"
        elif info.type.is_pagetable and info.type_count:
            what = "tables"
        else:
            what = "data"
        kinds[f"{access} {what}"] += 1
    order = ["RW data", "RO data", "RO tables", "RW tables", "RW I/O", "RO I/O"]
    parts = [f"{kinds[k]} {k}" for k in order if kinds[k]]
    parts += [f"{n} {k}" for k, n in sorted(kinds.items()) if k not in order]
    return f"{present} present" + (f" ({', '.join(parts)})" if parts else "")


def _child_label(
    xen: Hypervisor, level: int, slot: int, entry: int, prefix: int, levels: int
) -> tuple[Text, FrameInfo | None]:
    """The line for one present entry, and the lower table it points at when
    that is a live table of the next level down (else None)."""
    start, end = va_range(prefix, level, slot, levels)
    target = _target(entry)
    info = _frame(xen, target)
    line = Text(f"[{slot}] ", style="bold")
    line.append(_va_text(start, end, levels), style="cyan")
    line.append(" -> ")
    lower = None
    if info is not None and level > 1 and info.type == level - 1 and info.type_count:
        line.append(f"L{level - 1} mfn {target:#x}")
        lower = info
    elif info is not None and info.type == level and info.type_count:
        line.append(f"L{level} mfn {target:#x} (linear)", style="yellow")
    elif info is None or info.owner is None:
        line.append(f"mfn {target:#x} (not a frame in use)", style="yellow")
    else:
        kind = f"{owner_text(info.owner)} {info.type.name.lower()}"
        line.append(f"mfn {target:#x} ({kind})", style="yellow")
    line.append(f"  {flags_text(entry)}", style="dim")
    return line, lower


def _grow(
    xen: Hypervisor, node: Tree, info: FrameInfo, prefix: int, levels: int, max_children: int
) -> None:
    """Add the present entries of table ``info`` (level = its type) under ``node``."""
    level = int(info.type)
    entries = _entries(xen, info.mfn)
    xen_slots = _xen_slots(level, info, levels)
    shown = hidden = 0
    if xen_slots:
        first = va_range(prefix, level, xen_slots[0], levels)[0]
        last = va_range(prefix, level, xen_slots[-1], levels)[1]
        node.add(
            Text(
                f"[{xen_slots[0]}-{xen_slots[-1]}] {_va_text(first, last, levels)} "
                f"Xen's {len(xen_slots)} slots",
                style="dim red",
            )
        )
    for slot, entry in enumerate(entries):
        if not entry & abi._PAGE_PRESENT or slot in xen_slots:
            continue
        if shown == max_children:
            hidden += 1
            continue
        shown += 1
        line, lower = _child_label(xen, level, slot, entry, prefix, levels)
        child = node.add(line)
        if lower is not None and lower.type is PageType.L1:
            child.add(Text(_l1_summary(xen, lower.mfn), style="dim"))
        elif lower is not None:
            start = va_range(prefix, level, slot, levels)[0] & (1 << 48) - 1
            _grow(xen, child, lower, start, levels, max_children)
    if hidden:
        noun = "entry" if hidden == 1 else "entries"
        node.add(Text(f"… {hidden} more present {noun}", style="italic"))


def page_table_tree(
    xen: Hypervisor, root_mfn: int, *, levels: int = 4, max_children: int = 8
) -> Tree:
    """The address space rooted at table ``root_mfn``: L4 -> L3 -> L2 -> L1
    (``levels=3`` for a 32-bit PAE guest: L3 -> L2 -> L1). Only validated
    tables of the expected type are expanded; any other target is named."""
    need_instance("xen", xen, Hypervisor, "a hypervisor.Hypervisor")
    need_int("root_mfn", root_mfn, 0, xen.total_frames - 1)
    need_int("levels", levels)
    if levels not in (3, 4):
        raise ValueError(f"levels must be 3 or 4, not {levels}")
    need_int("max_children", max_children, 1)
    info = xen.frame(root_mfn)
    if info.type is not PageType(levels) or not info.type_count:
        return Tree(
            Text(f"mfn {root_mfn:#x} is not a live L{levels} table ({type_text(info.type)})", "red")
        )
    tree = Tree(_table_label(info), guide_style="dim")
    _grow(xen, tree, info, 0, levels, max_children)
    return tree
