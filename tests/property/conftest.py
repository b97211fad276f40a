"""Property-based suites: Hypothesis drives the hypervisor with random hypercalls.

Every module here carries the ``property`` mark, so ``pytest -m "not property"``
skips them; ``HYPOTHESIS_PROFILE=long`` makes them search much deeper.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "property: Hypothesis property/state-machine tests (HYPOTHESIS_PROFILE=long)"
    )
