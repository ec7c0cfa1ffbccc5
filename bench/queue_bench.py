"""Queue benchmark (not a test): enqueue and claim rates, Redis memory per pending callback.

    .venv/bin/python bench/queue_bench.py                 # 1k and 100k pending
    .venv/bin/python bench/queue_bench.py --sizes 1000    # quicker

Uses the Redis at $CALLBACK_DIALER_BENCH_REDIS (default redis://127.0.0.1:6379/14) under a random
key prefix and deletes its keys afterwards. One client, one request at a time, as the dispatcher
does: the rates include the round trip on loopback. Target: over 2,000 claims/s on one core, and
at 100k pending no worse than half the 1k rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import time

import redis.asyncio as aioredis

from callback_dialer.clock import RealClock
from callback_dialer.config import parse_config
from callback_dialer.queue.keys import Keys
from callback_dialer.queue.models import Source
from callback_dialer.queue.store import CallbackQueue

CATEGORIES = ("new_connection", "support", "billing", "other")
SERVES = ["new_connection", "support", "billing", "other"]


async def used_memory(client: aioredis.Redis) -> int:
    info = await client.info("memory")
    return int(info["used_memory"])


async def fill(queue: CallbackQueue, start: int, count: int, now: float) -> float:
    t0 = time.perf_counter()
    for i in range(start, start + count):
        await queue.add_missed(
            number=f"+7916{i:07d}",
            category=CATEGORIES[i % 4],
            source=Source.ABANDON,
            missed_at=now - (i % 3600),
            call_id=f"bench-{i}",
        )
    return time.perf_counter() - t0


async def run_size(url: str, pending: int, claims: int) -> dict[str, float]:
    prefix = "bench-" + secrets.token_hex(4)
    client = aioredis.Redis.from_url(url)
    config = parse_config(
        {
            "redis": {"url": url, "key_prefix": prefix},
            "hours": {
                "weekly": {
                    d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
                }
            },
        }
    )
    queue = CallbackQueue(client, config, RealClock())
    now = time.time()
    try:
        before = await used_memory(client)
        fill_seconds = await fill(queue, 0, pending, now)
        after = await used_memory(client)
        await fill(queue, pending, claims, now)
        latencies = []
        t0 = time.perf_counter()
        for _ in range(claims):
            s = time.perf_counter()
            claim = await queue.claim(SERVES, claimer="bench")
            latencies.append(time.perf_counter() - s)
            assert claim is not None
        claim_seconds = time.perf_counter() - t0
        latencies.sort()
        return {
            "pending": pending,
            "enqueue_per_s": round(pending / fill_seconds),
            "claim_per_s": round(claims / claim_seconds),
            "claim_p50_ms": round(statistics.median(latencies) * 1000, 3),
            "claim_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 3),
            "bytes_per_pending": round((after - before) / pending),
        }
    finally:
        keys = [k async for k in client.scan_iter(match=Keys(prefix).pattern(), count=5000)]
        for i in range(0, len(keys), 5000):
            await client.delete(*keys[i : i + 5000])
        await client.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--claims", type=int, default=5000)
    parser.add_argument(
        "--redis",
        default=os.environ.get("CALLBACK_DIALER_BENCH_REDIS", "redis://127.0.0.1:6379/14"),
    )
    args = parser.parse_args()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        row = await run_size(args.redis, size, args.claims)
        rows.append(row)
        print(json.dumps(row))
    if len(rows) >= 2:
        ratio = rows[0]["claim_per_s"] / rows[-1]["claim_per_s"]
        print(json.dumps({"claim_rate_ratio_small_to_large": round(ratio, 2)}))


if __name__ == "__main__":
    asyncio.run(main())
