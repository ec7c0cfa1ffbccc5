"""Detection benchmark (not a test): events per second through the live parsing and tracking path.

    .venv/bin/python bench/replay_bench.py --repeat 40

A feeder process plays the recorded busy_hour capture (1,400 frames, repeated ``--repeat`` times
with fresh call ids) over a local TCP socket as fast as the socket takes it; the dialer side is
the real AmiClient -> decoder -> router -> tracker and agent book -> sink -> Redis, pinned to
one CPU core. Reported: events/s over a flood of the whole stream; then, with the same stream
paced at ``--rate`` events/s (the scale run's 500/s by default), for each missed call the time
from its last event (the Hangup) being read to its callback being in Redis (p50, p99).
Logging is on at info level, JSON, written to /dev/null: its cost is part of the path.

Uses the Redis at $CALLBACK_DIALER_BENCH_REDIS (default redis://127.0.0.1:6379/14) under a random
prefix, deleted afterwards. min_call_seconds is 0 here: played at full speed, every recorded call
lasts a few microseconds, and the point is to push every missed call through to Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import secrets
import socket
import statistics
import sys
import time
from pathlib import Path

import redis.asyncio as aioredis

from callback_dialer.ami.client import AmiClient
from callback_dialer.clock import RealClock
from callback_dialer.config import parse_config
from callback_dialer.detect.facts import MissedCall
from callback_dialer.detect.pipeline import build_pipeline
from callback_dialer.logs import configure_logging
from callback_dialer.queue.keys import Keys
from callback_dialer.queue.store import CallbackQueue

ROOT = Path(__file__).resolve().parents[1]
CAPTURE = (
    Path(os.environ.get("CALLBACK_DIALER_CAPTURES", ROOT.parent / "shared" / "ami-captures"))
    / "busy_hour.jsonl"
)
_ID = re.compile(
    r"(Uniqueid|Linkedid|DestUniqueid|DestLinkedid|LocalOneUniqueid|"
    r"LocalOneLinkedid|LocalTwoUniqueid|LocalTwoLinkedid): (\d+\.\d+)"
)


def build_frames(repeat: int, first: int = 0) -> list[bytes]:
    frames = [json.loads(line) for line in CAPTURE.read_text("utf-8").splitlines()]
    events = [
        f["raw"]
        for f in frames
        if f["dir"] == "in" and f["raw"].startswith("Event:") and "ActionID:" not in f["raw"]
    ]
    out = []
    for n in range(first, first + repeat):
        # Each round is a new set of calls: call ids must differ, numbers may repeat (merge).
        out.extend(
            _ID.sub(lambda m, n=n: f"{m.group(1)}: {m.group(2)}{n:04d}", raw).encode()
            for raw in events
        )
    return out


def feeder(port_queue: multiprocessing.Queue, repeat: int, paced: int, rate: float) -> None:
    flood = build_frames(repeat)
    count = len(flood)
    data = b"".join(flood)
    slow = build_frames(paced, first=repeat)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port_queue.put((listener.getsockname()[1], count))
    conn, _ = listener.accept()
    conn.sendall(b"Asterisk Call Manager/11.0.0\r\n")
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        buffer += conn.recv(4096)
    action_id = re.search(rb"ActionID: (\S+)", buffer).group(1)
    conn.sendall(
        b"Response: Success\r\nActionID: "
        + action_id
        + b"\r\nMessage: Authentication accepted\r\n\r\n"
    )
    conn.sendall(
        b"Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 1\r\nLastReload: 1"
        b"\r\nStatus: Fully Booted\r\n\r\n"
    )
    port_queue.get()  # the dialer is ready
    conn.sendall(data)
    conn.sendall(b"Event: BenchEnd\r\n\r\n")
    port_queue.get()  # the flood is processed: now the paced stream
    start = time.perf_counter()
    for i, frame in enumerate(slow):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        conn.sendall(frame)
    conn.sendall(b"Event: BenchEnd\r\n\r\n")
    time.sleep(30)
    conn.close()


async def run(repeat: int, paced: int, rate: float, url: str) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    channel: multiprocessing.Queue = ctx.Queue()
    process = ctx.Process(target=feeder, args=(channel, repeat, paced, rate), daemon=True)
    process.start()
    port, count = channel.get(timeout=60)
    prefix = "bench-replay-" + secrets.token_hex(4)
    config = parse_config(
        {
            "ami": {"port": port, "ping_interval": 60, "ping_timeout": 60},
            "redis": {"url": url, "key_prefix": prefix},
            "detection": {"min_call_seconds": 0},
            "hours": {
                "weekly": {
                    d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
                }
            },
        }
    )
    devnull = open(os.devnull, "w")  # noqa: SIM115 - kept open for the whole run
    configure_logging(config.logging.model_copy(update={"format": "json"}), stream=devnull)
    client = aioredis.Redis.from_url(url)
    clock = RealClock()
    queue = CallbackQueue(client, config, clock)
    latencies: list[float] = []

    async def applied(fact, result) -> None:
        if isinstance(fact, MissedCall) and measuring[0]:
            latencies.append(time.time() - fact.ended_at)

    pipeline = build_pipeline(config, clock, queue, on_applied=applied)
    done = asyncio.Event()
    handled = [0]
    pipeline.router.tap(lambda m: handled.__setitem__(0, handled[0] + 1))
    pipeline.router.on("BenchEnd", lambda m: done.set())
    measuring = [False]
    ami = AmiClient(config.ami, pipeline.router, clock)
    sink = asyncio.create_task(pipeline.sink.run())
    link = asyncio.create_task(ami.run())
    while not ami.authenticated:
        await asyncio.sleep(0.01)
    start = time.perf_counter()
    channel.put("go")
    await done.wait()
    elapsed = time.perf_counter() - start
    await pipeline.sink.drain(120)
    done.clear()
    measuring[0] = True
    channel.put("paced")
    await done.wait()
    await pipeline.sink.drain(120)
    await ami.close()
    for task in (sink, link):
        task.cancel()
    process.terminate()
    keys = [k async for k in client.scan_iter(match=Keys(prefix).pattern(), count=5000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()
    latencies.sort()
    return {
        "events": count,
        "seconds": round(elapsed, 3),
        "events_per_s": round(count / elapsed),
        "paced_rate": rate,
        "paced_missed_calls": len(latencies),
        "to_redis_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "to_redis_p99_ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000, 2),
        "handled": handled[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=40, help="busy_hour rounds flooded")
    parser.add_argument("--paced", type=int, default=10, help="busy_hour rounds paced")
    parser.add_argument("--rate", type=float, default=500.0, help="paced events per second")
    parser.add_argument(
        "--redis",
        default=os.environ.get("CALLBACK_DIALER_BENCH_REDIS", "redis://127.0.0.1:6379/14"),
    )
    parser.add_argument("--cpu", type=int, default=0, help="CPU core for the dialer side")
    args = parser.parse_args()
    if not CAPTURE.exists():
        sys.exit(f"capture not found: {CAPTURE} (set CALLBACK_DIALER_CAPTURES)")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    print(json.dumps(asyncio.run(run(args.repeat, args.paced, args.rate, args.redis))))


if __name__ == "__main__":
    main()
