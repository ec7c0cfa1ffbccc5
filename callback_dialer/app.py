"""The running dialer: every part wired once, every task owned, an orderly stop.

Start: the spool left by an outage, the queue sink, the AMI connection (Asterisk being down is
not fatal: it keeps trying), the dispatcher, the status page, the side-jobs bridge.
Stop (SIGINT/SIGTERM only set a flag): stop taking work, let callbacks in progress finish for a
while and the sink write what it holds, then cancel what is left and close the connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from .ami.client import AmiClient
from .clock import Clock, RealClock
from .config import Config
from .detect.facts import Fact, MissedCall, NotQueued, Served
from .detect.pipeline import Pipeline, build_pipeline
from .detect.resync import resync_agents, resync_calls
from .dispatch.dispatcher import Dispatcher
from .logs import configure_logging, get_logger
from .metrics import Metrics
from .queue.models import EnqueueResult
from .queue.store import CallbackQueue, QueueUnavailable, ResolveResult
from .tasks import TaskSet

log = get_logger(__name__)

DRAIN_SECONDS = 10.0


class Dialer:
    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        redis_url: str | None = None,
        spool: Path | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or RealClock()
        self.metrics = Metrics()
        self.redis = aioredis.Redis.from_url(
            redis_url or config.redis.url,
            password=config.redis.password or None,
            socket_timeout=config.redis.socket_timeout,
            socket_connect_timeout=config.redis.socket_timeout,
            health_check_interval=30,
        )
        self.queue = CallbackQueue(self.redis, config, self.clock)
        self.pipeline: Pipeline = build_pipeline(
            config,
            self.clock,
            self.queue,
            spool=spool if spool is not None else Path(config.queue.spool_file),
            on_applied=self._applied,
            on_agent_change=self._agent_changed,
            on_rest=self._rest_ends_at,
            on_fact=self._observe,
        )
        self.ami = AmiClient(config.ami, self.pipeline.router, self.clock)
        self.dispatcher = Dispatcher(
            config,
            self.clock,
            self.queue,
            self.pipeline.agents,
            self.pipeline.tracker,
            self.ami,
            self.metrics,
        )
        self.pipeline.router.add(self.dispatcher)
        self.ami.on_ready("agents", lambda: resync_agents(self.ami, self.pipeline))
        self.ami.on_ready("calls", lambda: resync_calls(self.ami, self.pipeline, self.clock))
        self.ami.on_ready("dispatcher", self._ami_ready)
        self.ami.on_lost(self.dispatcher.on_ami_lost)
        self.extra: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
        self.jobs_bridge: Any = None
        self.closers: list[Callable[[], Awaitable[Any]]] = []
        self._tasks = TaskSet("dialer", on_error=self._core_failed)
        self._stop = asyncio.Event()
        self.exit_code = 0
        self._register_gauges()

    # ------------------------------------------------------------------ reactions

    def _agent_changed(self, interface: str) -> None:
        self.dispatcher.agent_changed(interface)

    def _rest_ends_at(self, at: float) -> None:
        self.dispatcher.rest_ends_at(at)

    def _observe(self, fact: Fact) -> None:
        if isinstance(fact, NotQueued):
            self.metrics.not_queued.inc(fact.reason)

    async def _applied(self, fact: Fact, result: Any) -> None:
        if isinstance(fact, MissedCall) and isinstance(result, EnqueueResult):
            if result.result != "duplicate":
                self.metrics.missed_calls.inc(fact.category, fact.source.value)
            self.dispatcher.kick("callback_ready")
        elif isinstance(fact, Served) and isinstance(result, ResolveResult) and result.closed:
            self.metrics.served.inc(fact.how)
            if result.previous_state == "dialing":
                self.dispatcher.abort(result.id, fact.how)

    async def _ami_ready(self) -> None:
        self.metrics.ami_reconnects.inc()
        await self.dispatcher.on_ami_ready()

    def _register_gauges(self) -> None:
        async def depth() -> list[tuple[tuple[str, ...], float]]:
            counts = await self.queue.counts()
            out = []
            for category in self.config.category_names():
                for state in ("pending", "scheduled", "dialing"):
                    out.append(((category, state), float(counts[state].get(category, 0))))
            return out

        async def oldest() -> list[tuple[tuple[str, ...], float]]:
            since = await self.queue.oldest_waiting_since()
            return [((), 0.0 if since is None else max(0.0, self.clock.now() - since))]

        async def ami_up() -> list[tuple[tuple[str, ...], float]]:
            return [((), 1.0 if self.ami.authenticated else 0.0)]

        async def redis_up() -> list[tuple[tuple[str, ...], float]]:
            return [((), 1.0 if await self.queue.ping() else 0.0)]

        async def paused() -> list[tuple[tuple[str, ...], float]]:
            return [((), 1.0 if self.dispatcher.paused else 0.0)]

        async def in_progress() -> list[tuple[tuple[str, ...], float]]:
            return [((), float(len(self.dispatcher.inflight)))]

        async def backlog() -> list[tuple[tuple[str, ...], float]]:
            return [((), float(self.pipeline.sink.backlog))]

        m = self.metrics
        m.gauge(
            "callback_dialer_queue_depth",
            "Open callbacks by category and state.",
            ("category", "state"),
            depth,
        )
        m.gauge(
            "callback_dialer_oldest_waiting_seconds",
            "Age of the oldest open callback, from its first missed call.",
            (),
            oldest,
        )
        m.gauge("callback_dialer_ami_connected", "1 while logged in to Asterisk.", (), ami_up)
        m.gauge("callback_dialer_redis_reachable", "1 while Redis answers.", (), redis_up)
        m.gauge("callback_dialer_dispatch_paused", "1 while dispatching is paused.", (), paused)
        m.gauge(
            "callback_dialer_callbacks_in_progress",
            "Callback attempts being made.",
            (),
            in_progress,
        )
        m.gauge(
            "callback_dialer_facts_waiting", "Missed/served facts not yet in Redis.", (), backlog
        )

    # ------------------------------------------------------------------ health

    async def health(self) -> tuple[bool, list[str]]:
        problems = []
        if not self.ami.authenticated:
            problems.append(f"AMI not connected: {self.ami.last_error or 'connecting'}")
        if not await self.queue.ping():
            problems.append("Redis not reachable")
        return (not problems, problems)

    # ------------------------------------------------------------------ running

    def spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        return self._tasks.spawn(coro, name)

    def _core_failed(self, task: asyncio.Task[Any], exc: BaseException) -> None:
        if self._stop.is_set():
            return
        log.error(
            "a core task crashed; stopping so the service manager restarts us", task=task.get_name()
        )
        self.exit_code = 1
        self._stop.set()

    async def start(self) -> None:
        self.pipeline.sink.load_spool()
        with contextlib.suppress(QueueUnavailable):
            await self.dispatcher.load_control()
        self.spawn("sink", self.pipeline.sink.run())
        self.spawn("ami", self.ami.run())
        self.spawn("dispatcher", self.dispatcher.run())
        for name, factory in self.extra:
            self.spawn(name, factory())
        log.info(
            "dialer started",
            ami=f"{self.config.ami.host}:{self.config.ami.port}",
            dispatching="paused" if self.dispatcher.paused else "on",
        )

    def request_stop(self) -> None:
        self._stop.set()

    async def wait(self) -> None:
        await self._stop.wait()

    async def stop(self) -> None:
        self._stop.set()
        log.info("stopping: no new callbacks; finishing those in progress")
        await self.dispatcher.stop(drain_timeout=DRAIN_SECONDS)
        await self.pipeline.sink.close(timeout=5)
        for closer in self.closers:
            with contextlib.suppress(Exception):
                await closer()
        await self.ami.close()
        await self._tasks.cancel_all()
        await self.redis.aclose()
        log.info("stopped")


def install_signal_handlers(dialer: Dialer) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, dialer.request_stop)


async def run_dialer(
    config: Config,
    *,
    clock: Clock | None = None,
    redis_url: str | None = None,
    web: bool = True,
    spool: Path | None = None,
) -> int:
    """``callback-dialer run``: until SIGINT/SIGTERM."""
    configure_logging(config.logging)
    dialer = Dialer(config, clock=clock, redis_url=redis_url, spool=spool)
    if web and config.web.enabled:
        attach_web(dialer)
    attach_jobs(dialer)
    install_signal_handlers(dialer)
    await dialer.start()
    try:
        await dialer.wait()
    finally:
        await dialer.stop()
    return dialer.exit_code


def attach_web(dialer: Dialer) -> Any:
    """The status page in the dialer's own event loop; returns its server (``.url``,
    ``.started``)."""
    from .web.server import attach

    return attach(dialer)


def attach_jobs(dialer: Dialer) -> None:
    """Side jobs (webhooks, SMS, reports): the bridge turns the queue's events into rq jobs
    that `callback-dialer worker` runs, without blocking this loop."""
    from .dispatch.estimate import estimate_minutes
    from .jobs.bridge import JobsBridge

    async def estimate(callback: Any) -> int:
        return await estimate_minutes(
            callback,
            queue=dialer.queue,
            agents=dialer.pipeline.agents,
            config=dialer.config,
            clock=dialer.clock,
        )

    bridge = JobsBridge(
        dialer.redis, dialer.config, dialer.queue, dialer.clock, estimate_minutes=estimate
    )
    dialer.jobs_bridge = bridge
    dialer.extra.append(("jobs-bridge", bridge.run))
    dialer.closers.append(bridge.close)
