"""``callback-dialer replay``: a capture through the live code path into a throwaway queue."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from ..ami.capture import CaptureError, CaptureSource
from ..clock import Clock, RealClock
from ..config import Config
from ..embedded_redis import (
    EmbeddedRedis,
    EmbeddedRedisError,
    configured_or_embedded,
    redis_answers,
)
from ..queue.keys import Keys
from ..queue.store import CallbackQueue
from .pipeline import build_pipeline


def _with_prefix(config: Config, prefix: str) -> Config:
    return config.model_copy(
        update={"redis": config.redis.model_copy(update={"key_prefix": prefix})}
    )


async def replay_capture(
    config: Config,
    path: Path,
    redis_client: aioredis.Redis,
    *,
    clock: Clock | None = None,
    skip_events: int = 0,
    keep: bool = False,
    key_prefix: str | None = None,
) -> list[dict[str, Any]]:
    """Replay ``path`` and return the callbacks open at the end, in the order they would be
    taken: ``{"number", "category", "source", "missed_count"}`` each (and ``caller_id`` when the
    caller asked to be called back on another number). The throwaway queue lives
    under a fresh key prefix and is deleted afterwards (unless ``keep``)."""
    prefix = key_prefix or f"replay-{secrets.token_hex(6)}"
    config = _with_prefix(config, prefix)
    clock = clock or RealClock()
    queue = CallbackQueue(redis_client, config, clock)
    pipeline = build_pipeline(config, clock, queue)
    sink_task = asyncio.create_task(pipeline.sink.run())
    try:
        source = CaptureSource(
            path, pipeline.stream(), clock, start=clock.now(), skip_events=skip_events
        )
        await source.run()
        await pipeline.sink.drain(timeout=30)
        open_callbacks = await queue.waiting(limit=100_000) + await queue.in_progress()
        return [
            {
                "number": cb.number,
                **({"caller_id": cb.caller_id} if cb.caller_id else {}),
                "category": cb.category,
                "source": cb.source.value,
                "missed_count": cb.missed_count,
            }
            for cb in open_callbacks
        ]
    finally:
        sink_task.cancel()
        await asyncio.gather(sink_task, return_exceptions=True)
        if not keep:
            keys = [
                k async for k in redis_client.scan_iter(match=Keys(prefix).pattern(), count=1000)
            ]
            if keys:
                await redis_client.delete(*keys)


async def replay_command(config: Config, path: Path, *, redis_url: str | None = None) -> int:
    from ..logs import configure_logging

    configure_logging(config.logging)
    embedded: EmbeddedRedis | None = None
    if redis_url:
        url = redis_url
        if not await asyncio.to_thread(redis_answers, url):
            print(f"error: no Redis answers at {redis_url}", file=sys.stderr)
            return 1
    else:
        try:
            url, embedded = await configured_or_embedded(config.redis.url)
        except EmbeddedRedisError as exc:
            print(
                f"error: no Redis at {config.redis.url} and none to start: {exc}", file=sys.stderr
            )
            return 1
    client = aioredis.Redis.from_url(url, password=config.redis.password or None)
    try:
        rows = await replay_capture(config, path, client)
    except CaptureError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        await client.aclose()
        if embedded is not None:
            embedded.stop()
    for row in rows:
        print(json.dumps(row, ensure_ascii=False))
    return 0
