"""Live updates for the page: server-sent events, built to stay open all day.

One ``LiveHub`` per process computes what the page shows and hands the newest version to
every open stream; nothing is queued per client, so a slow or stalled browser costs one
reference, never a growing buffer. It wakes:

- at once when the queue's events stream has something new (``next_queue_change``: any
  dialer's writes), or dispatching is paused or resumed;
- every ``tick`` seconds anyway (agents' states and calls in progress live in memory);
- and only while someone is watching: with no stream open it reads nothing.

A version is sent only when its content changed. Messages (``event:`` names):

- ``snapshot``: queue, calls in progress, agents, dispatching, health (``Snapshot`` in the
  OpenAPI document);
- ``stats``: today's numbers (as ``GET /api/stats``), at most every ``stats_every`` seconds
  (slower when computing them takes long, so a huge day cannot load Redis);
- ``jobs``: failed side jobs, parked webhook events and the reports on disk;
- ``ping``: every ``heartbeat`` seconds, so the page notices a dead link and reconnects.

A stream ends when its session expires or is ended (signed out here or elsewhere, checked
every ``recheck`` seconds); the browser's reconnect then learns it must sign in again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..config import Config
from ..logs import get_logger
from ..queue.store import QueueUnavailable
from .stats import day_summary
from .views import Views

if TYPE_CHECKING:
    from .ports import StatusSource

log = get_logger(__name__)

WAITING_LIMIT = 200
# Side jobs as (full, masked for viewers).
JobsReader = Callable[[], Awaitable[tuple[dict[str, Any], dict[str, Any]]]]


@dataclass(frozen=True, slots=True)
class Message:
    version: int
    full: str
    masked: str


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


class LiveHub:
    def __init__(
        self,
        config: Config,
        status: StatusSource,
        views: Views,
        *,
        jobs: JobsReader,
        tick: float = 1.0,
        stats_every: float = 10.0,
        heartbeat: float = 15.0,
        recheck: float = 5.0,
    ) -> None:
        self.config = config
        self.status = status
        self.views = views
        self.jobs = jobs
        self.tick = tick
        self.stats_every = stats_every
        self.heartbeat = heartbeat
        self.recheck = recheck
        self.messages: dict[str, Message] = {}
        self._content: dict[str, str] = {}
        self._version = 0
        self._changed = asyncio.Event()
        self._dirty = asyncio.Event()
        self._watchers = 0
        self._has_watchers = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._closing = False
        self._last_stats = -1e9
        self._stats_interval = stats_every
        self._stats_dirty = False
        status.on_dispatch_change(self.poke)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.ensure_future(self._refresh_loop()),
                asyncio.ensure_future(self._events_loop()),
            ]

    async def close(self) -> None:
        self._closing = True
        self._publish_wakeup()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def poke(self) -> None:
        """Something changed: refresh now (also used as the dispatcher's state listener)."""
        self._stats_dirty = True
        self._dirty.set()

    @property
    def watchers(self) -> int:
        return self._watchers

    # ------------------------------------------------------------------ computing

    async def _events_loop(self) -> None:
        last: str | None = None
        delay = 1.0
        while not self._closing:
            await self._has_watchers.wait()
            try:
                newest = await self.status.next_queue_change(last)
                delay = 1.0
            except QueueUnavailable as exc:
                log.debug("live events unreadable; polling on the tick", error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15.0)
                continue
            if newest != last:
                last = newest
                self.poke()

    async def _refresh_loop(self) -> None:
        while not self._closing:
            await self._has_watchers.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), self.tick)
            self._dirty.clear()
            if self._closing or not self._watchers:
                continue
            try:
                await self.refresh()
            except Exception:
                log.exception("live update failed")
            # A burst of events (hundreds a second in a busy hour) yields one refresh per
            # quarter second, not one per event.
            await asyncio.sleep(0.25)

    async def refresh(self) -> None:
        """Compute what changed and hand it to the streams."""
        raw = await self._gather()
        self._offer("snapshot", self._render(raw, False), self._render(raw, True), ignore=("now",))
        now = time.monotonic()
        due = now - self._last_stats >= self._stats_interval or (
            self._stats_dirty and now - self._last_stats >= self._stats_interval * 0.3
        )
        if not due:
            return
        started = now
        self._stats_dirty = False
        try:
            clock_now = self.status.now()
            stats = await day_summary(
                self.status, self.config, self.status.day_key(clock_now), clock_now
            )
            masked_stats = self.views.stats(stats, self.config.web.mask_numbers_for_viewers)
            self._offer("stats", stats, masked_stats)
        except QueueUnavailable as exc:
            log.debug("stats not readable", error=str(exc))
        try:
            full, masked = await self.jobs()
            self._offer("jobs", full, masked)
        except Exception as exc:  # side jobs are optional: the page says it cannot tell
            log.debug("side jobs not readable", error=str(exc))
            self._offer(
                "jobs",
                {"available": False, "error": str(exc)},
                {"available": False, "error": "side jobs not readable"},
            )
        self._last_stats = time.monotonic()
        # Never spend more than about a twentieth of the time on these numbers.
        self._stats_interval = max(self.stats_every, (self._last_stats - started) * 20)

    async def _gather(self) -> dict[str, Any]:
        """One read of everything the snapshot shows; rendered twice (full, masked)."""
        s = self.status
        raw: dict[str, Any] = {
            "now": s.now(),
            "flights": s.attempts_in_progress(),
            "error": "",
        }
        try:
            (
                raw["waiting"],
                raw["dialing"],
                raw["counts"],
                raw["oldest"],
                raw["outages"],
            ) = await asyncio.gather(
                s.waiting(WAITING_LIMIT),
                s.dialing(),
                s.counts(),
                s.oldest_waiting_since(),
                s.outages(),
            )
        except QueueUnavailable as exc:
            raw.update(waiting=[], dialing=[], counts={}, oldest=None, outages=[], error=str(exc))
        return raw

    def _render(self, raw: dict[str, Any], masked: bool) -> dict[str, Any]:
        views = self.views
        masked = masked and self.config.web.mask_numbers_for_viewers
        counts = raw["counts"]
        ami_up, ami_error = self.status.ami_link()
        return {
            "now": raw["now"],
            "clock_rate": views.clock_rate(),
            "day": self.status.day_key(raw["now"]),
            "dispatch": views.dispatch(masked),
            "health": {
                "ami": ami_up,
                "ami_error": ami_error,
                "redis": not raw["error"],
                "redis_error": raw["error"],
            },
            "waiting": [
                views.callback(cb, masked, position=i + 1) for i, cb in enumerate(raw["waiting"])
            ],
            "waiting_total": sum(counts.get("pending", {}).values())
            + sum(counts.get("scheduled", {}).values()),
            # The caller who has waited longest (being called or not): the figure a supervisor
            # holds against the target.
            "oldest_waiting_since": raw["oldest"],
            "in_progress": views.in_progress(raw["flights"], raw["dialing"], masked),
            "agents": views.agents(masked),
            "live": views.live(masked),
            "counts": counts,
            # Outages holding calls (active) or settling their held ones (ending): the band.
            "outages": [
                views.outage(o, masked) for o in raw["outages"] if o.state.value != "ended"
            ],
        }

    async def snapshot(self, masked: bool) -> dict[str, Any]:
        return self._render(await self._gather(), masked)

    def _offer(self, kind: str, full: Any, masked: Any, ignore: tuple[str, ...] = ()) -> None:
        content = _dumps({k: v for k, v in full.items() if k not in ignore}) + _dumps(
            {k: v for k, v in masked.items() if k not in ignore}
        )
        if self._content.get(kind) == content and kind in self.messages:
            return
        self._content[kind] = content
        self._version += 1
        full_text = _dumps(full)
        self.messages[kind] = Message(
            self._version, full_text, full_text if masked is full else _dumps(masked)
        )
        self._publish_wakeup()

    def _publish_wakeup(self) -> None:
        # Every waiting stream holds the old event; a fresh one serves the next change.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # ------------------------------------------------------------------ streams

    def _join(self) -> None:
        self._watchers += 1
        if self._watchers == 1:
            # Nobody watched: what we have may be hours old; streams wait for a fresh one.
            self.messages.clear()
            self._content.clear()
            self._last_stats = -1e9
            self._has_watchers.set()
            self.poke()

    def _leave(self) -> None:
        self._watchers -= 1
        if self._watchers == 0:
            self._has_watchers.clear()

    async def stream(
        self,
        request: web.Request,
        masked: bool,
        expires_at: float | None = None,
        still_valid: Callable[[], Awaitable[bool]] | None = None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",  # nginx would otherwise hold the events back
            }
        )
        await response.prepare(request)
        self._join()
        sent: dict[str, int] = {}
        checked = written = time.monotonic()
        try:
            await response.write(b"retry: 3000\n\n")
            while not self._closing:
                # Taken before sending: a change published while we write is not missed.
                changed = self._changed
                over = expires_at is not None and time.time() >= expires_at
                if (
                    not over
                    and still_valid is not None
                    and (time.monotonic() - checked >= self.recheck)
                ):
                    checked = time.monotonic()
                    over = not await still_valid()
                if over:
                    await response.write(b"event: expired\ndata: {}\n\n")
                    break
                for kind, message in list(self.messages.items()):
                    if sent.get(kind) != message.version:
                        sent[kind] = message.version
                        text = message.masked if masked else message.full
                        await response.write(f"event: {kind}\ndata: {text}\n\n".encode())
                        written = time.monotonic()
                if time.monotonic() - written >= self.heartbeat:
                    ping = _dumps({"now": self.status.now()})
                    await response.write(f"event: ping\ndata: {ping}\n\n".encode())
                    written = time.monotonic()
                # Until the next change, ping, session check or the session's end.
                wait = self.heartbeat - (time.monotonic() - written)
                if still_valid is not None:
                    wait = min(wait, self.recheck - (time.monotonic() - checked))
                if expires_at is not None:
                    wait = min(wait, expires_at - time.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), max(0.0, wait))
        except (ConnectionError, RuntimeError):
            pass  # the browser went away; it reconnects by itself
        finally:
            self._leave()
        return response
