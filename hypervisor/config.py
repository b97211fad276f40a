"""Version knobs (spec section 11): which Xen the simulator behaves like.

The defaults are today's Xen. Turning a knob back lets a lesson show an old
vulnerability next to its fix, e.g. ``Config(fastpath="pre-4.8")`` re-opens
XSA-182 (flipping RW on a read-only linear entry through the update fast path).
"""

from __future__ import annotations

from typing import Literal

import attrs

__all__ = ["Config"]

Fastpath = Literal["modern", "pre-4.8"]


def _check_fastpath(_inst: object, _attr: object, value: str) -> None:
    if value not in ("modern", "pre-4.8"):
        raise ValueError(f"fastpath must be 'modern' or 'pre-4.8', not {value!r}")


def _check_bool(_inst: object, attr: attrs.Attribute[bool], value: object) -> None:
    if type(value) is not bool:
        raise TypeError(f"{attr.name} must be True or False, not {value!r}")


@attrs.frozen
class Config:
    """Which Xen behaviours are in force.

    * ``linear_pt`` -- same-level ("linear", recursive) page-table entries are
      allowed (``pv-linear-pt``, default on).
    * ``linear_single_level`` -- XSA-240 (Xen 4.10): a table used as a linear
      target may not have linear entries itself, and vice versa.
    * ``fastpath`` -- ``"modern"``: an entry update that changes only whitelisted
      flags (NX, AVAIL, G, D, A, US) skips reference counting; ``"pre-4.8"``:
      only P/RW/MFN are compared in an L1 and only P/MFN above (XSA-182).
    * ``flush_on_l2plus_update`` -- XSA-286 (Xen 4.15): ``mmu_update`` flushes
      the domain's TLBs after changing any L2/L3/L4 entry.
    """

    linear_pt: bool = attrs.field(default=True, validator=_check_bool)
    linear_single_level: bool = attrs.field(default=True, validator=_check_bool)
    fastpath: Fastpath = attrs.field(default="modern", validator=_check_fastpath)
    flush_on_l2plus_update: bool = attrs.field(default=True, validator=_check_bool)
