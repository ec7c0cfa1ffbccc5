"""Helpers for the side-job tests (no tests here): a real HTTP receiver on 127.0.0.1, a real
rq worker process, a slow TCP proxy in front of Redis, and cleanup of rq's own keys."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from aiohttp import web

from callback_dialer.config import Config
from callback_dialer.jobs.bridge import JobsBridge

from .conftest import REPO

_WORKER = """
import json, sys
from callback_dialer.config import parse_config
from callback_dialer.jobs.worker import run_worker
sys.exit(run_worker(parse_config(json.loads(sys.argv[1]), "test"), burst=True))
"""


@dataclass
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Stands in for a CRM or an SMS gateway: records every request, answers ``status`` (or
    what ``respond`` says). ``stop()`` and ``start()`` again keep the same port."""

    status: int = 200
    respond: Callable[[Received], int] | None = None
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        got = Received(
            request.path, dict(request.query), dict(request.headers), await request.read()
        )
        self.requests.append(got)
        status = self.respond(got) if self.respond else self.status
        return web.Response(status=status, text="ok" if status < 300 else "nope")

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if not self.port:
            self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]


async def run_worker(config: Config, timeout: float = 30.0) -> str:
    """A real `run_worker(config, burst=True)` in its own process, as `callback-dialer worker
    --burst` runs it; the test's event loop (and its receivers) keep running meanwhile."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _WORKER,
        json.dumps(config.model_dump(mode="json")),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    text = out.decode("utf-8", "replace")
    assert proc.returncode == 0, text
    return text


async def hand_over_all(bridge: JobsBridge) -> int:
    total = 0
    while n := await bridge.process_once():
        total += n
    return total


def purge_rq(redis_url: str, key_prefix: str) -> None:
    """Delete rq's keys for this test's queue (they live outside our key prefix) and the jobs
    they name."""
    client = redis.Redis.from_url(redis_url)
    try:
        names = list(client.scan_iter(match=f"rq:*{key_prefix}*", count=1000))
        job_ids: set[bytes] = set()
        for name in names:
            kind = client.type(name)
            if kind == b"list":
                job_ids.update(client.lrange(name, 0, -1))
            elif kind == b"zset":
                job_ids.update(m.split(b":")[0] for m in client.zrange(name, 0, -1))
        for job_id in job_ids:
            found = list(client.scan_iter(match=b"rq:*" + job_id + b"*", count=1000))
            if found:
                client.delete(*found)
        if names:
            client.delete(*names)
        for member in client.smembers("rq:queues"):
            if key_prefix.encode() in member:
                client.srem("rq:queues", member)
    finally:
        client.close()


class SlowProxy:
    """A TCP proxy in front of Redis that holds every chunk from the client for ``delay``
    seconds: a Redis (or network) that answers slowly, without touching the shared server.
    It runs its own event loop in a thread, so a blocked test loop cannot slow it down."""

    def __init__(self, target_host: str, target_port: int, delay: float) -> None:
        self.target = (target_host, target_port)
        self.delay = delay
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, delay: float) -> None:
            try:
                while data := await src.read(65536):
                    if delay:
                        await asyncio.sleep(delay)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, self.delay), pipe(up_reader, writer, 0))

    def __enter__(self) -> SlowProxy:
        self._thread.start()
        self._ready.wait(5)
        return self

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


class LoopLag:
    """Measures how late a 10 ms ticker wakes up: the longest the event loop was blocked."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            self.worst = max(self.worst, time.perf_counter() - before - 0.01)

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._tick())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        await asyncio.sleep(0.03)  # let the ticker see a stall that ended just now
        self._task.cancel()
