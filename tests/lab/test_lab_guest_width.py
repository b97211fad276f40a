"""A workload declares its guest's width (``@workload(guest_width=32)`` for a 32-bit PAE
guest); the child boots that width and the grader replays it on a domain of that width."""

from __future__ import annotations

import pytest

from hypervisor import Hypervisor
from lessons.lab.grader import Run, Tampered, _parsed
from lessons.lab.testing import Guest, Plan, Workload, workload


def _noop(g: Guest, plan: Plan) -> None:
    g.boot()


PAE = workload(guest_width=32, nr_pages=256, frames=2048)(_noop)
WIDE = workload(nr_pages=256, frames=2048)(_noop)


def _trace_lines(w: Workload) -> list[str]:
    g = Guest(w)
    g.boot()
    return list(g.xen.trace.to_jsonl().splitlines())


def test_a_workload_declares_only_32_or_64_bit_guests() -> None:
    with pytest.raises(ValueError, match="guest_width"):
        workload(guest_width=16)


def test_guest_boots_the_declared_width() -> None:
    g = Guest(PAE)
    k = g.boot()
    assert k.domain.guest_width == 32
    assert k.km.pae


def test_guest_refuses_a_boot_width_other_than_the_declared_one() -> None:
    with pytest.raises(ValueError, match="guest_width"):
        Guest(PAE).boot(guest_width=64)


def test_grader_accepts_a_32bit_trace_for_a_32bit_workload() -> None:
    run = Run("k", "f", "a", PAE, {}, [])
    assert _parsed(run, _trace_lines(PAE), Hypervisor(total_frames=2048)).header is not None


def test_grader_refuses_a_trace_whose_width_is_not_the_declared_one() -> None:
    run = Run("k", "f", "a", PAE, {}, [])
    with pytest.raises(Tampered, match="domain"):
        _parsed(run, _trace_lines(WIDE), Hypervisor(total_frames=2048))
