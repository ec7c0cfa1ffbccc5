"""Time, as every part of the dialer sees it.

Everything that reads the time or waits goes through a ``Clock``: the queue's due times and
leases, the call tracker's durations, wrap-up and cool-down, calling hours. That lets the PBX
simulator run a whole working day in minutes through the same code paths (``ScaledClock``)
and lets tests move time by hand (``ManualClock``) instead of sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch, on this clock."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""

    def to_real(self, seconds: float) -> float:
        """How many real seconds ``seconds`` of this clock's time take."""


async def wait_event(event: asyncio.Event, clock: Clock, seconds: float) -> bool:
    """Until ``event`` is set or ``seconds`` of ``clock`` time pass; True when it was set.
    (asyncio.wait_for would measure real seconds; a simulated day needs the clock's.)"""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        sleeper.cancel()
    return event.is_set()


class RealClock:
    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def to_real(self, seconds: float) -> float:
        return seconds


class ScaledClock:
    """Runs ``speed`` times faster than real time, starting at ``start`` (epoch seconds)."""

    def __init__(self, speed: float, start: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._start = time.time() if start is None else start
        self._origin = time.monotonic()

    def now(self) -> float:
        return self._start + (time.monotonic() - self._origin) * self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)

    def to_real(self, seconds: float) -> float:
        return seconds / self.speed


class ManualClock:
    """A clock that only moves when a test calls ``advance``; sleepers wake in order."""

    def __init__(self, start: float = 1_795_345_800.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), future))
        await future

    def to_real(self, seconds: float) -> float:
        return 0.0

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking every sleeper whose time has come, in order."""
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            due, _, future = heapq.heappop(self._sleepers)
            self._now = max(self._now, due)
            if not future.done():
                future.set_result(None)
            # let the woken task run before time moves on
            for _ in range(5):
                await asyncio.sleep(0)
        self._now = target
        for _ in range(5):
            await asyncio.sleep(0)
