"""Background tasks that are never lost: each one is referenced until it ends, and a failure is
logged (a forgotten asyncio Task swallows its exception and may be garbage-collected mid-way)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from .logs import get_logger

log = get_logger(__name__)

OnError = Callable[[asyncio.Task[Any], BaseException], None]


class TaskSet:
    def __init__(self, owner: str, on_error: OnError | None = None) -> None:
        self.owner = owner
        self.on_error = on_error
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        log.error("background task failed", owner=self.owner, task=task.get_name(), error=repr(exc))
        if self.on_error is not None:
            self.on_error(task, exc)

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(list(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)
