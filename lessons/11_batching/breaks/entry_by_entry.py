"""No batching: each entry goes out as a multicall of its own. Every result is checked and
the kernel is correct, but a batch of n costs n hypercalls -- n guest/hypervisor round
trips where lazy-MMU mode promised one."""

from __future__ import annotations

from collections.abc import Sequence

from hypervisor import abi


def issue_multicall(
    vcpu: abi.GuestVCpu, calls: Sequence[abi.MulticallEntry]
) -> list[tuple[int, int]]:
    failed = []
    for i, call in enumerate(calls):
        (result,) = vcpu.multicall([call])
        if result != 0:
            failed.append((i, result))
    return failed
