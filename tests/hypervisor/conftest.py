"""Fixtures for the hypervisor's example-based tests (helpers live in ``hvworld``,
so test modules can import them by a name no other conftest shadows)."""

from __future__ import annotations

import pytest
from hvworld import PAE_PAGES, TOTAL_FRAMES, Guest, World

from hypervisor import Hypervisor


@pytest.fixture
def world() -> World:
    """A fresh section 9 world (dom0, A, B, K, P..T, C, M, K2, K3, X)."""
    return World(Hypervisor(total_frames=TOTAL_FRAMES))


@pytest.fixture
def pae() -> Guest:
    """A 32-bit PAE guest (domid 0, unprivileged, :data:`PAE_PAGES` pages) alone
    on a small machine; its scratch window lies in the last bootstrap L1."""
    xen = Hypervisor(total_frames=TOTAL_FRAMES)
    return Guest(xen, xen.create_domain(PAE_PAGES, guest_width=32).domid)
