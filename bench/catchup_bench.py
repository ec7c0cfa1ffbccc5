"""Catching up on a night without the dialer: 10,000 AstDB call records, and live detection
going on meanwhile.

    .venv/bin/python bench/catchup_bench.py --records 10000 --live 60

Against the real redis-server of the tests (db 13, a fresh key prefix per run) and the
simulated PBX on loopback (``PbxAmi``: AstDB and its DBGetTree/DBDel replies as Asterisk 20
and 22 send them, tests/fixtures/catchup/). AstDB holds ``--records`` call records as the
shipped dialplan writes them, the mix of a night: 70 % abandoned in a queue (distinct numbers),
10 % a second call of one of those (merged), 10 % served by an agent, 10 % too short. A dialer
built by ``build_dialer`` starts, connects, resynchronises and catches up: N is the
catch-up itself (DBGetTree of every record over TCP, parsing, the tracker's rules, the facts
into Redis, one DBDel per record), and "to dispatching" from ``start()`` to the dispatcher's
resync being done.

Meanwhile ``--live`` callers ring the simulated IVR, one every 0.1 s from the moment the dialer
is logged in, and abandon the queue (min_call_seconds 1 for the bench), so their hangups fall
inside the catch-up: for each, from the PBX writing its ``Hangup`` to its callback being
stored in Redis (``created``, as the queue tells its listeners), compared with the same
callers and no records to catch up on. Variants side by side: the shipped 32 Redis writes and
AMI deletions in flight, and one at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import redis  # noqa: E402
from simpbx.ami import PbxAmi  # noqa: E402
from simpbx.model import AgentSpec, CallerScript, PbxSpec, QueueSpec  # noqa: E402
from simpbx.pbx import SimPbx  # noqa: E402

from callback_dialer.ami.asterisk import encode_record  # noqa: E402
from callback_dialer.app import build_dialer  # noqa: E402
from callback_dialer.clock import ScaledClock  # noqa: E402
from callback_dialer.config import parse_config  # noqa: E402
from callback_dialer.detect import records as records_module  # noqa: E402
from callback_dialer.logs import configure_logging  # noqa: E402
from callback_dialer.queue.keys import Keys  # noqa: E402

ALWAYS = {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
FAMILY = "callback-dialer"
REDIS = "redis://127.0.0.1:6379/13"


def fill(pbx: SimPbx, count: int, now: float) -> None:
    """A night of records: ended between 8 and 2 hours ago."""
    start = now - 8 * 3600
    step = 6 * 3600 / max(count, 1)
    for i in range(count):
        end = start + i * step
        kind = i % 10
        fields = {"cat": "new_connection", "queue": "sales", "start": f"{end - 40:.3f}"}
        number = f"+7916{i:07d}"
        if kind == 7:  # calls again: the number of an earlier abandon
            number = f"+7916{max(0, i - 5):07d}"
        if kind == 8:
            fields.update(answered="30000", agent="Local/101@agents/n", queue="support")
        elif kind == 9:
            fields["start"] = f"{end - 1:.3f}"  # too short
        else:
            fields.update(answered="0", abandoned="TRUE")
        pbx.astdb.put(
            FAMILY,
            f"calls/{int(start)}.{i}",
            encode_record({"v": "1", "num": number, "end": f"{end:.3f}", **fields}),
        )


async def run(records: int, live: int, parallel: int) -> dict:
    records_module._PARALLEL = parallel
    clock = ScaledClock(1.0)
    pbx = SimPbx(
        clock,
        PbxSpec(
            queues=(QueueSpec("sales"), QueueSpec("support")),
            agents=(AgentSpec("101", ("sales",)),),
            records_family=FAMILY,
        ),
    )
    pbx.scheduler.run(pbx.pause, "101", True, "meeting")
    fill(pbx, records, clock.now())
    ami = await PbxAmi.serve(pbx, secret="bench")
    prefix = f"bench-catchup-{time.time_ns()}"
    config = parse_config(
        {
            "ami": {"port": ami.port, "secret": "bench", "reconnect_min_delay": 0.05},
            "redis": {"url": REDIS, "key_prefix": prefix},
            "hours": {"weekly": ALWAYS},
            "dispatch": {"enabled": False},
            "detection": {"min_call_seconds": 1},
            "ivr": {"agi_enabled": False},
            "logging": {"level": "warning", "format": "json"},
        },
        "bench",
    )
    hangups: dict[str, float] = {}  # live caller's number -> when the PBX wrote its Hangup
    numbers = [f"+7903{n:07d}" for n in range(live)]
    uid_number: dict[str, str] = {}

    def on_frame(data: bytes) -> None:
        if data.startswith(b"Event: Hangup\r\n"):
            for line in data.split(b"\r\n"):
                if line.startswith(b"Uniqueid: "):
                    number = uid_number.get(line[10:].decode())
                    if number is not None:
                        hangups.setdefault(number, time.perf_counter())

    pbx.listeners.append(on_frame)
    with tempfile.TemporaryDirectory() as tmp:
        dialer = build_dialer(config, clock=clock, spool=Path(tmp) / "spool.jsonl")
        stored: dict[str, float] = {}

        def changed(change) -> None:
            if change.event == "created":
                stored[change.id] = time.perf_counter()

        dialer.queue.on_change(changed)
        window: dict[str, float] = {}

        def tap(session: int, message) -> None:
            if message.get("Action") == "DBGetTree":
                window.setdefault("from", time.perf_counter())

        ami.server.action_taps.append(tap)
        started = time.perf_counter()
        await dialer.start()
        while not dialer.ami.authenticated:
            await asyncio.sleep(0.001)

        async def callers() -> None:
            for number in numbers:
                call = pbx.place_call(
                    number, CallerScript(choice="1", choice_after=0.2, patience=0.9)
                )
                await asyncio.sleep(0)
                uid_number[call.call_id] = number
                await asyncio.sleep(0.1)

        placing = asyncio.create_task(callers())
        while not dialer.dispatcher.synced:
            await asyncio.sleep(0.001)
        to_dispatching = time.perf_counter() - started
        while dialer.records is None or dialer.records.last is None:
            await asyncio.sleep(0.001)
        window["to"] = time.perf_counter()
        caught = dialer.records.last
        await placing
        deadline = time.monotonic() + 60
        while len([n for n in numbers if n in hangups]) < live and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        ids = {}
        for callback_id in stored:
            cb = await dialer.queue.get(callback_id)
            if cb is not None:
                ids[cb.number] = callback_id
        latencies = sorted(
            (stored[ids[n]] - hangups[n]) * 1000 for n in numbers if n in hangups and n in ids
        )
        during = sum(
            1
            for n in numbers
            if n in hangups and window.get("from", 0) <= hangups[n] <= window.get("to", 0)
        )
        during_latencies = sorted(
            (stored[ids[n]] - hangups[n]) * 1000
            for n in numbers
            if n in hangups
            and n in ids
            and window.get("from", 0) <= hangups[n] <= window.get("to", 0)
        )
        await dialer.stop()
    await ami.stop()
    await pbx.close()
    client = redis.Redis.from_url(REDIS)
    stale = list(client.scan_iter(match=Keys(prefix).pattern(), count=5000))
    for i in range(0, len(stale), 1000):
        client.delete(*stale[i : i + 1000])
    client.close()
    left = len(pbx.astdb.tree(FAMILY, "calls"))
    return {
        "records": records,
        "parallel": parallel,
        "catch_up_s": caught.seconds,
        "to_dispatching_s": to_dispatching,
        "applied": caught.applied,
        "left_in_astdb": left,  # the live callers' records: compared at the next sweep
        "live": live,
        "live_stored": len(latencies),
        "live_during_catch_up": during,
        "during_max_ms": during_latencies[-1] if during_latencies else float("nan"),
        "p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "p95_ms": latencies[int(len(latencies) * 0.95) - 1] if latencies else float("nan"),
        "max_ms": latencies[-1] if latencies else float("nan"),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--live", type=int, default=60)
    args = parser.parse_args()
    configure_logging(parse_config({"logging": {"level": "warning"}}, "bench").logging)
    rows = []
    for records, parallel in ((0, 32), (args.records, 32), (args.records, 1)):
        rows.append(await run(records, args.live, parallel))
        r = rows[-1]
        print(
            f"records {r['records']:>6}  in flight {r['parallel']:>2}  "
            f"catch-up {r['catch_up_s']:7.2f} s  to dispatching {r['to_dispatching_s']:7.2f} s  "
            f"applied {r['applied']:>6}  left {r['left_in_astdb']}  "
            f"live {r['live_stored']}/{r['live']}, {r['live_during_catch_up']} hung up during "
            f"the catch-up (max {r['during_max_ms']:.1f} ms)  Hangup->Redis p50 "
            f"{r['p50_ms']:.1f} ms  p95 {r['p95_ms']:.1f} ms  max {r['max_ms']:.1f} ms",
            flush=True,
        )


if __name__ == "__main__":
    asyncio.run(main())
