"""Only the first failure reported: the results are scanned up to the first failed entry
and no further. The kernel names that one, but a second refused entry of the same batch
is never reported."""

from __future__ import annotations

from collections.abc import Sequence

from hypervisor import abi


def issue_multicall(
    vcpu: abi.GuestVCpu, calls: Sequence[abi.MulticallEntry]
) -> list[tuple[int, int]]:
    results = vcpu.multicall(list(calls))
    for i, r in enumerate(results):
        if r != 0:
            return [(i, r)]
    return []
