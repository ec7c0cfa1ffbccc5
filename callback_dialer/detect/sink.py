"""Facts from the tracker into the queue, in order, and nothing lost while Redis is away.

The tracker's handlers are synchronous and fast; writing to Redis is not. Facts wait here in
order. While Redis is unreachable they are also written to a spool file, so even a restart
during an outage loses nothing; they are applied once Redis answers again (adding a missed call
is idempotent by call id, so a fact applied twice counts once).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..logs import get_logger
from ..queue.models import Source
from ..queue.store import CallbackQueue, QueueInputError, QueueUnavailable, ResolveResult
from .facts import Fact, MissedCall, NotQueued, SelfServed, Served

log = get_logger(__name__)

OnApplied = Callable[[Fact, Any], Awaitable[None] | None]
# The caller's area for outage mode (number, category) -> area name or "" (outage/service.py).
AreaOf = Callable[[str, str], Awaitable[str]]


def _to_json(fact: Fact) -> str:
    data = asdict(fact)
    data["kind"] = type(fact).__name__
    if isinstance(fact, MissedCall):
        data["source"] = fact.source.value
    return json.dumps(data, ensure_ascii=False)


def _from_json(text: str) -> Fact | None:
    data = json.loads(text)
    kind = data.pop("kind", "")
    if kind == "MissedCall":
        data["source"] = Source(data["source"])
        return MissedCall(**data)
    if kind == "Served":
        return Served(**data)
    if kind == "SelfServed":
        return SelfServed(**data)
    return None


class QueueSink:
    def __init__(
        self,
        queue: CallbackQueue,
        *,
        spool: Path | None = None,
        on_applied: OnApplied | None = None,
        max_delay: float = 10.0,
        area_of: AreaOf | None = None,
    ) -> None:
        self.queue = queue
        self.area_of = area_of
        self.spool = spool
        self.on_applied = on_applied
        self.max_delay = max_delay
        self._pending: deque[Fact] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._spooled = 0
        self.counters: dict[str, int] = {}
        self.redis_ok = True
        self._closing = False

    def put(self, fact: Fact) -> None:
        """Take a fact (the tracker's ``emit``): never blocks, never raises."""
        self._count(type(fact).__name__)
        if isinstance(fact, NotQueued):
            self._count(f"not_queued:{fact.reason}")
            return
        self._pending.append(fact)
        self._idle.clear()
        self._wakeup.set()

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    @property
    def backlog(self) -> int:
        return len(self._pending)

    def load_spool(self) -> int:
        """Facts left from an outage before the last stop, back in front of the line."""
        if self.spool is None or not self.spool.exists():
            return 0
        loaded = []
        for line in self.spool.read_text("utf-8").splitlines():
            try:
                fact = _from_json(line)
            except (ValueError, TypeError):
                log.warning("unreadable line in the spool file skipped", spool=str(self.spool))
                continue
            if fact is not None:
                loaded.append(fact)
        self._pending.extendleft(reversed(loaded))
        if loaded:
            self._idle.clear()
            self._wakeup.set()
            log.info("facts from the spool file queued again", count=len(loaded))
        return len(loaded)

    def _write_spool(self) -> None:
        if self.spool is None:
            return
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.spool.with_suffix(".tmp")
        tmp.write_text("".join(_to_json(f) + "\n" for f in self._pending), "utf-8")
        tmp.replace(self.spool)
        self._spooled = len(self._pending)

    def _clear_spool(self) -> None:
        if self.spool is not None and self._spooled:
            self.spool.unlink(missing_ok=True)
            self._spooled = 0

    async def run(self) -> None:
        delay = 0.2
        while True:
            if not self._pending:
                self._clear_spool()
                self._idle.set()
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            fact = self._pending[0]
            try:
                result = await self._apply(fact)
            except QueueUnavailable as exc:
                if self.redis_ok:
                    log.error(
                        "Redis unavailable; missed calls are kept and applied when it is back",
                        error=str(exc),
                        waiting=len(self._pending),
                    )
                self.redis_ok = False
                if len(self._pending) != self._spooled:
                    self._write_spool()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_delay)
                continue
            except QueueInputError as exc:
                log.error("fact refused by the queue; dropped", error=str(exc))
                self._pending.popleft()
                continue
            if not self.redis_ok:
                log.info("Redis is back; applying waiting facts", waiting=len(self._pending))
            self.redis_ok = True
            delay = 0.2
            self._pending.popleft()
            await self._react(fact, result)

    async def apply(self, fact: Fact) -> Any:
        """Store one fact now, past the line (facts from AstDB records, whose record stays in
        Asterisk until this returns): raises QueueUnavailable, QueueInputError."""
        result = await self._apply(fact)
        await self._react(fact, result)
        return result

    async def _react(self, fact: Fact, result: Any) -> None:
        if self.on_applied is not None:
            try:
                outcome = self.on_applied(fact, result)
                if asyncio.iscoroutine(outcome):
                    await outcome
            except Exception:
                log.exception("reaction to a queued fact failed")

    async def _apply(self, fact: Fact) -> Any:
        if isinstance(fact, MissedCall):
            area = await self.area_of(fact.number, fact.category) if self.area_of else ""
            result = await self.queue.add_missed(
                number=fact.number,
                category=fact.category,
                source=fact.source,
                missed_at=fact.ended_at,
                call_id=fact.call_id,
                name=fact.name,
                queue=fact.queue,
                actor="pbx",
                area=area,
                caller_id=fact.caller_id,
                promised_by=fact.promised_by,
            )
            log.info(
                "missed call queued",
                call_id=fact.call_id,
                number=fact.number,
                caller_id=fact.caller_id,
                category=fact.category,
                source=fact.source.value,
                callback=result.id,
                result=result.result,
            )
            return result
        if isinstance(fact, SelfServed):
            counted = await self.queue.add_self_served(
                call_id=fact.call_id,
                number=fact.number,
                category=fact.category,
                reason=fact.reason,
                ended_at=fact.ended_at,
            )
            log.info(
                "call served by the IVR counted",
                call_id=fact.call_id,
                reason=fact.reason,
                result=counted,
            )
            return counted
        if isinstance(fact, Served):
            resolved: ResolveResult = await self.queue.resolve_number(
                fact.number, fact.how, call_id=fact.call_id, at=fact.at
            )
            if resolved.closed:
                log.info(
                    "customer got through; callback closed",
                    number=fact.number,
                    how=fact.how,
                    callback=resolved.id,
                    was=resolved.previous_state,
                )
            return resolved
        return None

    async def drain(self, timeout: float) -> bool:
        """Wait until every fact so far is applied (True) or the time is up (False)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def close(self, timeout: float = 5.0) -> None:
        self._closing = True
        self._wakeup.set()
        if not await self.drain(timeout) and self._pending:
            self._write_spool()
            log.warning(
                "stopping with facts not yet in Redis; kept in the spool file",
                waiting=len(self._pending),
                spool=str(self.spool),
            )
