"""Each callback's life in Asterisk's queue_log, for the reports supervisors already read.

QueueMetrics, Asternic and anything else reading queue_log count a caller who hung up in a
queue (ABANDON) as lost. With ``[queue_log] enabled`` the dialer writes a line for every step
of the callback through the AMI ``QueueLog`` action (app_queue's manager_queue_log_custom:
``Queue``, ``UniqueId``, ``Interface``, ``Event``, ``Message``; write class ``agent``), under
the queue and the uniqueid of the call that was missed, so a reader matches the recall to the
abandon. The message's ``|`` separate queue_log's data fields:

    CALLBACKQUEUED   id|category|source|number      a missed call opened a callback
    CALLBACKMERGED   id|category|source|number      a later missed call joined it (its uniqueid)
    CALLBACKATTEMPT  id|attempt|number              the customer's phone rings (Interface: agent)
    CALLBACKREACHED  id|attempt|talk|waited         they talked; seconds since the first miss
    CALLBACKRETRY    id|attempts|reason|next_at     not reached, tried again (epoch, "" = now)
    CALLBACKFAILED   id|attempts|reason             given up
    CALLBACKDROPPED  id|reason|by                   cancelled (by hand, an outage's end), or
                                                    they got through themselves

The lines come from the queue's events stream (every change of every callback, written by the
same Lua script as the change), read after a cursor kept in Redis that moves only once
Asterisk acknowledged the line: nothing is lost to a restart, a kill -9 or an AMI outage (the
lines are written when Asterisk is back, stamped with that time, since the action carries no
time), and at most the line in flight at a crash is written twice. Only the leader writes. It
runs in its own task and never waits on dispatching nor holds it up: a line Asterisk refuses
is logged and skipped.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .ami.client import AmiActionFailed, AmiClient, AmiError
from .clock import Clock, wait_event
from .config import Config
from .logs import get_logger
from .queue.keys import Keys
from .queue.models import Callback
from .queue.replies import stream_id as _id
from .queue.replies import text as _text
from .queue.store import CallbackQueue, QueueUnavailable

log = get_logger(__name__)

QUEUED = "CALLBACKQUEUED"
MERGED = "CALLBACKMERGED"
ATTEMPT = "CALLBACKATTEMPT"
REACHED = "CALLBACKREACHED"
RETRY = "CALLBACKRETRY"
FAILED = "CALLBACKFAILED"
DROPPED = "CALLBACKDROPPED"
VERBS = (QUEUED, MERGED, ATTEMPT, REACHED, RETRY, FAILED, DROPPED)

_MAX_BACKOFF = 30.0


def _field(value: Any) -> str:
    """One data field: never a separator, a line break or a header's end."""
    return "".join(c for c in str(value) if c not in "|\r\n\x00")


@dataclass(frozen=True, slots=True)
class QueueLogLine:
    queue: str
    uniqueid: str
    interface: str
    verb: str
    data: tuple[str, ...]

    def action(self) -> dict[str, str]:
        return {
            "Action": "QueueLog",
            "Queue": self.queue,
            "UniqueId": self.uniqueid,
            "Interface": self.interface,
            "Event": self.verb,
            "Message": "|".join(_field(d) for d in self.data),
        }


def _counted_until(callback: Callback, at: float, *, inclusive: bool) -> int:
    """Customer attempts used up to ``at`` (the log may have grown since the event)."""
    return sum(
        1
        for a in callback.attempt_log
        if a.counted and (a.at <= at + 1e-3 if inclusive else a.at < at - 1e-3)
    )


def line_for(
    fields: dict[str, str], callback: Callback | None, default_queue: str
) -> QueueLogLine | None:
    """The queue_log line for one entry of the events stream, or None when it has none (a
    change that is no step of the call's life, or a callback with no call behind it)."""
    event = fields.get("event", "")
    reason = fields.get("reason", "")
    detail = json.loads(fields["detail"]) if fields.get("detail") else {}
    if callback is None:
        return None
    callback_id = callback.id
    at = float(fields.get("at") or 0)
    uniqueid, queue = callback.call_id, callback.queue
    agent = ""
    if event in ("created", "held", "merged"):
        # Each missed call under its own uniqueid: every abandon finds its callback.
        uniqueid = str(detail.get("call_id") or uniqueid)
        queue = str(detail.get("queue") or queue)
        # "held": opened during a known outage, waiting for its end; queued all the same.
        verb = MERGED if event == "merged" else QUEUED
        category = detail.get("category") or fields.get("category", callback.category)
        data: tuple[str, ...] = (callback_id, category, reason, fields.get("number", ""))
    elif event == "stage" and reason == "ringing_customer":
        verb = ATTEMPT
        agent = str(detail.get("agent") or callback.agent)
        attempt = _counted_until(callback, at, inclusive=False) + 1
        data = (callback_id, str(attempt), fields.get("number", callback.number))
    elif event in ("done", "retry", "released", "failed"):
        attempt_rec = detail.get("attempt") or {}
        agent = str(attempt_rec.get("agent") or "")
        used = _counted_until(callback, at, inclusive=True)
        if event == "done":
            verb = REACHED
            talk = round(float(attempt_rec.get("talk_seconds") or 0))
            waited = max(0, round(at - callback.first_missed))
            data = (callback_id, str(max(used, 1)), str(talk), str(waited))
        elif event == "failed":
            verb = FAILED
            data = (callback_id, str(used), reason)
        else:
            verb = RETRY
            next_at = detail.get("next_at")
            data = (callback_id, str(used), reason, str(int(float(next_at))) if next_at else "")
    elif event in ("cancelled", "outage_dropped", "served_inbound", "served_outbound"):
        verb = DROPPED
        data = (callback_id, reason or event, fields.get("actor", ""))
    else:
        return None
    if not uniqueid:
        return None  # added by hand: no call of Asterisk's to match
    return QueueLogLine(
        queue=queue or default_queue,
        uniqueid=uniqueid,
        interface=agent or "NONE",
        verb=verb,
        data=data,
    )


class QueueLogWriter:
    def __init__(
        self,
        redis_client: aioredis.Redis,
        config: Config,
        queue: CallbackQueue,
        ami: AmiClient,
        clock: Clock,
        *,
        leading: Callable[[], bool] = lambda: True,
        block_ms: int = 2000,
        batch_size: int = 100,
    ) -> None:
        self.redis = redis_client
        self.config = config.queue_log
        self.queue = queue
        self.ami = ami
        self.clock = clock
        self.leading = leading
        self.keys = Keys(config.redis.key_prefix)
        socket_timeout = redis_client.connection_pool.connection_kwargs.get("socket_timeout")
        self.block_ms = min(block_ms, int(socket_timeout * 500)) if socket_timeout else block_ms
        self.batch_size = batch_size
        self._cursor: str | None = None
        self._closing = asyncio.Event()
        self.written = 0  # lines Asterisk acknowledged since start (for /metrics)
        self.refused = 0  # lines Asterisk answered with an error (skipped)

    async def close(self) -> None:
        self._closing.set()

    async def run(self) -> None:
        """Write lines until ``close()``; a standby, a link down or Redis trouble wait."""
        delay = 1.0
        while not self._closing.is_set():
            if not self.leading() or not self.ami.authenticated:
                await wait_event(self._closing, self.clock, 1.0)
                continue
            try:
                await self.process_once(self.block_ms)
            except (RedisError, OSError, QueueUnavailable, AmiError) as exc:
                # AmiError here: the link went while a line was on its way. The cursor stayed
                # before it, so it is written again when the link is back.
                log.warning("queue_log writing waits", error=str(exc), retry_in=delay)
                await wait_event(self._closing, self.clock, delay)
                delay = min(delay * 2, _MAX_BACKOFF)
            except Exception:
                log.exception("queue_log writing failed", retry_in=delay)
                await wait_event(self._closing, self.clock, delay)
                delay = min(delay * 2, _MAX_BACKOFF)
            else:
                delay = 1.0

    async def prime(self) -> str:
        """The cursor; on the very first start the end of the stream (older changes are
        history, not news: a reader would see them stamped with today's time)."""
        key = self.keys.queue_log_cursor()
        raw = await self.redis.get(key)
        if raw is None:
            last = await self.redis.xrevrange(self.keys.events(), count=1)
            await self.redis.set(key, _text(last[0][0]) if last else "0-0", nx=True)
            raw = await self.redis.get(key)
        self._cursor = _text(raw)
        await self._warn_if_trimmed(self._cursor)
        log.info("queue_log writing", cursor=self._cursor)
        return self._cursor

    async def _warn_if_trimmed(self, cursor: str) -> None:
        """The stream keeps its last 20 000 changes (MAXLEN ~): a writer whose cursor entry
        is gone from it is that far behind, and the oldest of the lines it still owed may have
        been trimmed away with it. (Redis counts only XDEL in max-deleted-entry-id, not a
        trim, so the first entry still held is what tells.)"""
        if cursor == "0-0":
            return
        try:
            first = await self.redis.xrange(self.keys.events(), count=1)
        except RedisError:
            return
        if first and _id(_text(first[0][0])) > _id(cursor):
            log.error(
                "queue_log lines may be lost: the events stream no longer holds the cursor",
                cursor=cursor,
                oldest_held=_text(first[0][0]),
            )

    async def process_once(self, block_ms: int | None = None) -> int:
        """Write the lines of the next entries after the cursor; how many were written."""
        if self._cursor is None:
            await self.prime()
        assert self._cursor is not None
        rows = await self.redis.xread(
            {self.keys.events(): self._cursor}, count=self.batch_size, block=block_ms
        )
        if not rows:
            return 0
        written = 0
        snapshots: dict[str, Callback | None] = {}
        for raw_id, raw_fields in rows[0][1]:
            entry_id = _text(raw_id)
            fields = {_text(k): _text(v) for k, v in raw_fields.items()}
            callback_id = fields.get("id", "")
            if callback_id not in snapshots:
                snapshots[callback_id] = await self.queue.get(callback_id) if callback_id else None
            try:
                line = line_for(fields, snapshots[callback_id], self.config.default_queue)
            except (ValueError, TypeError, KeyError):
                log.warning("queue_log: malformed event skipped", event_id=entry_id)
                line = None
            if line is not None:
                if not self.leading():
                    return written  # the new leader goes on from the cursor
                if await self._write(line):
                    written += 1
            await self.redis.set(self.keys.queue_log_cursor(), entry_id)
            self._cursor = entry_id
        return written

    async def _write(self, line: QueueLogLine) -> bool:
        try:
            await self.ami.send_action(line.action(), timeout=self.config.timeout)
        except AmiActionFailed as exc:
            # A permanent refusal (no "agent" write class, a module not loaded): written again
            # it would be refused again and hold up every later line.
            self.refused += 1
            log.error(
                "Asterisk refused a queue_log line; skipped",
                verb=line.verb,
                queue=line.queue,
                error=str(exc),
                hint="the AMI user needs write = agent, and app_queue must be loaded",
            )
            return False
        self.written += 1
        return True
