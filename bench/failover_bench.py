"""What a Sentinel failover loses of the writes Redis acknowledged, with and without WAIT.

    .venv/bin/python bench/failover_bench.py --rounds 3 --writers 16

A master, one replica, three sentinels on loopback (tests/helpers/redis_ha.py). ``writers``
tasks store missed calls as fast as Redis takes them, each call its own number and call id,
through ``CallbackQueue`` on the Sentinel client; after ``--kill-after`` seconds the master gets
SIGKILL, the sentinels promote the replica, the writers retry what was not acknowledged, and
the old master comes back as a replica. Then every acknowledged call is looked for on the new
master: ``lost`` counts acknowledged missed calls with no callback there. Each round runs once
with ``wait_replicas = 0`` and once with ``1``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from callback_dialer.clock import RealClock  # noqa: E402
from callback_dialer.config import parse_config  # noqa: E402
from callback_dialer.queue.connect import async_client, close_async_client  # noqa: E402
from callback_dialer.queue.models import Source  # noqa: E402
from callback_dialer.queue.store import CallbackQueue, QueueUnavailable  # noqa: E402
from tests.helpers.redis_ha import SERVICE, FailoverDrill, SentinelSet  # noqa: E402

ALWAYS = {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


async def one_round(wait: int, writers: int, kill_after: float) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix="failover-bench-"))
    sentinels = SentinelSet(folder).start()
    config = parse_config(
        {
            "redis": {
                "url": "redis://127.0.0.1/0",
                "sentinels": sentinels.sentinels,
                "service_name": SERVICE,
                "socket_timeout": 1,
                "wait_replicas": wait,
                "wait_timeout": "200ms",
                "key_prefix": "bench-" + secrets.token_hex(4),
            },
            "hours": {"weekly": ALWAYS},
        }
    )
    client = async_client(config)
    queue = CallbackQueue(client, config, RealClock())
    drill = FailoverDrill(sentinels)
    acknowledged: list[str] = []
    stop = asyncio.Event()
    started = time.monotonic()

    async def writer(w: int) -> None:
        n = 0
        while not stop.is_set():
            number = f"+79{w:02d}{n:07d}"
            try:
                await queue.add_missed(
                    number=number,
                    category="support",
                    source=Source.ABANDON,
                    missed_at=queue.clock.now() - 60,
                    call_id=f"bench-{w}-{n}",
                )
            except QueueUnavailable:
                await asyncio.sleep(0.02)
                continue  # the same call again, as the dialer's sink does
            acknowledged.append(number)
            n += 1

    async def killer() -> None:
        await asyncio.sleep(kill_after)
        drill.kill()
        await asyncio.sleep(kill_after + 4)
        stop.set()

    try:
        await asyncio.gather(killer(), *(writer(w) for w in range(writers)))
        drill.join()
        stored = {cb.number for cb in await queue.waiting(limit=len(acknowledged) + 10)}
    finally:
        await close_async_client(client)
        sentinels.stop()
    lost = [n for n in acknowledged if n not in stored]
    return {
        "wait_replicas": wait,
        "acknowledged": len(acknowledged),
        "lost": len(lost),
        "failover_seconds": round(drill.failover_seconds, 2),
        "seconds": round(time.monotonic() - started, 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--kill-after", type=float, default=1.5)
    args = parser.parse_args()
    for _ in range(args.rounds):
        for wait in (0, 1):
            print(json.dumps(await one_round(wait, args.writers, args.kill_after)), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
