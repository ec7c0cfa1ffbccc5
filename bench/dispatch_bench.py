"""Dispatch benchmark (not a test): from the event that frees an agent to the Originate on the
wire, with 10,000 callbacks pending.

    .venv/bin/python bench/dispatch_bench.py --pending 10000 --rounds 500

An AMI server in a second process (the wire format of the captures) holds one agent busy, then
frees it (QueueMemberStatus Status 1) and times how long until our Originate arrives; it then
answers Reason 5 (agent busy, so the callback goes back unharmed) and marks the agent in use
again. The dialer process runs the real Dialer (AMI client, agent book, dispatcher, Redis queue)
pinned to one CPU core. Measured on the server side: both TCP hops included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis
from simpbx.amiserver import AmiServer, response

from callback_dialer.ami.frames import encode_message
from callback_dialer.app import Dialer, build_dialer
from callback_dialer.config import parse_config
from callback_dialer.logs import configure_logging
from callback_dialer.queue.keys import Keys
from callback_dialer.queue.models import Source

AGENT = "Local/101@agents/n"


def member(status: int, event: str = "QueueMemberStatus") -> list[tuple[str, str]]:
    return [
        ("Event", event),
        ("Privilege", "agent,all"),
        ("Queue", "sales"),
        ("MemberName", "Agent 101"),
        ("Interface", AGENT),
        ("StateInterface", AGENT),
        ("Membership", "static"),
        ("Penalty", "0"),
        ("CallsTaken", "0"),
        ("LastCall", "0"),
        ("LastPause", "0"),
        ("LoginTime", "0"),
        ("InCall", "0"),
        ("Status", str(status)),
        ("Paused", "0"),
        ("PausedReason", ""),
        ("Ringinuse", "0"),
        ("Wrapuptime", "0"),
    ]


def server_process(pipe, rounds: int, cpu: int) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})

    async def main() -> None:
        server = await AmiServer(secret="bench").start()
        originated = asyncio.Event()

        async def queue_status(session, message) -> None:
            item = [
                (k, v)
                for k, v in member(2, "QueueMember")
                if k not in ("Privilege", "Ringinuse", "MemberName", "Interface")
            ]
            item += [("Name", "Agent 101"), ("Location", AGENT)]
            session.write(server.list_response("queuestatus", message.get("ActionID"), [item]))

        async def originate(session, message) -> None:
            originated.set()
            action_id = message.get("ActionID")
            session.write(response(action_id, "Originate successfully queued"))
            session.write(encode_message(member(2)))
            session.write(
                encode_message(
                    [
                        ("Event", "OriginateResponse"),
                        ("Privilege", "call,all"),
                        ("ActionID", action_id),
                        ("Response", "Failure"),
                        ("Channel", message.get("Channel")),
                        ("Context", message.get("Context")),
                        ("Exten", message.get("Exten")),
                        ("Reason", "5"),
                        ("Uniqueid", "<unknown>"),
                        ("CallerIDNum", "<unknown>"),
                        ("CallerIDName", "<unknown>"),
                    ]
                )
            )

        server.on_action("QueueStatus", queue_status)
        server.on_action("Originate", originate)
        pipe.send(server.port)
        await asyncio.to_thread(pipe.recv)  # the dialer is connected and knows the agent
        samples = []
        for _ in range(rounds):
            await asyncio.sleep(0.02)
            originated.clear()
            start = time.perf_counter()
            await server.send_event(member(1))
            await originated.wait()
            samples.append(time.perf_counter() - start)
        pipe.send(samples)
        await server.stop()

    asyncio.run(main())


async def run(pending: int, rounds: int, url: str, cpu: int) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    process = ctx.Process(
        target=server_process, args=(there, rounds, (cpu + 1) % os.cpu_count()), daemon=True
    )
    process.start()
    port = here.recv()
    prefix = "bench-dispatch-" + secrets.token_hex(4)
    config = parse_config(
        {
            "ami": {"port": port, "secret": "bench", "ping_interval": 60, "ping_timeout": 60},
            "redis": {"url": url, "key_prefix": prefix},
            "hours": {
                "weekly": {
                    d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
                }
            },
            "dispatch": {"wrapup_seconds": 0, "tick_seconds": 60},
            "web": {"enabled": False},
        }
    )
    devnull = open(os.devnull, "w")  # noqa: SIM115 - kept open for the whole run
    configure_logging(
        config.logging.model_copy(update={"format": "json"}),
        stream=sys.stderr if os.environ.get("BENCH_DEBUG") else devnull,
    )
    seed = aioredis.Redis.from_url(url)
    dialer = build_dialer(config, redis_url=url, spool=Path(tempfile.mkdtemp()) / "spool.jsonl")
    now = time.time()
    for i in range(pending):
        await dialer.queue.add_missed(
            number=f"+7916{i:07d}",
            category="new_connection",
            source=Source.ABANDON,
            missed_at=now - i,
            call_id=f"bench-{i}",
        )
    await dialer.start()
    while not (dialer.ami.authenticated and dialer.pipeline.agents.agents):
        await asyncio.sleep(0.01)
    here.send("go")
    samples = await asyncio.to_thread(here.recv)
    await dialer.stop()
    keys = [k async for k in seed.scan_iter(match=Keys(prefix).pattern(), count=5000)]
    for i in range(0, len(keys), 5000):
        await seed.delete(*keys[i : i + 5000])
    await seed.aclose()
    samples.sort()
    return {
        "pending": pending,
        "rounds": len(samples),
        "p50_ms": round(statistics.median(samples) * 1000, 2),
        "p99_ms": round(samples[max(0, int(len(samples) * 0.99) - 1)] * 1000, 2),
        "max_ms": round(samples[-1] * 1000, 2),
        "dialer_side_p50_ms": round(_histogram_p50(dialer) * 1000, 2),
    }


def _histogram_p50(dialer: Dialer) -> float:
    h = dialer.metrics.decision_latency
    half, running = h.n / 2, 0
    for bound, count in zip(h.buckets, h.counts, strict=True):
        running += count
        if running >= half:
            return bound
    return float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--cpu", type=int, default=0, help="CPU core for the dialer")
    parser.add_argument(
        "--redis",
        default=os.environ.get("CALLBACK_DIALER_BENCH_REDIS", "redis://127.0.0.1:6379/14"),
    )
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    print(json.dumps(asyncio.run(run(args.pending, args.rounds, args.redis, args.cpu))))


if __name__ == "__main__":
    main()
