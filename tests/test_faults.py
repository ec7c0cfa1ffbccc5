"""The fault suite in CI: every fault of tests/helpers/faults.py caused for real (SIGKILL of a
dialer process, AMI sockets cut, the simulated PBX restarted, redis-server killed and started
again, a leader killed beside its standby, a storm of abandons on two instances), and for each
one: no callback lost, no customer reached twice, no agent rung by two Originates at once.

``bench/fault_suite.py`` runs the same rows and prints the table of BENCHMARKS.md.
"""

from __future__ import annotations

import pytest

from .helpers.faults import FAULTS, run_fault


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
async def test_a_fault_loses_no_callback_and_rings_nobody_twice(fault, redis_url) -> None:
    result = await run_fault(fault, redis_url)
    print("\n" + result.row() + f" ({result.seconds:.1f} s)")
    assert (result.lost, result.customers_twice, result.agents_twice) == (0, 0, 0), result
