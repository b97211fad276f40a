"""Every rule of ``hypervisor.rules`` is raised somewhere: one minimal scenario
per rule (``rule_scenarios``) breaks it, the refusal lands on the console with
the rule's id and errno, and the audit stays clean."""

from __future__ import annotations

import pytest
from hvworld import TOTAL_FRAMES, World, audit_clean
from rule_scenarios import SCENARIOS, newest_refusal

from hypervisor import RULES, Hypervisor


def test_the_scenario_table_covers_every_rule_exactly() -> None:
    assert sorted(SCENARIOS) == sorted(RULES)


@pytest.mark.parametrize("rule_id", sorted(SCENARIOS))
def test_each_rule_is_raised_by_its_scenario(rule_id: str) -> None:
    xen = SCENARIOS[rule_id](World(Hypervisor(total_frames=TOTAL_FRAMES)))
    refusal = newest_refusal(xen)
    assert (refusal.rule, refusal.errno) == (rule_id, RULES[rule_id].errno), refusal.message
    audit_clean(xen)


@pytest.mark.parametrize("rule_id", sorted(SCENARIOS))
def test_each_rule_message_quotes_principle_and_fix_once(rule_id: str) -> None:
    xen = SCENARIOS[rule_id](World(Hypervisor(total_frames=TOTAL_FRAMES)))
    message = newest_refusal(xen).message
    rule = RULES[rule_id]
    assert message.count(rule.principle) == 1
    assert message.count(rule.fix) == 1
