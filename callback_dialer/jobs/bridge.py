"""The jobs bridge: turns the queue's events stream into side jobs, inside the dialer process.

Wiring (in the dialer's own event loop)::

    bridge = JobsBridge(redis_client, config, queue, clock, estimate_minutes=estimate)
    task = asyncio.create_task(bridge.run())
    ...
    await bridge.close()   # stops run() within moments; then await task

- ``redis_client``: the dialer's ``redis.asyncio.Redis`` (bytes or decoded responses both
  work); the bridge reads the events stream with it (``XREAD BLOCK``, one pooled connection).
- ``estimate_minutes``: ``async (Callback) -> int``, minutes until an agent will call this
  caller back, for the missed-call SMS. ``None``: ``sms.estimate_from_queue`` (today's median
  time to callback, or the web target) is used.
- ``rq_connection``: optional sync ``redis.Redis`` WITHOUT ``decode_responses`` for rq; by
  default one is made from ``config.redis``.
- ``block_ms``: longest wait of one ``XREAD BLOCK``; kept below the client's socket timeout.

``handed_over`` counts the events handed over since start (for /metrics).

What it hands over, for every entry of ``Keys.events()`` after its cursor:

- webhooks: ``created``, ``merged``, ``claimed`` (sent as ``dialing``), ``done``, ``failed``,
  ``cancelled``, ``served_inbound``, ``served_outbound``; each document goes to the outbox of
  every receiver whose ``events`` filter takes it (see ``jobs.webhooks``);
- webhooks also: ``held``, ``outage_released``, ``outage_dropped`` (a callback an outage holds,
  releases, drops) and ``outage_declared``, ``outage_ended`` (the outage itself: ``id`` is the
  outage's, ``callback`` null);
- SMS: ``created`` and ``merged`` (not for callbacks added by hand, nor merged into a held
  one) queue a missed-call notice, ``held`` the outage's message, ``outage_dropped`` "service
  is back", ``failed`` a final notice when ``sms.notify_final_failure``; only in calling
  hours, only to numbers not told within ``sms.min_interval`` (the job checks all of it again, see
  ``jobs.sms``).

Exactly once: the outbox entries, the rq jobs and the new cursor (``Keys.jobs_cursor()``) are
written in one MULTI/EXEC that also WATCHes the cursor. A restart resumes after the last batch
handed over, never repeating or skipping one; two dialers running a bridge each hand over
only what the other has not. On its very first start the bridge begins at the end of the
stream (older events are history, not news). rq's enqueue is blocking I/O, so the hand-off
runs in a worker thread: a slow Redis slows the hand-off, never the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisError, WatchError

from ..clock import Clock
from ..config import Config
from ..hours import CallingHours
from ..logs import get_logger
from ..phone import NumberPolicy, Rejected, is_e164
from ..queue.keys import Keys
from ..queue.models import Callback, State
from ..queue.replies import stream_id as _id_tuple
from ..queue.replies import text as _text
from ..queue.store import CallbackQueue, QueueUnavailable
from . import sms as sms_jobs
from .common import connect, retry_policy, rq_queue, webhooks_by_receiver
from .webhooks import (
    build_document,
    delivery_is_live,
    encode_document,
    enqueue_delivery,
    ensure_delivery,
    wants,
    webhook_event,
)

EstimateMinutes = Callable[[Callback], Awaitable[int]]
# Events about an outage itself, not one callback: their ``id`` is the outage's.
OUTAGE_LEVEL = frozenset({"outage_declared", "outage_ended", "outage_settled"})

SMS_JOB_TIMEOUT = 120
_MAX_BACKOFF = 30.0


@dataclass
class _Batch:
    last_id: str
    outbox: dict[str, list[bytes]] = field(default_factory=dict)
    sms: list[dict[str, Any]] = field(default_factory=list)


class JobsBridge:
    def __init__(
        self,
        redis_client: aioredis.Redis,
        config: Config,
        queue: CallbackQueue,
        clock: Clock,
        estimate_minutes: EstimateMinutes | None = None,
        *,
        rq_connection: redis.Redis | None = None,
        block_ms: int = 2000,
        batch_size: int = 200,
    ) -> None:
        self.redis = redis_client
        self.config = config
        self.queue = queue
        self.clock = clock
        self.estimate_minutes = estimate_minutes
        self.keys = Keys(config.redis.key_prefix)
        self.hooks = webhooks_by_receiver(config)
        self.hours = CallingHours(config.hours)
        self.policy = NumberPolicy(config.phone)
        # A blocking read longer than the client's socket timeout would end in TimeoutError.
        socket_timeout = redis_client.connection_pool.connection_kwargs.get("socket_timeout")
        self.block_ms = min(block_ms, int(socket_timeout * 500)) if socket_timeout else block_ms
        self.batch_size = batch_size
        self._owns_connection = rq_connection is None
        self.rq_connection = rq_connection or connect(
            config, socket_timeout=max(10.0, config.redis.socket_timeout)
        )
        self._rq_queue = rq_queue(config, self.rq_connection)
        self._cursor: str | None = None
        self._closing = asyncio.Event()
        self._stopped = asyncio.Event()
        self._stopped.set()
        self.handed_over = 0  # events handed over since start (for /metrics)
        self.log = get_logger("callback_dialer.jobs.bridge")

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Hand events over until ``close()``. Redis trouble is logged and waited out."""
        self._stopped.clear()
        closing = asyncio.ensure_future(self._closing.wait())
        delay = 1.0
        try:
            while not self._closing.is_set():
                step = asyncio.ensure_future(self.process_once(self.block_ms))
                await asyncio.wait({step, closing}, return_when=asyncio.FIRST_COMPLETED)
                if not step.done():
                    # Safe to drop at any point: all effects are one transaction, and the
                    # cursor is read back from Redis on the next start.
                    step.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await step
                    break
                try:
                    step.result()
                except (RedisError, OSError, QueueUnavailable) as exc:
                    self.log.warning("jobs_bridge_redis_trouble", error=str(exc), retry_in=delay)
                except Exception:
                    self.log.exception("jobs_bridge_failed", retry_in=delay)
                else:
                    delay = 1.0
                    continue
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(closing), delay)
                delay = min(delay * 2, _MAX_BACKOFF)
        finally:
            closing.cancel()
            self._stopped.set()

    async def close(self) -> None:
        """Stop ``run()`` (an unfinished read is abandoned) and release the rq connection."""
        self._closing.set()
        await self._stopped.wait()
        if self._owns_connection:
            await asyncio.to_thread(self.rq_connection.close)

    # ------------------------------------------------------------------ one step

    async def prime(self) -> str:
        """Load the cursor (at the stream's end on the very first start) and restart delivery
        for receivers left with waiting events. ``run()`` does this itself."""
        cursor_key = self.keys.jobs_cursor()
        raw = await self.redis.get(cursor_key)
        if raw is None:
            last = await self.redis.xrevrange(self.keys.events(), count=1)
            start = _text(last[0][0]) if last else "0-0"
            await self.redis.set(cursor_key, start, nx=True)
            raw = await self.redis.get(cursor_key)
        cursor = _text(raw)
        await self._warn_if_trimmed(cursor)
        started = await asyncio.to_thread(ensure_delivery, self.rq_connection, self.config)
        # Only now: should the step above fail, the next try primes again.
        self._cursor = cursor
        self.log.info(
            "jobs_bridge_started",
            cursor=cursor,
            receivers=len(self.hooks),
            sms=self.config.sms.enabled,
            resumed_delivery=len(started),
        )
        return cursor

    async def _warn_if_trimmed(self, cursor: str) -> None:
        try:
            info = await self.redis.xinfo_stream(self.keys.events())
        except RedisError:
            return  # no stream yet
        deleted = _text(info.get("max-deleted-entry-id", info.get(b"max-deleted-entry-id", "0-0")))
        if _id_tuple(deleted) > _id_tuple(cursor):
            self.log.error(
                "jobs_bridge_missed_trimmed_events",
                cursor=cursor,
                trimmed_up_to=deleted,
                hint="the bridge was stopped longer than the events stream keeps",
            )

    async def process_once(self, block_ms: int | None = None) -> int:
        """Read the next batch after the cursor (waiting up to ``block_ms`` for one; ``None``
        does not wait) and hand it over. Returns how many events were handed over."""
        if self._cursor is None:
            await self.prime()
        assert self._cursor is not None
        rows = await self.redis.xread(
            {self.keys.events(): self._cursor}, count=self.batch_size, block=block_ms
        )
        if not rows:
            return 0
        entries = rows[0][1]
        batch = await self._plan(entries)
        moved = await asyncio.to_thread(self._hand_over, batch)
        if moved is not None:
            self.log.info("jobs_bridge_cursor_moved_elsewhere", ours=self._cursor, now=moved)
            self._cursor = moved
            return 0
        self._cursor = batch.last_id
        self.handed_over += len(entries)
        return len(entries)

    # ------------------------------------------------------------------ planning (async)

    async def _plan(self, entries: list[Any]) -> _Batch:
        batch = _Batch(last_id=_text(entries[-1][0]))
        snapshots: dict[str, Callback | None] = {}
        for raw_id, raw_fields in entries:
            entry_id = _text(raw_id)
            fields = {_text(k): _text(v) for k, v in raw_fields.items()}
            try:
                await self._plan_one(batch, entry_id, fields, snapshots)
            except (RedisError, OSError, QueueUnavailable):
                raise  # the whole batch again later
            except Exception:
                # One malformed entry must not hold up every later one.
                self.log.exception("jobs_bridge_event_skipped", event_id=entry_id)
        return batch

    async def _snapshot(
        self, callback_id: str, cache: dict[str, Callback | None]
    ) -> Callback | None:
        if callback_id not in cache:
            cache[callback_id] = await self.queue.get(callback_id) if callback_id else None
        return cache[callback_id]

    async def _plan_one(
        self,
        batch: _Batch,
        entry_id: str,
        fields: dict[str, str],
        cache: dict[str, Callback | None],
    ) -> None:
        event, reason = fields.get("event", ""), fields.get("reason", "")
        callback_id = fields.get("id", "")
        name = webhook_event(event)
        if name is not None:
            targets = [r for r, hook in self.hooks.items() if wants(hook, name)]
            if targets:
                outage_level = event.startswith("outage_") and event in OUTAGE_LEVEL
                doc = build_document(
                    entry_id,
                    name,
                    fields,
                    None if outage_level else await self._snapshot(callback_id, cache),
                    installation=self.config.redis.key_prefix,
                    tz=self.hours.tz,
                )
                body = encode_document(doc)
                for receiver in targets:
                    batch.outbox.setdefault(receiver, []).append(body)
        if sms_jobs.missed_wanted(self.config, event, reason):
            kind = sms_jobs.MISSED
        elif sms_jobs.outage_wanted(self.config, event):
            kind = sms_jobs.OUTAGE
        elif sms_jobs.service_back_wanted(self.config, event):
            kind = sms_jobs.SERVICE_BACK
        elif sms_jobs.final_failure_wanted(self.config, event):
            kind = sms_jobs.FINAL
        else:
            return
        number, at = fields.get("number", ""), float(fields.get("at") or 0)
        if not await self._may_text(number, at, entry_id, kind):
            return
        minutes = 0
        if kind == sms_jobs.MISSED:
            callback = await self._snapshot(callback_id, cache)
            if callback is None or not callback.state.is_open:
                return
            if callback.state is State.HELD:
                return  # it got (or gets) the outage's message instead
            minutes = await self._estimate(callback)
            text = sms_jobs.missed_text(self.config.sms, minutes)
        elif kind == sms_jobs.OUTAGE:
            callback = await self._snapshot(callback_id, cache)
            outage = await self.queue.outage(callback.outage) if callback else None
            if outage is None or not outage.message:
                return  # nothing to tell but "we know": the IVR said so already
            text = sms_jobs.outage_text(self.config.sms, outage.message)
        elif kind == sms_jobs.SERVICE_BACK:
            text = self.config.sms.service_back_text
        else:
            text = self.config.sms.final_text
        batch.sms.append(
            sms_jobs.sms_job_kwargs(
                kind=kind,
                callback_id=callback_id,
                number=number,
                text=text,
                at=at,
                token=entry_id,
                minutes=minutes,
            )
        )

    async def _may_text(
        self, number: str, at: float, entry_id: str, kind: str = sms_jobs.MISSED
    ) -> bool:
        """The cheap early checks; the job repeats them (and the atomic rate limit)."""
        if not is_e164(number):
            self.log.warning("jobs_bridge_bad_number", event_id=entry_id)
            return False
        if isinstance(self.policy.normalize(number), Rejected):
            return False
        if not self.hours.is_open(at):
            return False
        return not await self.redis.exists(sms_jobs.rate_slot(self.keys, kind, number))

    async def _estimate(self, callback: Callback) -> int:
        if self.estimate_minutes is not None:
            try:
                return max(1, int(await self.estimate_minutes(callback)))
            except Exception:
                self.log.exception("jobs_bridge_estimate_failed", callback_id=callback.id)
        return await sms_jobs.estimate_from_queue(self.queue, callback, self.clock.now())

    # ------------------------------------------------------------------ hand-off (thread)

    def _hand_over(self, batch: _Batch) -> str | None:
        """One transaction: outbox entries, delivery and SMS jobs, the new cursor. Returns
        None when done, or the cursor another bridge moved it to (nothing was written)."""
        keys, conn = self.keys, self.rq_connection
        touched = list(batch.outbox)
        retry = retry_policy(self.config.jobs)
        with conn.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(keys.jobs_cursor(), *(keys.webhook_job(r) for r in touched))
                    current = pipe.get(keys.jobs_cursor())
                    if current is not None and _text(current) != self._cursor:
                        pipe.reset()
                        return _text(current)
                    start = [r for r in touched if not delivery_is_live(pipe, keys, r)]
                    pipe.multi()
                    for receiver, bodies in batch.outbox.items():
                        pipe.rpush(keys.webhook_outbox(receiver), *bodies)
                    for receiver in start:
                        enqueue_delivery(
                            self._rq_queue, pipe, self.config, receiver, self.hooks[receiver].url
                        )
                    for kwargs in batch.sms:
                        self._rq_queue.enqueue_call(
                            "callback_dialer.jobs.sms.send_sms",
                            kwargs=kwargs,
                            timeout=SMS_JOB_TIMEOUT,
                            retry=retry,
                            description=f"SMS {kwargs['kind']} notice for {kwargs['callback_id']}",
                            pipeline=pipe,
                        )
                    pipe.set(keys.jobs_cursor(), batch.last_id)
                    pipe.execute()
                    return None
                except WatchError:
                    continue
