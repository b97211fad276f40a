"""A failed entry ignored: issue_multicall sends the batch and reports nothing. Xen runs
every entry and writes each one's result, and a refused one changed nothing -- but the
kernel goes on as if it had: its own records now disagree with the machine."""

from __future__ import annotations

from collections.abc import Sequence

from hypervisor import abi


def issue_multicall(
    vcpu: abi.GuestVCpu, calls: Sequence[abi.MulticallEntry]
) -> list[tuple[int, int]]:
    vcpu.multicall(list(calls))
    return []
