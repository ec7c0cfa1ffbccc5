"""The jobs bridge inside the dialer: exactly-once hand-over, restarts, and a free event loop."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.retry import Retry

from callback_dialer.jobs.bridge import JobsBridge
from callback_dialer.jobs.common import receiver_id, rq_queue
from callback_dialer.queue.keys import Keys
from callback_dialer.queue.models import Source
from callback_dialer.queue.store import CallbackQueue

from .helpers.ports import free_port
from .test_jobs_support import LoopLag, SlowProxy, hand_over_all, purge_rq

HOOK = "http://127.0.0.1:9/crm"


@pytest.fixture(autouse=True)
def _rq_cleanup(redis_url, key_prefix):
    yield
    purge_rq(redis_url, key_prefix)


@pytest.fixture
def config(make_config):
    return make_config(webhooks=[{"url": HOOK}], reports={"enabled": False})


@pytest.fixture
def sync(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def outbox(sync, config) -> list[tuple[str, str]]:
    key = Keys(config.redis.key_prefix).webhook_outbox(receiver_id(HOOK))
    return [(d["number"], d["event"]) for d in map(json.loads, sync.lrange(key, 0, -1))]


async def missed(queue: CallbackQueue, n: int) -> None:
    await queue.add_missed(
        number=f"+7916000{n:04d}",
        category="support",
        source=Source.ABANDON,
        missed_at=queue.clock.now(),
        call_id=f"call-{n}",
    )


async def test_the_first_start_begins_at_the_end_of_the_stream(
    config, redis_client, clock, sync
) -> None:
    queue = CallbackQueue(redis_client, config, clock)
    await missed(queue, 1)  # before the bridge ever ran: history, not news
    bridge = JobsBridge(redis_client, config, queue, clock)
    await bridge.prime()
    await missed(queue, 2)
    assert await hand_over_all(bridge) == 1
    await bridge.close()
    assert outbox(sync, config) == [("+79160000002", "created")]


async def test_a_restart_neither_loses_nor_repeats_events(
    config, redis_client, clock, sync
) -> None:
    queue = CallbackQueue(redis_client, config, clock)
    first = JobsBridge(redis_client, config, queue, clock, batch_size=3)
    await first.prime()
    for n in range(5):
        await missed(queue, n)
    assert await first.process_once() == 3  # one batch, then the dialer stops
    await first.close()
    for n in range(5, 8):
        await missed(queue, n)  # while no bridge runs
    second = JobsBridge(redis_client, config, queue, clock, batch_size=3)
    assert await hand_over_all(second) == 5
    await second.close()
    assert [number for number, _ in outbox(sync, config)] == [f"+7916000{n:04d}" for n in range(8)]
    # One delivery job for the receiver, however many batches fed it.
    assert rq_queue(config, sync).count == 1


async def test_two_dialers_running_a_bridge_hand_each_event_over_once(
    config,
    redis_client,
    clock,
    sync,
) -> None:
    queue = CallbackQueue(redis_client, config, clock)
    one = JobsBridge(redis_client, config, queue, clock, batch_size=2)
    two = JobsBridge(redis_client, config, queue, clock, batch_size=2)
    await one.prime()
    await two.prime()
    for n in range(9):
        await missed(queue, n)
    done = 0
    for _ in range(20):
        done += await one.process_once() + await two.process_once()
    await one.close()
    await two.close()
    assert done == 9
    assert [number for number, _ in outbox(sync, config)] == [f"+7916000{n:04d}" for n in range(9)]


async def test_run_hands_events_over_live_and_close_stops_it_at_once(
    config,
    redis_client,
    clock,
    sync,
) -> None:
    queue = CallbackQueue(redis_client, config, clock)
    bridge = JobsBridge(redis_client, config, queue, clock, block_ms=10_000)
    await bridge.prime()
    task = asyncio.create_task(bridge.run())
    await missed(queue, 0)
    for _ in range(100):
        if outbox(sync, config):
            break
        await asyncio.sleep(0.02)
    started = time.perf_counter()
    await bridge.close()  # run() is inside a 10 s XREAD BLOCK now
    await asyncio.wait_for(task, 1)
    assert time.perf_counter() - started < 1
    assert outbox(sync, config)[0] == ("+79160000000", "created")


async def test_redis_trouble_in_the_hand_over_loses_nothing(
    config, redis_client, clock, sync
) -> None:
    queue = CallbackQueue(redis_client, config, clock)
    good = JobsBridge(redis_client, config, queue, clock)
    await good.prime()
    await good.close()
    dead = redis.Redis(
        host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    broken = JobsBridge(redis_client, config, queue, clock, rq_connection=dead, block_ms=100)
    task = asyncio.create_task(broken.run())
    await missed(queue, 1)
    await asyncio.sleep(0.3)
    await broken.close()
    await asyncio.wait_for(task, 1)
    assert not task.exception() and outbox(sync, config) == []
    again = JobsBridge(redis_client, config, queue, clock)
    assert await hand_over_all(again) == 1
    await again.close()
    assert outbox(sync, config) == [("+79160000001", "created")]


async def test_a_slow_redis_slows_the_hand_over_not_the_event_loop(
    make_config,
    redis_client,
    clock,
    key_prefix,
    sync,
) -> None:
    with SlowProxy("127.0.0.1", 6379, delay=0.1) as proxy:
        config = make_config(
            webhooks=[{"url": HOOK}],
            reports={"enabled": False},
            redis={"url": f"redis://127.0.0.1:{proxy.port}/13", "key_prefix": key_prefix},
        )
        # The proxy really is slow: a blocking call through it stalls a loop (the meter works).
        async with LoopLag() as control:
            blocking = redis.Redis(host="127.0.0.1", port=proxy.port, db=13)
            blocking.ping()
            blocking.close()
        assert control.worst >= 0.15

        queue = CallbackQueue(redis_client, config, clock)  # direct, fast
        bridge = JobsBridge(redis_client, config, queue, clock)
        await bridge.prime()
        for n in range(20):
            await missed(queue, n)
        async with LoopLag() as lag:
            started = time.perf_counter()
            assert await bridge.process_once() == 20
            took = time.perf_counter() - started
        await bridge.close()
    assert took >= 0.4  # several round trips through the slow proxy
    assert lag.worst < min(0.3, took / 3), (lag.worst, took)
    assert len(outbox(sync, config)) == 20


async def test_a_blocking_read_never_outlasts_the_clients_socket_timeout(
    config,
    redis_url,
    clock,
) -> None:
    # Otherwise every quiet moment would end in a TimeoutError and a back-off.
    client = aioredis.Redis.from_url(redis_url, socket_timeout=1.0)
    queue = CallbackQueue(client, config, clock)
    bridge = JobsBridge(client, config, queue, clock, block_ms=5000)
    assert bridge.block_ms == 500
    await bridge.prime()
    assert await bridge.process_once(bridge.block_ms) == 0  # a quiet half second, no error
    await bridge.close()
    await client.aclose()
