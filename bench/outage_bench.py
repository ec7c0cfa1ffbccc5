"""Outage mode benchmark (not a test): a day with an outage, played with and without it.

    .venv/bin/python bench/outage_bench.py               # three variants side by side (~6 min)
    .venv/bin/python bench/outage_bench.py --speed 100   # slower clock on a loaded machine

The day is config/traffic-outage.toml (the shipped traffic plus an outage in district
+7 495 123 from 11:00 for two hours, its subscribers calling support ten times as often),
08:00-16:00, ``--traffic`` times the shipped traffic and ``--agents`` agents, calling hours all
day; ``--seeds`` days pooled (sums, and the new subscribers' waits pooled). Each plan
(profile, seed, start) is played three times, each by the real dialer against the PBX
simulator on its own shared clock, all side by side:

- ``off``: no outage mode; every missed call is a callback, the district's too;
- ``drop``: outage mode declared (support, +7495123) at 11:00 through the dialer's own
  OutageService, ended at 13:00 choosing drop;
- ``release``: the same, ended choosing release at 60 per hour.

From the simulator's ledger: agent hours spent on callbacks (the agent's leg answered to hung
up), of which on the district's callers; and the new subscribers who missed a call during the
outage: minutes from their missed call to our call ringing them (median, p90), since they must
not wait behind the outage's support calls. Results: bench/results/outage.json; the table for
BENCHMARKS.md on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from e2e.common import DEFAULT_REDIS, delete_prefix, median, percentile, pin, quiet_logging
from e2e.day import DaySpec, Job, Variant, build_profile, connect_dialer, run_days

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
TZ = ZoneInfo("Europe/Moscow")
DAY_START = dt.datetime(2026, 3, 10, 8, 0, tzinfo=TZ).timestamp()  # a Tuesday, 08:00
PROFILE = "config/traffic-outage.toml"


@dataclass(frozen=True)
class OutageVariant(Variant):
    mode: str = "off"  # off | drop | release
    begin: float = 0.0
    end: float = 0.0
    prefix: str = "+7495123"
    per_hour: int = 60


def outage_dialer_process(
    conn: Any, variant: OutageVariant, agents: int, url: str, config_path: str, cpu: int | None
) -> None:
    """e2e/day.py's dialer process, plus the supervisor: outage mode on at ``begin`` and off
    at ``end`` (the variant's choice), through the dialer's own OutageService."""
    pin(cpu)
    quiet_logging("info")
    import redis.asyncio as aioredis

    from callback_dialer.queue.keys import Keys
    from callback_dialer.queue.models import OutageEnd

    async def supervisor(dialer: Any, clock: Any) -> dict[str, Any]:
        if variant.mode == "off":
            return {}
        await clock.sleep(max(0.0, variant.begin - clock.now()))
        _, outage = await dialer.outages.declare(
            actor="bench", categories=["support"], prefixes=[variant.prefix], message="outage"
        )
        await clock.sleep(max(0.0, variant.end - clock.now()))
        await dialer.outages.end(
            outage.id, OutageEnd(variant.mode), actor="bench", per_hour=variant.per_hour
        )
        while (current := await dialer.queue.outage(outage.id)).waiting:
            await asyncio.sleep(0.2)
        return current.to_public()

    async def main() -> None:
        prefix = f"bench-outage-{variant.name}-" + secrets.token_hex(4)
        dialer, clock, _, _ = await connect_dialer(
            conn, url, prefix, fifo=False, agents=agents, config_path=Path(config_path)
        )
        await dialer.start()
        while not (dialer.ami.authenticated and dialer.dispatcher.synced):
            await asyncio.sleep(0.005)
        task = asyncio.create_task(supervisor(dialer, clock))
        conn.send(("synced", clock.now()))
        await asyncio.to_thread(conn.recv)  # the simulated day is over
        outage = await task if task.done() else {}
        task.cancel()
        stats = {
            "prefix": prefix,
            "outage": outage,
            "outcomes": {k[0]: v for k, v in dialer.metrics.outcomes.values.items()},
            "queue_counts": await dialer.queue.counts(),
        }
        await dialer.stop()
        client = aioredis.Redis.from_url(url)
        await delete_prefix(client, Keys(prefix).pattern())
        await client.aclose()
        conn.send(("done", stats))

    asyncio.run(main())


def figures(data: dict[str, Any], variant: OutageVariant, district: str) -> dict[str, Any]:
    subscribers = {s["id"]: s for s in data["subscribers"]}
    of_callback = {c["callback_id"]: c["subscriber"] for c in data["callbacks"]}

    def in_district(sid: str) -> bool:
        return subscribers.get(sid, {}).get("number", "").startswith(district)

    hours = {"all": 0.0, "district": 0.0}
    for leg in data["agent_legs"]:
        if leg["answered_at"] is None:
            continue
        seconds = leg["ended_at"] - leg["answered_at"]
        hours["all"] += seconds / 3600
        if in_district(of_callback.get(leg["callback_id"], "")):
            hours["district"] += seconds / 3600
    rings: dict[str, list[float]] = {}
    for c in data["callbacks"]:
        rings.setdefault(c["subscriber"], []).append(c["rang_at"])
    waits, never = [], 0
    for s in data["subscribers"]:
        missed = s["first_missed_at"]
        if s["planned_category"] != "new_connection" or missed is None:
            continue
        if not variant.begin <= missed < variant.end:
            continue
        later = [t for t in rings.get(s["id"], []) if t >= missed]
        if later:
            waits.append(min(later) - missed)
        elif s["served_by"] != "inbound":
            never += 1
    district_missed = sum(
        1 for s in data["subscribers"] if s["first_missed_at"] is not None and in_district(s["id"])
    )
    district_rung = sum(1 for c in data["callbacks"] if in_district(c["subscriber"]))
    return {
        "waits": waits,
        "agent_hours_on_callbacks": round(hours["all"], 2),
        "agent_hours_on_district_callbacks": round(hours["district"], 2),
        "callbacks_rung": len(data["callbacks"]),
        "district_callers_missed": district_missed,
        "district_callbacks_rung": district_rung,
        "new_subscribers_missed_during_outage": len(waits) + never,
        "new_ttc_median_min": round(median(waits) / 60, 1) if waits else math.nan,
        "new_ttc_p90_min": round(percentile(waits, 0.9) / 60, 1) if waits else math.nan,
        "new_not_called_by_day_end": never,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speed", type=float, default=150.0)
    parser.add_argument("--seeds", default="1,2,3", help="days pooled, comma-separated")
    parser.add_argument("--traffic", type=float, default=3.0)
    parser.add_argument("--agents", type=int, default=6)
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--redis", default=DEFAULT_REDIS)
    args = parser.parse_args()
    from simpbx.traffic import outage_window

    seeds = [int(x) for x in args.seeds.split(",")]
    specs = {
        seed: DaySpec(
            profile=PROFILE,
            agents=args.agents,
            traffic=args.traffic,
            seed=seed,
            start=DAY_START,
            hours=args.hours,
            speed=args.speed,
        )
        for seed in seeds
    }
    profile = build_profile(specs[seeds[0]])
    begin, end = outage_window(profile, DAY_START)
    district = profile.outage.district
    modes = ("off", "drop", "release")
    jobs = [
        Job(
            f"seed{seed}/{mode}",
            spec,
            OutageVariant(name=mode, mode=mode, begin=begin, end=end),
        )
        for seed, spec in specs.items()
        for mode in modes
    ]
    t0 = time.monotonic()
    results = run_days(
        jobs,
        url=args.redis,
        config_path=ROOT / "config" / "dialer.toml",
        log=lambda m: print(m, file=sys.stderr, flush=True),
        dialer_target=outage_dialer_process,
    )
    out: dict[str, Any] = {
        "spec": {**vars(args), "profile": PROFILE, "outage": [begin, end], "district": district},
        "wall_seconds": round(time.monotonic() - t0),
        "variants": {},
    }
    for mode in modes:
        days = [j for j in jobs if j.variant.name == mode]
        each = [figures(results[j.label].sim, j.variant, district) for j in days]
        waits = [w for f in each for w in f.pop("waits")]
        pooled = {
            k: round(sum(f[k] for f in each), 2) for k in each[0] if not k.startswith("new_ttc")
        }
        pooled["new_subscribers_missed_during_outage"] = (
            len(waits) + pooled["new_not_called_by_day_end"]
        )
        pooled["new_ttc_median_min"] = round(median(waits) / 60, 1) if waits else math.nan
        pooled["new_ttc_p90_min"] = round(percentile(waits, 0.9) / 60, 1) if waits else math.nan
        out["variants"][mode] = {
            **pooled,
            "days": each,
            "outages": [results[j.label].dialer.get("outage", {}) for j in days],
        }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "outage.json").write_text(json.dumps(out, indent=2))
    rows = [
        ("agent hours on callbacks", "agent_hours_on_callbacks"),
        ("... of them on the district's callers", "agent_hours_on_district_callbacks"),
        ("callbacks rung", "callbacks_rung"),
        ("district callers who missed a call", "district_callers_missed"),
        ("district callbacks rung", "district_callbacks_rung"),
        ("new subscribers missed during the outage", "new_subscribers_missed_during_outage"),
        ("their time to callback, median (min)", "new_ttc_median_min"),
        ("their time to callback, p90 (min)", "new_ttc_p90_min"),
        ("not called back by the day's end", "new_not_called_by_day_end"),
    ]
    names = list(out["variants"])
    print("| | " + " | ".join(f"`{n}`" for n in names) + " |")
    print("| --- |" + " --- |" * len(names))
    for label, key in rows:
        print(f"| {label} | " + " | ".join(str(out["variants"][n][key]) for n in names) + " |")


if __name__ == "__main__":
    main()
