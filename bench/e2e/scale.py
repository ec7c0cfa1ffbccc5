"""The scale run: a thousand agents, a hundred thousand callbacks waiting, 500 AMI events/s.

Three processes. The orchestrator (this module's ``run_scale``) seeds the waiting callbacks
straight into Redis and reads Redis' memory; the generator (pinned to one core) runs the PBX
simulator with the agents and places inbound calls at whatever rate keeps the AMI stream at the
target number of events per second; the dialer (pinned to the other core) is the real Dialer,
measured from inside: CPU time, resident memory, events handled, every dispatch decision's
latency. The clock is real time (speed 1): the ten minutes are ten wall-clock minutes.

Diagnostics: BENCH_PROFILE=path writes a cProfile of the dialer over the measured window.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import multiprocessing
import os
import random
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from .common import SharedClock, delete_prefix, peak_rss_bytes, pin, quiet_logging, rss_bytes
from .day import ROOT, SECRET, connect_dialer

# Shares of the seeded callbacks (the default profile's mix of categories).
SEED_MIX = {"new_connection": 0.24, "support": 0.52, "billing": 0.14, "other": 0.10}


@dataclass(frozen=True)
class ScaleSpec:
    agents: int = 1000
    waiting: int = 100_000
    rate: float = 500.0  # AMI events per second to sustain
    warmup: float = 60.0  # real seconds before the measured window
    duration: float = 600.0  # the measured window, real seconds
    start: float = 0.0  # epoch the shared clock starts at (10:00 local on a weekday)
    seed: int = 7
    profile: str = "config/traffic.toml"


# --------------------------------------------------------------------------- generator


class RateController:
    """Inbound calls per second that keep the PBX's event stream at ``target`` events/s.

    The stream is the callbacks the dialer makes plus the inbound calls placed here; only the
    second can be steered. Integral control on the last ``window`` seconds of events, with the
    rate bounded: calls take minutes to play out, so a fast controller would oscillate."""

    def __init__(self, target: float, *, gain: float = 0.0004, window: float = 20.0) -> None:
        self.target = target
        self.gain = gain  # calls/s added per second for each event/s missing
        self.window = window
        self.rate = target / 30  # a call makes some 30 events, most of them in its first minute
        self.samples: deque[tuple[float, int]] = deque()

    def update(self, now: float, events: int, dt: float) -> float:
        self.samples.append((now, events))
        while self.samples and self.samples[0][0] < now - self.window:
            self.samples.popleft()
        if len(self.samples) >= 2:
            (t0, e0), (t1, e1) = self.samples[0], self.samples[-1]
            if t1 > t0:
                measured = (e1 - e0) / (t1 - t0)
                self.rate = min(
                    max(self.rate + self.gain * (self.target - measured) * dt, 0.05), 50.0
                )
        return self.rate


def generator_process(conn: Any, spec: ScaleSpec, cpu: int | None) -> None:
    pin(cpu)
    quiet_logging("warning")
    from simpbx import Simulation, load_profile, with_agents
    from simpbx.traffic import caller_script

    async def main() -> None:
        profile = with_agents(load_profile(ROOT / spec.profile), spec.agents)
        # No planned calls: the controller below places them.
        profile = profile.model_copy(
            update={"calls": profile.calls.model_copy(update={"per_day": 0.0})}
        )
        conn.send(("ready",))
        _, clock_spec = await asyncio.to_thread(conn.recv)
        clock = SharedClock(*clock_spec)
        sim = await Simulation.start(
            clock, profile=profile, start=clock.now(), hours=2.0, seed=spec.seed, secret=SECRET
        )
        conn.send(("port", sim.port))
        await asyncio.to_thread(conn.recv)  # "go": the dialer is synchronised
        pbx = sim.pbx
        rng = random.Random(spec.seed)
        intents = profile.intent_shares()
        controller = RateController(spec.rate)
        series: list[tuple[float, int, int]] = []  # (monotonic, events, calls placed)
        placed = 0
        stop = asyncio.Event()
        asyncio.get_running_loop().add_reader(conn.fileno(), stop.set)
        cpu0, t0 = time.process_time(), time.monotonic()
        next_call = t0
        last = t0
        while not stop.is_set():
            now = time.monotonic()
            if now - last >= 1.0:
                controller.update(now, pbx.events_emitted, now - last)
                series.append((now, pbx.events_emitted, placed))
                last = now
            while next_call <= now:
                category = profile.intent_categories[_pick(rng, intents)]
                number = "+7903" + f"{rng.randrange(10**7):07d}"
                pbx.place_call(number, caller_script(rng, profile, category))
                placed += 1
                next_call += rng.expovariate(controller.rate)
            await asyncio.sleep(min(0.02, max(0.0, next_call - time.monotonic())))
        asyncio.get_running_loop().remove_reader(conn.fileno())
        conn.recv()  # "stop"
        conn.send(
            (
                "done",
                {
                    "series": series,
                    "placed": placed,
                    "cpu_seconds": time.process_time() - cpu0,
                    "wall_seconds": time.monotonic() - t0,
                    "scheduler_errors": pbx.scheduler.errors,
                    "live_calls": len(pbx.calls),
                    "originates": len(pbx.originates),
                },
            )
        )
        await asyncio.to_thread(conn.recv)  # "close": the dialer has stopped
        await sim.stop()

    asyncio.run(main())


def _pick(rng: random.Random, shares: dict[str, float]) -> str:
    roll = rng.random()
    for key, share in shares.items():
        if roll < share:
            return key
        roll -= share
    return next(reversed(shares))


# --------------------------------------------------------------------------- dialer


def watch_reaction(dialer: Any, clock: Any) -> list[float]:
    """Every Originate's delay after its agent became free, by the dialer's own agent book.

    The dispatcher's histogram starts its clock at a *kick* (an event that frees an agent);
    an agent coming out of wrap-up is noticed by a timer, with no kick, and is not measured
    there, yet it is most decisions once every agent is busy. Here the start is the latest of:
    the event that made the agent free (seen through the book's change hook), the end of its
    wrap-up (last call end + wrap-up), the end of its cool-down. The end is the Originate being
    handed to the AMI client."""
    book = dialer.pipeline.agents
    freed_at: dict[str, float] = {}
    samples: list[float] = []
    changed = book._changed

    def on_changed(agent: Any, was_free: bool, now: float) -> None:
        if not was_free and book._free_somewhere(agent, now):
            freed_at[agent.interface] = now
        changed(agent, was_free, now)

    book._changed = on_changed
    by_channel: dict[str, str] = {}
    originate = dialer.ami.originate

    async def timed_originate(fields: dict[str, Any], **kw: Any) -> str:
        now = clock.now()
        channel = str(fields.get("Channel", ""))
        interface = by_channel.get(channel)
        if interface is None:
            interface = next((i for i in book.agents if i.removesuffix("/n") == channel), "")
            by_channel[channel] = interface
        agent = book.agents.get(interface)
        if agent is not None:
            starts = [
                freed_at.get(interface, -1.0),
                agent.cooldown_until,
                agent.last_call_end + agent.wrapup(book.wrapup_seconds),
            ]
            samples.append(now - max(t for t in starts if t <= now))
        return await originate(fields, **kw)

    dialer.ami.originate = timed_originate
    return samples


def watch_stalls() -> tuple[list[float], list[tuple[int, float]]]:
    """Where a slow decision's time goes when it is not in our code: how late a 10 ms timer
    fires (the event loop busy with something else), and every garbage collection's pause."""
    stalls: list[float] = []
    pauses: list[tuple[int, float]] = []
    started: list[float] = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append((info["generation"], time.perf_counter() - started[0]))

    gc.callbacks.append(on_gc)

    async def ticker() -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            stalls.append(time.perf_counter() - before - 0.01)

    stalls_task = asyncio.get_running_loop().create_task(ticker())
    stalls_task.add_done_callback(lambda _: gc.callbacks.remove(on_gc))
    _keep.append(stalls_task)
    return stalls, pauses


_keep: list[Any] = []  # the ticker task lives as long as the process


def dialer_process(conn: Any, agents: int, url: str, prefix: str, cpu: int | None) -> None:
    pin(cpu)
    quiet_logging("info")
    # Loaded before the baseline, so that "RSS before" is the program without a Dialer.
    import callback_dialer.app  # noqa: F401

    async def main() -> None:
        rss_before = rss_bytes()
        dialer, clock, latency, handled = await connect_dialer(
            conn,
            url,
            prefix,
            fifo=False,
            agents=agents,
            config_path=ROOT / "config" / "dialer.toml",
        )
        reaction = watch_reaction(dialer, clock)
        await dialer.start()
        t_start = time.monotonic()
        while not (
            dialer.ami.authenticated
            and dialer.dispatcher.synced
            and len(dialer.pipeline.agents.agents) >= agents
        ):
            await asyncio.sleep(0.01)
        conn.send(("synced", time.monotonic() - t_start, len(dialer.pipeline.agents.agents)))
        stalls, gc_pauses = watch_stalls()
        samples: list[dict[str, float]] = []
        marks: dict[str, Any] = {}
        # BENCH_PROFILE=path: cProfile the dialer over the measured window (where its time goes).
        profiler = cProfile.Profile() if os.environ.get("BENCH_PROFILE") else None
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        loop.add_reader(conn.fileno(), lambda: inbox.put_nowait(conn.recv()))
        while True:
            try:
                message = await asyncio.wait_for(inbox.get(), timeout=1.0)
            except TimeoutError:
                message = None
            times = os.times()
            samples.append(
                {
                    "t": time.monotonic(),
                    "cpu": times.user + times.system,
                    "rss": rss_bytes(),
                    "handled": handled[0],
                    "inflight": len(dialer.dispatcher.inflight),
                    "decisions": len(latency.samples),
                }
            )
            if message is None:
                continue
            if message[0] == "mark":
                marks["start"] = samples[-1]
                latency.samples.clear()
                reaction.clear()
                stalls.clear()
                gc_pauses.clear()
                if profiler is not None:
                    profiler.enable()
            elif message[0] == "stop":
                marks["end"] = samples[-1]
                if profiler is not None:
                    profiler.disable()
                    profiler.dump_stats(os.environ["BENCH_PROFILE"])
                break
        loop.remove_reader(conn.fileno())
        counts = await dialer.queue.counts()
        start, end = marks["start"], marks["end"]
        window = end["t"] - start["t"]
        stats = {
            "window_seconds": window,
            "cpu_seconds": end["cpu"] - start["cpu"],
            "cpu_share": (end["cpu"] - start["cpu"]) / window,
            "events_handled": end["handled"] - start["handled"],
            "events_per_s": (end["handled"] - start["handled"]) / window,
            "rss_before_dialer": rss_before,
            "rss_window_max": max(s["rss"] for s in samples if s["t"] >= start["t"]),
            "rss_end": end["rss"],
            "rss_peak": peak_rss_bytes(),
            "decision_latency": list(reaction),
            "kicked_decision_latency": list(latency.samples),
            "inflight_mean": sum(s["inflight"] for s in samples if s["t"] >= start["t"])
            / max(1, sum(1 for s in samples if s["t"] >= start["t"])),
            "loop_stalls": list(stalls),
            "gc_pauses": list(gc_pauses),
            "outcomes": {k[0]: v for k, v in dialer.metrics.outcomes.values.items()},
            "missed_calls": sum(dialer.metrics.missed_calls.values.values()),
            "handler_errors": dialer.pipeline.router.handler_errors,
            "queue_counts": counts,
            "samples": samples,
        }
        await dialer.stop()
        conn.send(("done", stats))

    asyncio.run(main())


# --------------------------------------------------------------------------- orchestration


async def seed_waiting(
    url: str, prefix: str, count: int, clock: Any, seed: int, concurrency: int = 32
) -> float:
    """``count`` open callbacks straight into the queue, missed over the last 20 hours (the
    retry policy expires them after 24), numbers +7916xxxxxxx, the default mix of categories."""
    import redis.asyncio as aioredis

    from callback_dialer.config import parse_config
    from callback_dialer.queue.models import Source
    from callback_dialer.queue.store import CallbackQueue

    from .common import ALWAYS_OPEN

    config = parse_config(
        {"redis": {"url": url, "key_prefix": prefix}, "hours": {"weekly": ALWAYS_OPEN}}
    )
    client = aioredis.Redis.from_url(url, max_connections=concurrency + 2)
    queue = CallbackQueue(client, config, clock)
    rng = random.Random(seed)
    categories = list(SEED_MIX)
    weights = list(SEED_MIX.values())
    now = clock.now()
    t0 = time.perf_counter()

    async def add(i: int) -> None:
        await queue.add_missed(
            number=f"+7916{i:07d}",
            category=rng.choices(categories, weights)[0],
            source=Source.ABANDON,
            missed_at=now - rng.uniform(600, 20 * 3600),
            call_id=f"seed-{i}",
        )

    for base in range(0, count, concurrency):
        await asyncio.gather(*(add(i) for i in range(base, min(count, base + concurrency))))
    await client.aclose()
    return time.perf_counter() - t0


async def redis_memory(url: str) -> int:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    info = await client.info("memory")
    await client.aclose()
    return int(info["used_memory"])


def run_scale(
    spec: ScaleSpec, *, url: str, dialer_cpu: int = 0, gen_cpu: int = 1, log: Any = print
) -> dict[str, Any]:
    from callback_dialer.queue.keys import Keys

    ctx = multiprocessing.get_context("spawn")
    prefix = f"bench-e2e-scale{spec.agents}-" + secrets.token_hex(4)
    gen_here, gen_there = ctx.Pipe()
    dial_here, dial_there = ctx.Pipe()
    gen = ctx.Process(target=generator_process, args=(gen_there, spec, gen_cpu), daemon=True)
    dialer = ctx.Process(
        target=dialer_process, args=(dial_there, spec.agents, url, prefix, dialer_cpu), daemon=True
    )
    gen.start()
    dialer.start()
    assert gen_here.recv()[0] == "ready" and dial_here.recv()[0] == "ready"
    clock = SharedClock.new(1.0, spec.start)
    memory: dict[str, int] = {"before_seeding": asyncio.run(redis_memory(url))}
    seconds = asyncio.run(seed_waiting(url, prefix, spec.waiting, clock, spec.seed))
    memory["after_seeding"] = asyncio.run(redis_memory(url))
    log(f"scale {spec.agents} agents: seeded {spec.waiting} callbacks in {seconds:.0f} s")
    gen_here.send(("clock", clock.spec()))
    dial_here.send(("clock", clock.spec()))
    _, port = gen_here.recv()
    dial_here.send(("port", port))
    _, sync_seconds, agents_seen = dial_here.recv()
    gen_here.send(("go",))
    time.sleep(spec.warmup)
    dial_here.send(("mark",))
    window = [time.monotonic()]
    log(f"scale {spec.agents} agents: warm-up over, measuring {spec.duration:.0f} s")
    time.sleep(spec.duration)
    dial_here.send(("stop",))
    window.append(time.monotonic())
    gen_here.send(("stop",))
    _, gen_stats = gen_here.recv()
    _, dial_stats = dial_here.recv()
    memory["end"] = asyncio.run(redis_memory(url))
    gen_here.send(("close",))
    gen.join(30)
    dialer.join(30)

    async def clean() -> int:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(url)
        n = await delete_prefix(client, Keys(prefix).pattern())
        await client.aclose()
        return n

    deleted = asyncio.run(clean())
    memory["after_cleanup"] = asyncio.run(redis_memory(url))
    return {
        "spec": spec.__dict__,
        "window": window,
        "seed_seconds": seconds,
        "sync_seconds": sync_seconds,
        "agents_seen": agents_seen,
        "redis_memory": memory,
        "keys_deleted": deleted,
        "generator": gen_stats,
        "dialer": dial_stats,
    }
