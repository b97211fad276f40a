"""The three tiers of error.

1. :class:`GuestError` -- a rule broken by the guest. Raised deep inside the
   memory-management code with a rule id and the facts (frame, slot, level);
   whatever was half-done is rolled back on the way out; the hypercall entry
   point turns it into a :class:`HypercallError` exactly once.
2. :class:`PageFault` -- raised by the simulated MMU when a translation fails.
3. Anything else escaping the hypervisor is a bug in the hypervisor itself --
   except :class:`LessonFunctionError`: a lesson function installed through
   :mod:`hypervisor.steps` (a student's) raised something other than a
   :class:`GuestError`, or returned what its contract does not allow.
"""

from __future__ import annotations

from hypervisor import abi
from hypervisor.rules import Rule

__all__ = ["GuestError", "HypercallError", "LessonFunctionError", "PageFault"]


class GuestError(Exception):
    """Internal: the guest broke ``rule`` (one of the constants of
    :mod:`hypervisor.rules`, e.g. ``rules.TYPE_MISMATCH``). ``detail`` names
    the frame and entry; ``path`` records the tables being validated when the
    error happened, outermost first, as ``(level, mfn, slot)``."""

    def __init__(self, rule: Rule, detail: str) -> None:
        super().__init__(rule.id, detail)
        self.rule = rule
        self.detail = detail
        self.path: list[tuple[int, int, int]] = []
        self.done = 0
        self.entry: tuple[int, int, int] | None = None
        """The entry being written when the rule broke, as ``(level, mfn, slot)``."""
        self.context = ""
        """What was refused, e.g. ``MMUEXT_PIN_L1_TABLE of mfn 0x1234``."""
        self.hint = ""
        """A question for the classic confusion behind this refusal, if any."""
        self.refused_entry: int | None = None
        """The entry value refused, when an entry's own bits broke the rule."""
        self.step = ""
        """The innermost swapped lesson function (``module:function``) the
        refusal came out of, if any (see :mod:`hypervisor.steps`)."""

    @property
    def errno(self) -> int:
        return self.rule.errno

    def explain(self) -> str:
        """The entry being written, the validation path, the detail, the rule
        and the hint."""
        parts = []
        if self.entry is not None:
            lv, mfn, slot = self.entry
            parts.append(f"writing L{lv} mfn {mfn:#x} slot {slot}")
        if self.path:
            hops = " -> ".join(f"L{lv} mfn {mfn:#x} slot {slot}" for lv, mfn, slot in self.path)
            parts.append(f"while validating {hops}")
        if self.detail:
            parts.append(self.detail)
        text = ": ".join(parts)
        head = f"{text}; " if text else ""
        hint = f". Hint: {self.hint}" if self.hint else ""
        return f"{head}{self.rule.principle} — {self.rule.fix}{hint}"


class HypercallError(OSError):
    """A hypercall was refused.

    Raised when: Xen would have returned a negative errno. ``errno`` is the
    positive value, Linux's (``abi.EINVAL``...), ``done`` the number of requests that
    completed before the failing one (they stay applied, as in Xen), ``rule``
    the stable id of the broken rule (see :mod:`hypervisor.rules`), ``op`` the
    hypercall's name, ``step`` the swapped lesson function the refusal came out
    of (``""``: none; see :mod:`hypervisor.steps`).

    What to do: read the message -- it names the frame, the entry and the rule
    -- and fix the guest, not the hypervisor.
    """

    def __init__(
        self,
        errno: int,
        message: str,
        *,
        done: int = 0,
        rule: str = "",
        op: str = "",
        step: str = "",
    ):
        super().__init__(errno, message)
        self.done = done
        self.rule = rule
        self.op = op
        self.step = step

    @property
    def message(self) -> str:
        return str(self.strerror)

    def __str__(self) -> str:
        return str(self.strerror)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (self.errno, self.strerror, self.done, self.rule, self.op, self.step))


def _rebuild(
    errno: int, message: str, done: int, rule_id: str, op: str, step: str = ""
) -> HypercallError:
    return HypercallError(errno, message, done=done, rule=rule_id, op=op, step=step)


class LessonFunctionError(Exception):
    """A lesson function installed through :mod:`hypervisor.steps` failed:
    it raised ``cause`` (an exception other than a refusal, e.g.
    ``NotImplementedError``), or returned a value its contract does not allow.
    ``step`` names the lesson function (``module:function``).

    Raised when: the hypervisor called the installed function, during a
    hypercall or a trapped write. It propagates out of that call as it is --
    never a :class:`HypercallError`, never in the trace -- and the machine may
    be left half-updated (references taken and not released): treat it as
    broken. The lab's child records it as the operation's outcome.

    What to do: fix the lesson function (a refusal is ``raise GuestError(rule,
    detail)``, never a returned errno).
    """

    def __init__(self, step: str, cause: str) -> None:
        super().__init__(f"lesson function {step} failed: {cause}")
        self.step = step
        self.cause = cause

    def __reduce__(self) -> tuple[object, ...]:
        return (LessonFunctionError, (self.step, self.cause))


PF_PRESENT = 1
PF_WRITE = 2
PF_USER = 4


class PageFault(Exception):  # noqa: N818 -- the hardware's name
    """The MMU could not translate ``va`` for this access.

    ``error_code`` uses the x86 bits: 1 the page was present (a protection
    violation), 2 the access was a write, 4 it came from user mode.
    """

    def __init__(self, va: int, error_code: int, reason: str = "") -> None:
        self.va = va
        self.error_code = error_code
        self.reason = reason
        bits = [
            "protection" if error_code & PF_PRESENT else "not-present",
            "write" if error_code & PF_WRITE else "read",
            "user" if error_code & PF_USER else "kernel",
        ]
        msg = f"page fault at {va:#x} ({', '.join(bits)})"
        super().__init__(f"{msg}: {reason}" if reason else msg)


def refusal(op: str, err: GuestError, done: int = 0) -> HypercallError:
    """Turn an internal :class:`GuestError` into the public error, once."""
    name = abi.errno_name(err.errno)
    what = err.context or op
    return HypercallError(
        err.errno,
        f"{what} refused ({name}): {err.explain()}",
        done=done,
        rule=err.rule.id,
        op=op,
        step=err.step,
    )
