"""Fixtures for the hypervisor's example-based tests (helpers live in ``hvworld``,
so test modules can import them by a name no other conftest shadows)."""

from __future__ import annotations

import pytest
from hvworld import TOTAL_FRAMES, World

from hypervisor import Hypervisor


@pytest.fixture
def world() -> World:
    """A fresh section 9 world (dom0, A, B, K, P..T, C, M, K2, K3, X)."""
    return World(Hypervisor(total_frames=TOTAL_FRAMES))
