"""The running dialer: every part built and connected in one place, every task owned, an orderly
stop.

``build_dialer`` makes the parts and connects them, there and nowhere else: each part gets the
callbacks it reports to, at construction where its API takes them (the detection pipeline) and
through its registration methods where that is its API (the AMI link's ready/lost hooks, the
event router, the dispatcher's state listeners). Nothing sets a hook on a part later from
outside, and nothing else reaches into the parts: the status page gets ``DialerStatus`` and
``DialerCommands`` (the ``web.ports`` interfaces), which delegate to them.

``Dialer`` runs what ``build_dialer`` made. Start: the spool left by an outage, the queue sink,
the AMI connection (Asterisk being down is not fatal: it keeps trying), the dispatcher, the
status page, the side-jobs bridge. Stop (SIGINT/SIGTERM only set a flag): stop taking work, let
callbacks in progress finish for a while and the sink write what it holds, then close the page
and the bridge, cancel what is left and close the connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from .agi.offer import OfferScripts
from .agi.server import FastAgiServer
from .ami.astdb import AstDb
from .ami.client import AmiClient
from .clock import Clock, RealClock
from .config import Config
from .detect.agents import AgentBook, AgentView, QueueAgents
from .detect.facts import Fact, MissedCall, NotQueued, SelfServed, Served
from .detect.livequeue import LiveQueueBook
from .detect.pipeline import Pipeline, build_pipeline
from .detect.records import CallRecords
from .detect.resync import resync_agents, resync_calls
from .detect.sink import QueueSink
from .dispatch.dispatcher import Dispatcher
from .dispatch.estimate import Estimator
from .dispatch.fates import CallbackFates
from .dispatch.leadership import Leadership
from .jobs.admin import JobsAdmin
from .jobs.bridge import JobsBridge
from .jobs.reports import ReportFiles, generate_report, list_reports, report_file
from .logs import configure_logging, get_logger
from .metrics import Metrics
from .outage.service import OutageService
from .queue.connect import AsyncClient, ClusterNotSupported, async_client, close_async_client
from .queue.keys import Keys
from .queue.lease import LeaderLease
from .queue.models import Callback, EnqueueResult, HistoryEntry, Outage, OutageEnd
from .queue.store import ActionResult, CallbackQueue, QueueUnavailable, ResolveResult
from .queuelog import QueueLogWriter
from .tasks import TaskSet
from .web.ports import (
    DispatchState,
    HoldRow,
    LiveQueueRow,
    LiveQueues,
    SideJobs,
    StoredSession,
)
from .web.server import WebServer

log = get_logger(__name__)

DRAIN_SECONDS = 10.0


def build_dialer(
    config: Config,
    *,
    clock: Clock | None = None,
    redis_url: str | None = None,
    spool: Path | None = None,
    web: bool = False,
    jobs: bool = False,
) -> Dialer:
    """The dialer for ``config``, wired, not started.

    ``clock``: the dialer's time (real by default; the demo's runs faster, tests hold it);
    ``redis_url`` instead of ``[redis] url``; ``spool`` instead of ``[queue] spool_file``;
    ``web``: serve the status page on ``[web] host:port``; ``jobs``: hand the queue's events
    over to the side jobs (rq: webhooks, SMS, reports).
    """
    clock = clock or RealClock()
    metrics = Metrics()
    # One server, the master Sentinel names, or a Cluster: queue/connect.py decides.
    redis = async_client(config, redis_url)
    # Several dialers may share the PBX and Redis: only the lease's holder dispatches, and
    # the queue refuses claims, renewals and outcomes that carry a stale holding.
    leadership = Leadership(
        config,
        LeaderLease(redis, config),
        on_change=lambda gained, superseded: dispatcher.on_leadership(gained, superseded),
    )
    queue = CallbackQueue(redis, config, clock, fence=leadership.fence)
    # Detection reports to the dispatcher, which is made below from its own
    # parts: these callbacks look them up when called (after build_dialer), not now.
    pipeline = build_pipeline(
        config,
        clock,
        queue,
        spool=spool if spool is not None else Path(config.queue.spool_file),
        on_applied=lambda fact, result: _applied(fact, result, metrics),
        on_agent_change=lambda interface: _agent_changed(interface, dispatcher, estimator),
        on_rest=lambda at: dispatcher.rest_ends_at(at),
        on_fact=lambda fact: _observe(fact, metrics),
        on_live_change=lambda queue: dispatcher.live_changed(queue),
        # Outage mode by area: the CRM's word on where a caller lives, asked only then.
        area_of=lambda number, category: outages.area_for(number, category),
    )
    ami = AmiClient(config.ami, pipeline.router, clock)
    # Outages: held callbacks, the dialplan's UserEvent, the AstDB mirror; the leader settles.
    outages = OutageService(
        config, clock, queue, ami_action=ami.send_action, leading=leadership.may_act
    )
    dispatcher = Dispatcher(
        config,
        clock,
        queue,
        pipeline.agents,
        pipeline.tracker,
        ami,
        metrics,
        name=leadership.instance,
        leading=leadership.may_act,
        live=pipeline.live,
        settle_recorded=lambda: fates.catch_up("take-over") if fates else _nothing(),
    )
    # The estimate the IVR promises and the SMS repeats, answered from memory.
    estimator = Estimator(config, clock, queue, pipeline.agents, pipeline.tracker)
    queue.on_change(estimator.queue_changed)
    agi = None
    if config.ivr.agi_enabled:
        agi = FastAgiServer(
            OfferScripts(config, clock, pipeline.tracker, estimator).scripts(),
            host=config.ivr.agi_host,
            port=config.ivr.agi_port,
            timeout=config.ivr.agi_timeout,
        )
    jobs_admin = _JobsAdminLink(config)
    status = DialerStatus(
        config=config,
        clock=clock,
        metrics=metrics,
        redis=redis,
        queue=queue,
        agents=pipeline.agents,
        live=pipeline.live,
        dispatcher=dispatcher,
        leadership=leadership,
        ami=ami,
        jobs_admin=jobs_admin,
    )
    commands = DialerCommands(
        config=config,
        queue=queue,
        dispatcher=dispatcher,
        jobs_admin=jobs_admin,
        outages=outages,
    )
    sessions = RedisSessions(redis, queue.keys, keep=config.web.session_max)

    # What the dialplan recorded in AstDB while nobody listened: read after the calls'
    # resync (a call it found ended unseen, "fate unknown", is then settled by its record)
    # and before the dispatcher's hook (no callback dialled on a picture without them).
    records = (
        CallRecords(
            config,
            AstDb(ami),
            pipeline.tracker,
            pipeline.sink,
            clock,
            metrics,
            connected=lambda: ami.authenticated,
        )
        if config.records.enabled
        else None
    )

    pipeline.router.add(dispatcher)
    pipeline.router.add(outages)
    ami.on_ready("outages", outages.ami_ready)
    ami.on_ready("agents", lambda: resync_agents(ami, pipeline))
    ami.on_ready("calls", lambda: resync_calls(ami, pipeline, clock))
    # The callback calls' fates the dialplan recorded: settled before the dispatcher's hook,
    # so a callback whose call ended unseen is not offered again (leader only).
    fates = (
        CallbackFates(
            config,
            AstDb(ami),
            queue,
            clock,
            metrics,
            in_flight=lambda callback_id: dispatcher.inflight.get(callback_id),
            leading=leadership.may_act,
        )
        if config.records.enabled
        else None
    )
    if records is not None and fates is not None:
        ami.on_ready("call records", lambda: _catch_up(records, fates))
    ami.on_ready("dispatcher", lambda: _ami_ready(metrics, dispatcher))
    ami.on_lost(dispatcher.on_ami_lost)

    _register_gauges(metrics, config, clock, queue, ami, dispatcher, pipeline.sink, outages)
    _register_live_gauges(metrics, config, pipeline.live)
    _register_side_job_gauges(metrics, jobs_admin)

    bridge = None
    if jobs and config.redis.cluster:
        # rq cannot use a cluster (queue/connect.py): the dialer runs without side jobs.
        log.warning("side jobs off: rq cannot use a Redis Cluster (see README, Redis HA)")
    elif jobs:

        async def estimate(callback: Callback) -> int:
            return estimator.for_callback(callback).minutes

        # Turns the queue's events into rq jobs that `callback-dialer worker` runs, without
        # blocking this loop.
        bridge = JobsBridge(redis, config, queue, clock, estimate_minutes=estimate)

    # Opt-in: each callback's life in Asterisk's queue_log, for the supervisors' reports.
    queue_log = (
        QueueLogWriter(redis, config, queue, ami, clock, leading=leadership.may_act)
        if config.queue_log.enabled
        else None
    )
    if queue_log is not None:
        _register_queue_log_gauge(metrics, queue_log)

    return Dialer(
        config=config,
        clock=clock,
        metrics=metrics,
        redis=redis,
        queue=queue,
        pipeline=pipeline,
        ami=ami,
        dispatcher=dispatcher,
        leadership=leadership,
        status=status,
        commands=commands,
        jobs_admin=jobs_admin,
        sessions=sessions,
        web=WebServer(config, status, commands, sessions) if web else None,
        jobs_bridge=bridge,
        outages=outages,
        sweeps=(
            (lambda: _sweep(config, clock, ami, lambda: _catch_up(records, fates, "sweep")))
            if records is not None and fates is not None
            else None
        ),
        queue_log=queue_log,
        records=records,
        fates=fates,
        estimator=estimator,
        agi=agi,
    )


# ---------------------------------------------------------------------- reactions


def _agent_changed(interface: str, dispatcher: Dispatcher, estimator: Estimator) -> None:
    dispatcher.agent_changed(interface)
    estimator.agent_changed(interface)


def _observe(fact: Fact, metrics: Metrics) -> None:
    if isinstance(fact, NotQueued):
        metrics.not_queued.inc(fact.reason)


async def _applied(fact: Fact, result: Any, metrics: Metrics) -> None:
    """A fact is in Redis: count it. (The dispatcher hears what it changed from the queue.)"""
    if isinstance(fact, MissedCall) and isinstance(result, EnqueueResult):
        if result.result != "duplicate":
            metrics.missed_calls.inc(fact.category, fact.source.value)
    elif isinstance(fact, SelfServed) and result == "counted":
        metrics.self_service.inc(fact.reason)
    elif isinstance(fact, Served) and isinstance(result, ResolveResult) and result.closed:
        metrics.served.inc(fact.how)


async def _nothing() -> None:
    return None


async def _catch_up(records: CallRecords, fates: CallbackFates, why: str = "reconnect") -> None:
    await records.catch_up(why)
    await fates.catch_up(why)


async def _sweep(config: Config, clock: Clock, ami: AmiClient, catch_up: Callable[[], Any]) -> None:
    """Every ``[records] sweep_every`` while connected: the records of calls followed live are
    compared and deleted (AstDB stays small), anything the events missed is applied."""
    while True:
        await clock.sleep(config.records.sweep_every)
        if ami.authenticated:
            await catch_up()


async def _ami_ready(metrics: Metrics, dispatcher: Dispatcher) -> None:
    metrics.ami_reconnects.inc()
    await dispatcher.on_ami_ready()


Reading = list[tuple[tuple[str, ...], float]]


def _register_gauges(
    metrics: Metrics,
    config: Config,
    clock: Clock,
    queue: CallbackQueue,
    ami: AmiClient,
    dispatcher: Dispatcher,
    sink: QueueSink,
    outages: OutageService,
) -> None:
    async def depth() -> Reading:
        counts = await queue.counts()
        out = []
        for category in config.category_names():
            for state in ("pending", "scheduled", "dialing", "held"):
                out.append(((category, state), float(counts[state].get(category, 0))))
        return out

    async def oldest() -> Reading:
        since = await queue.oldest_waiting_since()
        return [((), 0.0 if since is None else max(0.0, clock.now() - since))]

    async def ami_up() -> Reading:
        return [((), 1.0 if ami.authenticated else 0.0)]

    async def redis_up() -> Reading:
        return [((), 1.0 if await queue.ping() else 0.0)]

    async def paused() -> Reading:
        return [((), 1.0 if dispatcher.paused else 0.0)]

    async def in_progress() -> Reading:
        return [((), float(len(dispatcher.inflight)))]

    async def backlog() -> Reading:
        return [((), float(sink.backlog))]

    async def outages_now() -> Reading:
        found = await queue.outages(limit=50)
        return [
            ((state,), float(sum(1 for o in found if o.state.value == state)))
            for state in ("active", "ending")
        ]

    async def lookups_failed() -> Reading:
        return [((), float(outages.lookups_failed))]

    m = metrics
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
    m.gauge("callback_dialer_facts_waiting", "Missed/served facts not yet in Redis.", (), backlog)
    m.gauge(
        "callback_dialer_outages",
        "Outages holding missed calls (active), and ended ones still settling their held.",
        ("state",),
        outages_now,
    )
    m.gauge(
        "callback_dialer_area_lookups_failed",
        "CRM area lookups that failed or timed out since start (those calls were not held).",
        (),
        lookups_failed,
    )


def _register_live_gauges(metrics: Metrics, config: Config, live: LiveQueueBook) -> None:
    """Asterisk's queues as the dialer follows them: every queue it knows of, 0 when empty."""

    def views() -> list[Any]:
        return live.views(sorted(set(config.dispatch.queues) | set(live.queues())))

    async def waiting() -> Reading:
        return [((v.queue,), float(v.waiting)) for v in views()]

    async def longest() -> Reading:
        return [((v.queue,), round(v.longest_wait, 3)) for v in views()]

    metrics.gauge(
        "callback_dialer_live_waiting",
        "Callers waiting live in each Asterisk queue now.",
        ("queue",),
        waiting,
    )
    metrics.gauge(
        "callback_dialer_live_longest_wait_seconds",
        "How long the longest-waiting live caller of each Asterisk queue has held.",
        ("queue",),
        longest,
    )


def _register_queue_log_gauge(metrics: Metrics, writer: QueueLogWriter) -> None:
    async def lines() -> list[tuple[tuple[str, ...], float]]:
        return [(("written",), float(writer.written)), (("refused",), float(writer.refused))]

    # Refused lines climbing: the AMI user lacks write = agent (README, queue_log).
    metrics.gauge(
        "callback_dialer_queue_log_lines",
        "queue_log lines since start: written (acknowledged by Asterisk) or refused (skipped).",
        ("result",),
        lines,
    )


def _register_side_job_gauges(metrics: Metrics, jobs_admin: _JobsAdminLink) -> None:
    async def job_counts() -> Any:
        try:
            return await asyncio.to_thread(lambda: jobs_admin.get().counts())
        except Exception as exc:  # no series rather than a failed scrape
            log.debug("side job counts not readable", error=str(exc))
            return None

    async def jobs() -> list[tuple[tuple[str, ...], float]]:
        counts = await job_counts()
        if counts is None:
            return []
        return [
            ((state,), float(getattr(counts, state)))
            for state in ("queued", "started", "scheduled", "failed")
        ]

    async def webhooks() -> list[tuple[tuple[str, ...], float]]:
        counts = await job_counts()
        if counts is None:
            return []
        return [
            (("waiting",), float(counts.webhooks_waiting)),
            (("parked",), float(counts.webhooks_parked)),
        ]

    metrics.gauge(
        "callback_dialer_side_jobs",
        "Side jobs (webhooks, SMS, reports) by state; "
        "failed ones used all their tries and wait for a re-run.",
        ("state",),
        jobs,
    )
    metrics.gauge(
        "callback_dialer_webhook_events",
        "Webhook events waiting for delivery, and parked after a receiver refused them.",
        ("state",),
        webhooks,
    )


# ---------------------------------------------------------------------- what the web sees


class _JobsAdminLink:
    """The one ``JobsAdmin`` (rq's sync Redis client) the page's reads and re-runs share: made
    at first use, so a dialer whose page nobody opens never connects it; closed at the stop."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._admin: JobsAdmin | None = None

    def get(self) -> JobsAdmin:
        if self._admin is None:
            self._admin = JobsAdmin(self._config)
        return self._admin

    def close(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(Exception):
                admin.close()


class DialerStatus:
    """The web's ``StatusSource``: every read handed to the part that knows the answer."""

    def __init__(
        self,
        *,
        config: Config,
        clock: Clock,
        metrics: Metrics,
        redis: AsyncClient,
        queue: CallbackQueue,
        agents: AgentBook,
        live: LiveQueueBook,
        dispatcher: Dispatcher,
        leadership: Leadership,
        ami: AmiClient,
        jobs_admin: _JobsAdminLink,
    ) -> None:
        self._config = config
        self._leadership = leadership
        self._clock = clock
        self._metrics = metrics
        self._redis = redis
        self._queue = queue
        self._agents = agents
        self._live = live
        self._dispatcher = dispatcher
        self._ami = ami
        self._jobs_admin = jobs_admin
        # XREAD must return before the client's socket timeout would call the link dead.
        self._events_block_ms = max(100, int(min(2.0, config.redis.socket_timeout / 2) * 1000))

    # ---- the clock and the calendar

    def now(self) -> float:
        return self._clock.now()

    def clock_rate(self) -> float:
        real = self._clock.to_real(1.0)
        return 1.0 / real if real > 0 else 0.0

    def day_key(self, at: float) -> str:
        return self._queue.hours.day_key(at)

    # ---- the queue

    async def waiting(self, limit: int, categories: list[str] | None = None) -> list[Callback]:
        return await self._queue.waiting(limit, categories)

    async def dialing(self) -> list[Callback]:
        return await self._queue.in_progress()

    async def finished_between(self, start: float, end: float) -> list[Callback]:
        return await self._queue.finished_between(start, end)

    async def callback(self, callback_id: str) -> Callback | None:
        return await self._queue.get(callback_id)

    async def callbacks_of(self, number: str) -> list[Callback]:
        return await self._queue.for_number(number)

    async def history(self, callback_id: str) -> list[HistoryEntry]:
        return await self._queue.history(callback_id)

    async def counts(self) -> dict[str, dict[str, int]]:
        return await self._queue.counts()

    async def oldest_waiting_since(self) -> float | None:
        return await self._queue.oldest_waiting_since()

    async def day_callbacks(self, day: str) -> list[Callback]:
        return await self._queue.day_callbacks(day)

    async def day_stats(self, day: str) -> dict[str, int]:
        return await self._queue.day_stats(day)

    async def outages(self) -> list[Outage]:
        return await self._queue.outages(limit=20)

    async def held_callbacks(self, limit: int) -> list[Callback]:
        found: list[Callback] = []
        for outage in await self._queue.outages(limit=50):
            if outage.waiting and len(found) < limit:
                found += await self._queue.held_callbacks(outage.id, limit - len(found))
        return found

    async def next_queue_change(self, after: str | None) -> str | None:
        try:
            rows = await self._redis.xread(
                {self._queue.keys.events(): after or "$"}, count=500, block=self._events_block_ms
            )
        except (RedisError, OSError) as exc:
            raise QueueUnavailable(f"Redis unreachable: {exc}") from exc
        for _, entries in rows or []:
            if entries:
                entry_id = entries[-1][0]
                after = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        return after

    # ---- this dialer's memory

    def attempts_in_progress(self) -> list[dict[str, Any]]:
        return self._dispatcher.in_progress()

    def agents(self) -> list[AgentView]:
        return self._agents.views()

    def live_queues(self) -> LiveQueues:
        counts = self._agents.queue_counts()
        names = sorted(set(self._config.dispatch.queues) | set(counts) | set(self._live.queues()))
        rows = []
        for view in self._live.views(names):
            c = counts.get(view.queue, QueueAgents())
            rows.append(
                LiveQueueRow(
                    queue=view.queue,
                    waiting=view.waiting,
                    longest_wait=view.longest_wait,
                    oldest_joined_at=view.oldest_joined_at,
                    logged_in=c.logged_in,
                    agents_free=c.free,
                    agents_on_live=c.on_live,
                    agents_on_callbacks=c.on_callbacks,
                    agents_paused=c.paused,
                )
            )
        d = self._dispatcher
        return LiveQueues(
            queues=rows,
            holding=[
                HoldRow(
                    agent=h.agent,
                    queue=h.queue,
                    reason=h.reason.value,
                    waiting=h.waiting,
                    longest_wait=h.longest_wait,
                    detail=h.detail,
                )
                for h in d.holding_off()
            ],
            holding_since=d.holding_since,
            handicap=self._config.dispatch.callback_handicap,
        )

    def dispatch_state(self) -> DispatchState:
        d = self._dispatcher
        ok, why = d.can_dispatch()
        return DispatchState(
            paused=d.paused,
            paused_by=d.paused_by,
            paused_reason=d.paused_reason,
            alarm=d.alarm,
            dispatching=ok,
            blocked_by=why,
            instance=self._leadership.instance,
            leader=self._leadership.leader,
        )

    def on_dispatch_change(self, listener: Callable[[], None]) -> None:
        self._dispatcher.on_state_change(listener)

    # ---- the links and the process

    def ami_link(self) -> tuple[bool, str]:
        if self._ami.authenticated:
            return True, ""
        return False, self._ami.last_error or ""

    async def health(self) -> tuple[bool, list[str]]:
        problems = []
        if not self._ami.authenticated:
            problems.append(f"AMI not connected: {self._ami.last_error or 'connecting'}")
        if not await self._queue.ping():
            problems.append("Redis not reachable")
        return (not problems, problems)

    async def metrics_text(self) -> str:
        # A gauge that cannot be read is left out; the rest still render.
        return await self._metrics.render()

    # ---- side jobs and reports

    def _read_side_jobs(self) -> SideJobs:
        admin = self._jobs_admin.get()
        return SideJobs(
            counts=admin.counts(),
            failed=admin.failed_jobs(limit=50),
            parked=admin.parked_events(limit=50),
            receivers=admin.receivers(),
            reports=list_reports(self._config)[:31],
        )

    async def side_jobs(self) -> SideJobs:
        try:
            return await asyncio.to_thread(self._read_side_jobs)
        except ClusterNotSupported as exc:
            raise QueueUnavailable(str(exc)) from exc
        except (RedisError, OSError) as exc:
            raise QueueUnavailable(f"Redis unreachable: {exc}") from exc

    async def reports(self) -> list[ReportFiles]:
        return await asyncio.to_thread(list_reports, self._config)

    async def report_file(self, name: str) -> Path | None:
        return await asyncio.to_thread(report_file, self._config, name)


_TOUCH = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'seen', ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class RedisSessions:
    """The web's ``SessionStore`` in Redis: a hash per session that expires when unused, and
    a set per user naming theirs (for signing out everywhere)."""

    def __init__(self, redis: AsyncClient, keys: Keys, *, keep: float) -> None:
        self._redis = redis
        self._keys = keys
        self._keep = max(1, int(keep))  # a user's set outlives their longest session
        self._touch = redis.register_script(_TOUCH)

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except (RedisError, OSError) as exc:
            raise QueueUnavailable(f"Redis unreachable: {exc}") from exc

    async def open_session(self, digest: str, user: str, now: float, ttl: float) -> None:
        key, mine = self._keys.session(digest), self._keys.user_sessions(user)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, mapping={"user": user, "created": repr(now), "seen": repr(now)})
        pipe.expire(key, max(1, int(ttl)))
        pipe.sadd(mine, digest)
        pipe.expire(mine, self._keep)
        await self._call(pipe.execute())
        await self._prune(mine)

    async def _prune(self, mine: str) -> None:
        """Forget the user's sessions that ran out by themselves (their hash expired), so the
        set of someone who signs in every day does not grow for ever."""
        digests = [
            d.decode() if isinstance(d, bytes) else d
            for d in await self._call(self._redis.smembers(mine))
        ]
        pipe = self._redis.pipeline(transaction=False)
        for digest in digests:
            pipe.exists(self._keys.session(digest))
        alive = await self._call(pipe.execute()) if digests else []
        gone = [d for d, there in zip(digests, alive, strict=True) if not there]
        if gone:
            await self._call(self._redis.srem(mine, *gone))

    async def session(self, digest: str) -> StoredSession | None:
        raw = await self._call(self._redis.hgetall(self._keys.session(digest)))
        fields = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }
        try:
            return StoredSession(fields["user"], float(fields["created"]), float(fields["seen"]))
        except (KeyError, ValueError):
            return None

    async def touch_session(self, digest: str, now: float, ttl: float) -> None:
        await self._call(
            self._touch(keys=[self._keys.session(digest)], args=[repr(now), max(1, int(ttl))])
        )

    async def end_session(self, digest: str, user: str) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(self._keys.session(digest))
        pipe.srem(self._keys.user_sessions(user), digest)
        await self._call(pipe.execute())

    async def end_sessions_of(self, user: str) -> int:
        mine = self._keys.user_sessions(user)

        async def end_all(pipe: Any) -> int:
            digests = [d.decode() if isinstance(d, bytes) else d for d in await pipe.smembers(mine)]
            pipe.multi()
            for digest in digests:
                pipe.delete(self._keys.session(digest))
            pipe.delete(mine)
            # Run here for the count; the transaction's own execute then has nothing left.
            results = await pipe.execute()
            return sum(int(r) for r in results[:-1])

        # WATCHed: a session opened while we read the set is ended too, or we read again.
        return int(
            await self._call(self._redis.transaction(end_all, mine, value_from_callable=True))
        )


class DialerCommands:
    """The web's ``Commands``: what a supervisor asks, handed to the part that does it."""

    def __init__(
        self,
        *,
        config: Config,
        queue: CallbackQueue,
        dispatcher: Dispatcher,
        jobs_admin: _JobsAdminLink,
        outages: OutageService,
    ) -> None:
        self._config = config
        self._queue = queue
        self._dispatcher = dispatcher
        self._jobs_admin = jobs_admin
        self._outages = outages

    async def declare_outage(
        self,
        actor: str,
        *,
        categories: list[str],
        prefixes: list[str],
        areas: list[str],
        message: str,
        expected_end: float | None,
    ) -> tuple[bool, Outage]:
        return await self._outages.declare(
            actor=actor,
            categories=categories,
            prefixes=prefixes,
            areas=areas,
            message=message,
            expected_end=expected_end,
        )

    async def end_outage(
        self, outage_id: str, choice: OutageEnd, actor: str, *, per_hour: int | None
    ) -> tuple[str, Outage | None]:
        return await self._outages.end(outage_id, choice, actor=actor, per_hour=per_hour)

    async def call_now(self, callback_id: str, actor: str) -> ActionResult:
        return await self._queue.call_now(callback_id, actor)

    async def cancel(self, callback_id: str, reason: str, actor: str) -> ActionResult:
        # A call under way is hung up by the dispatcher, which hears of the cancel from the queue.
        return await self._queue.cancel(callback_id, reason, actor)

    async def set_category(self, callback_id: str, category: str, actor: str) -> ActionResult:
        return await self._queue.set_category(callback_id, category, actor)

    async def add_manual(
        self, number: str, category: str, actor: str, *, name: str, note: str
    ) -> EnqueueResult:
        return await self._queue.add_manual(number, category, actor, name=name, note=note)

    async def pause(self, actor: str, reason: str) -> None:
        await self._dispatcher.pause(actor, reason)

    async def resume(self, actor: str) -> None:
        await self._dispatcher.resume(actor)

    async def rerun_failed_job(self, job_id: str) -> bool:
        admin = self._jobs_admin.get()
        return await asyncio.to_thread(admin.rerun_failed, job_id)

    async def rerun_failed_jobs(self) -> int:
        return await asyncio.to_thread(self._jobs_admin.get().rerun_all_failed)

    async def rerun_parked_events(self) -> int:
        return await asyncio.to_thread(self._jobs_admin.get().rerun_parked)

    async def make_report(self, day: str) -> ReportFiles:
        return await asyncio.to_thread(generate_report, self._config, day)


# ---------------------------------------------------------------------- running


class Dialer:
    """The parts ``build_dialer`` made and connected, run together and stopped in order. The
    parts are here to be read (tests, the demo); their connections are ``build_dialer``'s."""

    def __init__(
        self,
        *,
        config: Config,
        clock: Clock,
        metrics: Metrics,
        redis: AsyncClient,
        queue: CallbackQueue,
        pipeline: Pipeline,
        ami: AmiClient,
        dispatcher: Dispatcher,
        leadership: Leadership,
        status: DialerStatus,
        commands: DialerCommands,
        jobs_admin: _JobsAdminLink,
        sessions: RedisSessions,
        web: WebServer | None,
        jobs_bridge: JobsBridge | None,
        outages: OutageService,
        queue_log: QueueLogWriter | None = None,
        records: CallRecords | None = None,
        fates: CallbackFates | None = None,
        sweeps: Callable[[], Coroutine[Any, Any, None]] | None = None,
        estimator: Estimator,
        agi: FastAgiServer | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self.redis = redis
        self.queue = queue
        self.pipeline = pipeline
        self.ami = ami
        self.dispatcher = dispatcher
        self.leadership = leadership
        self.status = status
        self.commands = commands
        self.sessions = sessions
        self.web = web
        self.jobs_bridge = jobs_bridge
        self.outages = outages
        self.queue_log = queue_log
        self.records = records
        self.fates = fates
        self._sweeps = sweeps
        self.estimator = estimator
        self.agi = agi
        self._jobs_admin = jobs_admin
        self._tasks = TaskSet("dialer", on_error=self._core_failed)
        self._stop = asyncio.Event()
        self.exit_code = 0

    async def health(self) -> tuple[bool, list[str]]:
        return await self.status.health()

    def _spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
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
        # The first exchange before anything runs: a lone dialer leads from its first pass;
        # with a leader elsewhere this one stands by (detecting, keeping the queue current).
        await self.leadership.tick()
        self._spawn("sink", self.pipeline.sink.run())
        self._spawn("ami", self.ami.run())
        self._spawn("leader", self.leadership.run())
        self._spawn("dispatcher", self.dispatcher.run())
        self._spawn("outages", self.outages.run())
        if self._sweeps is not None:
            self._spawn("record-sweeps", self._sweeps())
        self._spawn("estimator", self.estimator.run())
        if self.agi is not None:
            try:
                await self.agi.start()
            except OSError as exc:
                # The IVR's offer then takes its plain branch; everything else works.
                log.error(
                    "FastAGI server could not listen; the IVR offer falls back to the caller ID",
                    address=f"{self.config.ivr.agi_host}:{self.config.ivr.agi_port}",
                    error=str(exc),
                )
                self.agi = None
            else:
                self._spawn("agi", self.agi.run())
        if self.web is not None:
            self._spawn("web", self.web.run())
        if self.jobs_bridge is not None:
            self._spawn("jobs-bridge", self.jobs_bridge.run())
        if self.queue_log is not None:
            self._spawn("queue-log", self.queue_log.run())
        log.info(
            "dialer started",
            ami=f"{self.config.ami.host}:{self.config.ami.port}",
            dispatching="paused" if self.dispatcher.paused else "on",
            instance=self.leadership.instance,
            leader=self.leadership.leader or "none",
        )

    def request_stop(self) -> None:
        self._stop.set()

    async def wait(self) -> None:
        await self._stop.wait()

    async def stop(self) -> None:
        self._stop.set()
        log.info("stopping: no new callbacks; finishing those in progress")
        if self.agi is not None:
            # No new offers; an exchange in flight ends within its timeout.
            await self.agi.close()
        await self.dispatcher.stop(drain_timeout=DRAIN_SECONDS)
        # Outcomes stored (with our holding): now a standby may take over at once.
        await self.leadership.stop()
        await self.pipeline.sink.close(timeout=5)
        with contextlib.suppress(Exception):
            await self.outages.close()
        if self.web is not None:
            with contextlib.suppress(Exception):
                await self.web.close()
        if self.jobs_bridge is not None:
            with contextlib.suppress(Exception):
                await self.jobs_bridge.close()
        self._jobs_admin.close()
        if self.queue_log is not None:
            await self.queue_log.close()  # its task is cancelled below, mid-read or not
        await self.ami.close()
        await self._tasks.cancel_all()
        await close_async_client(self.redis)
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
    dialer = build_dialer(
        config,
        clock=clock,
        redis_url=redis_url,
        spool=spool,
        web=web and config.web.enabled,
        jobs=True,
    )
    install_signal_handlers(dialer)
    await dialer.start()
    try:
        await dialer.wait()
    finally:
        await dialer.stop()
    return dialer.exit_code
