"""Time, as the simulated PBX sees it: whatever clock it is given, shared with its clients.

The simulator never reads the wall clock. It is handed a clock and keeps it: a demo or a test
gives the dialer and the simulator the same object (callback_dialer's ``ScaledClock`` to run
a day in minutes, its ``ManualClock`` to move time by hand), so both sides agree on every
instant. ``Clock`` is therefore structural: anything with ``now`` and ``sleep`` will do, and
nothing here needs the product's classes.

``ManualClock`` is the simulator's own hand-moved clock, for the scenarios it plays alone
(``play`` without a clock); ``run_for`` moves any clock that can be moved (``advance``) and
simply waits on any other.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Protocol, runtime_checkable


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch, on this clock."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""


@runtime_checkable
class SteppedClock(Clock, Protocol):
    """A clock that only moves when told to (a test's, a scenario's)."""

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking every sleeper whose time has come, in order."""


class ManualClock:
    """A clock that only moves when ``advance`` is called; sleepers wake in order."""

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
        # No real time passes on it: a client sharing this clock (the dialer) may ask.
        return 0.0

    async def advance(self, seconds: float) -> None:
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


async def run_for(clock: Clock, seconds: float, step: float = 1.0) -> None:
    """Let ``seconds`` of ``clock`` time pass: a clock that can be moved is moved in steps
    (each step lets the timers it wakes run, and the tasks they start register their own
    timers); any other clock is simply waited on."""
    if not isinstance(clock, SteppedClock):
        await clock.sleep(seconds)
        return
    remaining = seconds
    while remaining > 1e-9:
        for _ in range(3):
            await asyncio.sleep(0)
        chunk = min(step, remaining)
        await clock.advance(chunk)
        remaining -= chunk
    for _ in range(3):
        await asyncio.sleep(0)
