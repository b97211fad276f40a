"""Xen's console, for refusals: what ``xl dmesg`` shows of a guest's mistakes.

Xen answers a refused request with a bare negative errno; the explanation
goes to its console (``gdprintk``). Here every refusal lands in the refusing
domain's log as a frozen :class:`Refusal` carrying everything a single
hypercall's ``HypercallError`` carries -- errno, rule id and the full message
naming frame, slot, level, principle and fix -- so nothing is lost where the
guest sees only a number:

* a refused hypercall (the guest also gets ``HypercallError``);
* a refused entry of a ``multicall`` (its result slot holds only ``-errno``;
  ``multicall_slot`` says which entry);
* a refused trapped write (the guest sees only a page fault; ``va`` says where).

Read it with ``xen.console(domid)`` or ``dom.refusals``, oldest first. Like
Xen's console ring it is bounded: it keeps the last :data:`CONSOLE_SIZE`
refusals of each domain.
"""

from __future__ import annotations

from collections import deque

import attrs

from hypervisor import abi

__all__ = ["CONSOLE_SIZE", "Console", "Refusal"]

CONSOLE_SIZE = 1024
"""How many refusals each domain's log keeps (the oldest go first)."""


@attrs.frozen
class Refusal:
    """One refusal, as the console logged it.

    ``clock`` is the tracer's logical clock of the refused call (or store), so
    a refusal can be found in ``xen.trace``; ``done`` counts the requests of
    that call that completed before the refused one (they stay applied).
    """

    clock: int
    domid: int
    vcpu: int
    hypercall: str
    """The refused hypercall's name (``"mmuext_op"``...), or ``"trapped_write"``."""
    errno: int
    """Positive, as Python's ``errno`` module; the guest saw ``-errno``."""
    rule: str
    """The stable id of the broken rule (see :mod:`hypervisor.rules`)."""
    message: str
    """The full explanation, exactly as ``str(HypercallError)`` reads."""
    done: int = 0
    multicall_slot: int | None = None
    """For an entry of a multicall: its index in the batch."""
    va: int | None = attrs.field(default=None, repr=abi.hex_repr)
    """For a trapped write: the virtual address stored to."""

    @property
    def errno_name(self) -> str:
        """``"EINVAL"``-style name of :attr:`errno`."""
        return abi.errno_name(self.errno)

    def __str__(self) -> str:
        where = "" if self.multicall_slot is None else f" multicall entry {self.multicall_slot}:"
        return f"(d{self.domid}v{self.vcpu} @{self.clock}){where} {self.message} [{self.rule}]"


class Console:
    """One domain's log of refusals, oldest first, bounded like Xen's ring."""

    __slots__ = ("_ring",)

    def __init__(self) -> None:
        self._ring: deque[Refusal] = deque(maxlen=CONSOLE_SIZE)

    def log(self, refusal: Refusal) -> None:
        """Append one refusal (the oldest drops out when the log is full)."""
        self._ring.append(refusal)

    def read(self, clear: bool = False) -> tuple[Refusal, ...]:
        """Every refusal kept, oldest first; with ``clear`` the log is emptied
        (``xl dmesg -c``)."""
        out = tuple(self._ring)
        if clear:
            self._ring.clear()
        return out

    def __len__(self) -> int:
        return len(self._ring)
