"""Fixtures for every test under ``tests/``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hypervisor import steps


@pytest.fixture(autouse=True)
def _hypervisor_seam_reset() -> Iterator[None]:
    """A test that swaps a hypervisor lesson function and fails before putting
    it back must not leave the next test of its worker on the swapped one."""
    yield
    if any(rec.swapped for rec in steps.REGISTRY.values()):
        steps.reset()
