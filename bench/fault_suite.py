"""The fault suite's table: every fault of tests/helpers/faults.py caused for real against the
simulator, and per fault the callbacks lost, customers reached twice, agents rung twice and
the time to recover.

    .venv/bin/python bench/fault_suite.py              # the table of BENCHMARKS.md
    .venv/bin/python bench/fault_suite.py --storm 250  # the CI-sized storm (tests/test_faults.py)

Needs the tests' redis-server on 127.0.0.1:6379 (db 13; the Redis-restart row starts a
redis-server of its own). ``--parallel`` faults at once (each has its own simulated PBX, AMI
servers, dialer processes and key prefix). The storm row defaults to a full minute of 1,000
abandons on two dialers.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.helpers.faults import FAULTS, TABLE_HEAD, run_fault, storm_two_instances  # noqa: E402


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    ap.add_argument("--parallel", type=int, default=3)
    ap.add_argument("--storm", type=int, default=1000, help="abandons in the storm row")
    ap.add_argument("--only", default="", help="run the faults whose name contains this")
    args = ap.parse_args()
    gate = asyncio.Semaphore(args.parallel)

    async def one(fault):
        async with gate:
            options = {}
            settle = None
            if fault.run is storm_two_instances:
                options = {"callers": args.storm}
                settle = 60 + args.storm * 0.25
            return await run_fault(fault, args.redis_url, settle=settle, **options)

    started = time.monotonic()
    chosen = [f for f in FAULTS if args.only in f.name]
    results = await asyncio.gather(*(one(f) for f in chosen))
    print(TABLE_HEAD)
    for result in results:
        print(result.row())
    print(f"\n{len(results)} faults in {time.monotonic() - started:.0f} s")
    bad = [r for r in results if r.lost or r.customers_twice or r.agents_twice]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
