"""One simulated working day: the PBX simulator in one process, the real dialer in another,
on one scaled clock; the simulator's ledger says what really happened.

Each run is a pair of processes: the simulator (PBX, AMI socket, traffic, ledger) pinned to one
core, the dialer (AMI client, tracker, agent book, dispatcher, Redis queue) pinned to the other.
Several runs (priority, FIFO) may go side by side: each has its own clock, Redis key prefix and
AMI port, and the day they play is the same plan (same profile, seed and start).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import secrets
import tempfile
import time
import tomllib
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from .common import ALWAYS_OPEN, SharedClock, delete_prefix, pin, quiet_logging

ROOT = Path(__file__).resolve().parents[2]
SECRET = "bench"
# Simulated seconds between the clock starting and the first planned call: time for the dialer
# to connect and resynchronise before anything happens.
LEAD = 300.0


@dataclass(frozen=True)
class DaySpec:
    """The day to simulate: the same spec and seed give the same plan in every run."""

    profile: str = "config/traffic.toml"
    agents: int | None = None  # None: the profile's count
    traffic: float = 1.0  # calls.per_day multiplied by this
    seed: int = 1
    start: float = 0.0  # epoch of the first simulated instant (local 08:00 of a weekday)
    hours: float = 13.0
    speed: float = 200.0


@dataclass(frozen=True)
class Variant:
    name: str  # priority | fifo | a turns variant (e2e/turns.py)
    fifo: bool = False  # all category weights 0
    # [dispatch] keys over config/dialer.toml's: (("callback_handicap", "0s"),), or
    # (("enabled", False),) for detection only
    dispatch: tuple[tuple[str, Any], ...] = ()


@dataclass
class RunResult:
    variant: str
    sim: dict[str, Any] = field(default_factory=dict)
    dialer: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- simulator side


def build_profile(spec: DaySpec) -> Any:
    from simpbx import load_profile, with_agents

    profile = load_profile(ROOT / spec.profile)
    if spec.traffic != 1.0:
        calls = profile.calls.model_copy(update={"per_day": profile.calls.per_day * spec.traffic})
        profile = profile.model_copy(update={"calls": calls})
    if spec.agents is not None:
        profile = with_agents(profile, spec.agents)
    return profile


def ledger_data(sim: Any) -> dict[str, Any]:
    """Everything the analysis needs, as plain data (it crosses a process boundary)."""
    ledger, plan, pbx = sim.ledger, sim.plan, sim.pbx
    categories = {s.id: s.category for s in plan.subscribers}
    return {
        "plan": {
            "start": plan.start,
            "end": plan.end,
            "seed": plan.seed,
            "first_calls": len(plan.calls),
            "agents": [
                {
                    "extension": a.extension,
                    "queues": list(a.queues),
                    "shifts": [list(s) for s in a.shifts],
                    "breaks": [[b[0], b[1]] for b in a.breaks],
                }
                for a in plan.agents
            ],
        },
        "wrapup": float(sim.profile.agents.wrapup),
        "interfaces": {i: a.extension for i, a in pbx.agents.items()},
        "inbound": [asdict(r) for r in ledger.inbound()],
        "subscribers": [
            {
                "id": s.id,
                "number": s.number,
                "kind": s.kind,
                "intent": s.intent,
                "planned_category": categories.get(s.id, ""),
                "first_missed_at": s.first_missed_at,
                "served_at": s.served_at,
                "served_by": s.served_by,
            }
            for s in ledger.subscribers()
        ],
        "callbacks": [asdict(c) for c in ledger.callbacks()],
        "agent_legs": [asdict(a) for a in ledger.agent_legs()],
        "summary": ledger.summary(),
        "events": pbx.events_emitted,
        "scheduler_errors": pbx.scheduler.errors,
    }


def sim_process(conn: Any, spec: DaySpec, cpu: int | None) -> None:
    pin(cpu)
    quiet_logging("warning")
    from simpbx import Simulation

    async def main() -> None:
        profile = build_profile(spec)
        conn.send(("ready",))
        _, clock_spec = await asyncio.to_thread(conn.recv)
        clock = SharedClock(*clock_spec)
        sim = await Simulation.start(
            clock,
            profile=profile,
            start=spec.start,
            hours=spec.hours,
            seed=spec.seed,
            secret=SECRET,
        )
        conn.send(("port", sim.port))
        cpu0 = time.process_time()
        t0 = time.monotonic()
        await sim.run()
        data = ledger_data(sim)
        data["cpu_seconds"] = time.process_time() - cpu0
        data["wall_seconds"] = time.monotonic() - t0
        conn.send(("done", data))
        await asyncio.to_thread(conn.recv)  # the dialer has stopped: close the socket
        await sim.stop()

    asyncio.run(main())


# --------------------------------------------------------------------------- dialer side


def dialer_config(
    port: int,
    url: str,
    prefix: str,
    *,
    fifo: bool,
    agents: int,
    config_path: Path,
    overrides: dict[str, Any] | None = None,
) -> Any:
    """The configured dialer (config/dialer.toml) pointed at the simulator, open all day.

    ``max_concurrent`` and the trunk limit are raised to at least the number of agents so they
    never decide who waits (the comparison is about order, not capacity)."""
    from callback_dialer.config import parse_config

    data = tomllib.loads(config_path.read_text("utf-8"))
    data["ami"] = {
        **data.get("ami", {}),
        "port": port,
        "secret": SECRET,
        "host": "127.0.0.1",
        "ping_interval": 30,
        "ping_timeout": 30,
    }
    data["redis"] = {**data.get("redis", {}), "url": url, "key_prefix": prefix}
    data["hours"] = {**data.get("hours", {}), "weekly": ALWAYS_OPEN, "holidays": []}
    data["web"] = {**data.get("web", {}), "enabled": False}
    data["sms"] = {"enabled": False}
    data.pop("webhooks", None)
    dispatch = dict(data.get("dispatch", {}))
    dispatch["max_concurrent"] = max(int(dispatch.get("max_concurrent", 10)), agents)
    trunks = [dict(t) for t in dispatch.get("trunks", [{"name": "default", "numbers": ["*"]}])]
    for trunk in trunks:
        trunk["max_calls"] = max(int(trunk.get("max_calls", 10)), agents)
    dispatch["trunks"] = trunks
    dispatch.update(overrides or {})
    data["dispatch"] = dispatch
    if fifo:
        data["categories"] = [{**c, "weight": 0} for c in data.get("categories", [])]
    return parse_config(data, str(config_path))


class RecordingHistogram:
    """Stands in for the dispatcher's decision-latency histogram and keeps every sample
    (the histogram's buckets are too coarse for a p99)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.samples: list[float] = []

    def observe(self, value: float) -> None:
        self.samples.append(value)
        self.inner.observe(value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def connect_dialer(
    conn: Any,
    url: str,
    prefix: str,
    *,
    fifo: bool,
    agents: int,
    config_path: Path,
    overrides: dict[str, Any] | None = None,
) -> tuple[Any, SharedClock, RecordingHistogram, list[int]]:
    """The dialer process's side of the start: say ready, take the shared clock and the
    simulator's port, build the configured Dialer (not started) with every kicked decision's
    latency kept and every AMI event counted (``handled[0]``)."""
    from callback_dialer.app import build_dialer

    conn.send(("ready",))
    _, clock_spec = await asyncio.to_thread(conn.recv)
    clock = SharedClock(*clock_spec)
    _, port = await asyncio.to_thread(conn.recv)
    config = dialer_config(
        port,
        url,
        prefix,
        fifo=fifo,
        agents=agents,
        config_path=config_path,
        overrides=overrides,
    )
    dialer = build_dialer(
        config, clock=clock, redis_url=url, spool=Path(tempfile.mkdtemp()) / "spool.jsonl"
    )
    latency = RecordingHistogram(dialer.metrics.decision_latency)
    dialer.metrics.decision_latency = latency  # type: ignore[assignment]
    handled = [0]
    dialer.pipeline.router.tap(lambda m: handled.__setitem__(0, handled[0] + 1))
    return dialer, clock, latency, handled


def dialer_process(
    conn: Any, variant: Variant, agents: int, url: str, config_path: str, cpu: int | None
) -> None:
    pin(cpu)
    quiet_logging("info")
    import redis.asyncio as aioredis

    from callback_dialer.queue.keys import Keys

    async def main() -> None:
        prefix = f"bench-e2e-{variant.name}-" + secrets.token_hex(4)
        dialer, clock, latency, handled = await connect_dialer(
            conn,
            url,
            prefix,
            fifo=variant.fifo,
            agents=agents,
            config_path=Path(config_path),
            overrides=dict(variant.dispatch),
        )
        config = dialer.config
        cpu0 = time.process_time()
        await dialer.start()
        while not (dialer.ami.authenticated and dialer.dispatcher.synced):
            await asyncio.sleep(0.005)
        conn.send(("synced", clock.now()))
        await asyncio.to_thread(conn.recv)  # the simulated day is over
        counts = await dialer.queue.counts()
        stats = {
            "prefix": prefix,
            "weights": {c.name: c.weight for c in config.categories},
            "max_concurrent": config.dispatch.max_concurrent,
            "events_handled": handled[0],
            "handler_errors": dialer.pipeline.router.handler_errors,
            "outcomes": {k[0]: v for k, v in dialer.metrics.outcomes.values.items()},
            "not_queued": {k[0]: v for k, v in dialer.metrics.not_queued.values.items()},
            "missed_calls": {"/".join(k): v for k, v in dialer.metrics.missed_calls.values.items()},
            "queue_counts": counts,
            "decision_latency": latency.samples,
            "handicap": config.dispatch.callback_handicap,
            "enabled": config.dispatch.enabled,
            "left_to_live": sum(dialer.metrics.left_to_live.values.values()),
            "cpu_seconds": time.process_time() - cpu0,
        }
        await dialer.stop()
        client = aioredis.Redis.from_url(url)
        await delete_prefix(client, Keys(prefix).pattern())
        await client.aclose()
        conn.send(("done", stats))

    asyncio.run(main())


# --------------------------------------------------------------------------- orchestration


@dataclass(frozen=True)
class Job:
    label: str  # e.g. "busy/seed1/priority"
    spec: DaySpec
    variant: Variant


def run_days(
    jobs: list[Job],
    *,
    url: str,
    config_path: Path,
    dialer_cpu: int = 0,
    sim_cpu: int = 1,
    stagger: float = 7.0,
    log: Any = print,
    dialer_target: Any = None,
) -> dict[str, RunResult]:
    """Play every job's day, all side by side (each its own pair of processes, clock, Redis
    prefix and AMI port); returns each run's ledger data and the dialer's own figures.

    Runs of one plan do the same things at the same simulated instants (agents log in at 09:00,
    go on breaks together): started at once, their bursts would hit the shared cores at the same
    real moment and each dialer would be late by the others' work. ``stagger`` real seconds
    between the starts keeps those bursts apart. ``dialer_target``: another dialer process
    function with ``dialer_process``'s arguments (bench/outage_bench.py's declares outages)."""
    ctx = multiprocessing.get_context("spawn")
    runs = []
    for job in jobs:
        agents = build_profile(job.spec).agents.count
        sim_here, sim_there = ctx.Pipe()
        dial_here, dial_there = ctx.Pipe()
        sim = ctx.Process(target=sim_process, args=(sim_there, job.spec, sim_cpu), daemon=True)
        dialer = ctx.Process(
            target=dialer_target or dialer_process,
            args=(dial_there, job.variant, agents, url, str(config_path), dialer_cpu),
            daemon=True,
        )
        sim.start()
        dialer.start()
        runs.append((job, sim, dialer, sim_here, dial_here))
    for _, _, _, sim_pipe, dial_pipe in runs:
        assert sim_pipe.recv()[0] == "ready" and dial_pipe.recv()[0] == "ready"
    for i, (job, _, _, sim_pipe, dial_pipe) in enumerate(runs):
        if i:
            time.sleep(stagger)
        clock = SharedClock.new(job.spec.speed, job.spec.start - LEAD)
        sim_pipe.send(("clock", clock.spec()))
        dial_pipe.send(("clock", clock.spec()))
        _, port = sim_pipe.recv()
        dial_pipe.send(("port", port))
        _, synced_at = dial_pipe.recv()
        if synced_at >= job.spec.start:
            log(
                f"warning: {job.label}: the dialer synced {synced_at - job.spec.start:.0f} "
                "simulated seconds after the day began"
            )
    results = {job.label: RunResult(job.variant.name) for job, *_ in runs}
    pending = {sim_pipe: (job, dial_pipe) for job, _, _, sim_pipe, dial_pipe in runs}
    while pending:
        for pipe in wait(list(pending)):
            job, dial_pipe = pending.pop(pipe)
            _, data = pipe.recv()
            results[job.label].sim = data
            log(
                f"{job.label}: day over ({data['wall_seconds']:.0f} s wall, "
                f"{data['events']} PBX events, simulator CPU {data['cpu_seconds']:.1f} s)"
            )
            dial_pipe.send(("stop",))
    for job, sim, dialer, sim_pipe, dial_pipe in runs:
        _, stats = dial_pipe.recv()
        results[job.label].dialer = stats
        sim_pipe.send(("close",))
        sim.join(30)
        dialer.join(30)
    return results
