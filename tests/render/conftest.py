"""Fixtures for the golden-text tests of ``hypervisor.render``."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from renderkit import draw_text

from hypervisor import Domain, Hypervisor


@pytest.fixture
def draw() -> Callable[..., str]:
    """Render to plain text at 100 columns."""
    return draw_text


@pytest.fixture
def tiny() -> tuple[Hypervisor, Domain]:
    """A 320-frame machine with one 16-page 64-bit domain."""
    xen = Hypervisor(total_frames=320)
    return xen, xen.create_domain(nr_pages=16)
