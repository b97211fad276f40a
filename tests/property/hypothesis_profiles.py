"""How long the state machines run: ``HYPOTHESIS_PROFILE=long`` for deep runs."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings


def machine_settings(default: tuple[int, int], long: tuple[int, int]) -> settings:
    """Settings for a state machine: ``(max_examples, stateful_step_count)`` for
    the default run and for ``HYPOTHESIS_PROFILE=long``; no deadline."""
    examples, steps = long if os.environ.get("HYPOTHESIS_PROFILE") == "long" else default
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
