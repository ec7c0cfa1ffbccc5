"""Timers on the shared clock: everything the simulated PBX does later goes through here.

Each timer waits with ``clock.sleep`` and then runs a plain function. All state changes happen
in those functions, never across awaits, so a ManualClock moves the whole PBX deterministically
(timers due at one instant run in the order they were set) and a ScaledClock runs the same code
faster than real time.

Work due "now" (``call_soon``, or ``call_later`` with no delay) never becomes a task: it runs
before the current step returns, in order, after the step itself (run to completion). A chain
of immediate steps therefore finishes at the same clock instant, however a ManualClock is moved.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog

from .clock import Clock

log = structlog.get_logger(__name__)


class Timer:
    __slots__ = ("_task", "cancelled", "due")

    def __init__(self, due: float) -> None:
        self.due = due
        self.cancelled = False
        self._task: asyncio.Task[None] | None = None

    def cancel(self) -> None:
        self.cancelled = True
        if self._task is not None and not self._task.done():
            self._task.cancel()


class Scheduler:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._soon: deque[tuple[Timer | None, Callable[..., Any], tuple[Any, ...]]] = deque()
        self._draining = False
        self.errors = 0

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        self._soon.append((None, fn, args))
        self._drain()

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` now, then everything it made due now. For entry points from outside
        (an AMI action, a test's script)."""
        if self._draining:
            return fn(*args)
        self._draining = True
        try:
            return fn(*args)
        finally:
            self._draining = False
            self._drain()

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Timer:
        timer = Timer(self.clock.now() + max(0.0, delay))
        if delay <= 0:
            self._soon.append((timer, fn, args))
            self._drain()
            return timer
        task = asyncio.get_running_loop().create_task(self._run(timer, fn, args))
        timer._task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return timer

    async def _run(self, timer: Timer, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        # The due time was fixed when the timer was set; a task that starts late (the loop was
        # busy, a test moved a ManualClock before it ran) still fires at once, not later.
        await self.clock.sleep(timer.due - self.clock.now())
        self._soon.append((timer, fn, args))
        self._drain()

    def _drain(self) -> None:
        if self._draining:
            return
        self._draining = True
        try:
            while self._soon:
                timer, fn, args = self._soon.popleft()
                if timer is not None and timer.cancelled:
                    continue
                try:
                    fn(*args)
                except Exception:
                    self.errors += 1
                    log.exception(
                        "simulated PBX step failed", step=getattr(fn, "__qualname__", "?")
                    )
        finally:
            self._draining = False

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
