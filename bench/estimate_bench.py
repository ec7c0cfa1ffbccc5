"""Estimate accuracy benchmark (not a test): how far the promised callback time is from the
real one, by load, in the PBX simulator with the real dialer.

    .venv/bin/python bench/estimate_bench.py                   # three loads side by side
    .venv/bin/python bench/estimate_bench.py --speed 100        # slower clock on a loaded machine

The day is config/traffic.toml, 08:00-16:00 of a Tuesday, with ``--agents`` agents and the
shipped traffic times 1, 2 and 3 (the three loads, same seed, played side by side, each by the
real dialer against the simulator on its own clock). Each time a callback is created the
dialer's own ``Estimator`` (the one the IVR and the SMS use) gives its estimate: seconds until
it is dialled, and the promise (rounded up to 5 minutes). When the day is over, the actual
time is the callback's ``first_dialed_at`` minus that moment. Beside it, in the same run, the
estimate the dialer had before (5 minutes per callback ahead and itself, divided by the agents
serving, no live callers, no handle times): ``old``.

Per load: callbacks estimated, of them dialled by the end; |estimate - actual| median and p90
(minutes), the median signed error (estimate - actual: positive errs late, as a promise
should), and the share of callbacks dialled within their promise. Callbacks not dialled by
the end of the day are left out of the errors and counted. Each load also has a row for the
callbacks estimated while at least one agent served their category (before the first shift
and between shifts nobody does, and the estimate is the flat "about an hour"). Results:
bench/results/estimate.json; the table for BENCHMARKS.md on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from e2e.common import DEFAULT_REDIS, delete_prefix, median, percentile, pin, quiet_logging
from e2e.day import DaySpec, Job, Variant, connect_dialer, run_days

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
TZ = ZoneInfo("Europe/Moscow")
DAY_START = dt.datetime(2026, 3, 10, 8, 0, tzinfo=TZ).timestamp()  # a Tuesday, 08:00
OLD_PER_CALLBACK = 300.0


@dataclass(frozen=True)
class LoadVariant(Variant):
    traffic: float = 1.0


def estimate_dialer_process(
    conn: Any, variant: LoadVariant, agents: int, url: str, config_path: str, cpu: int | None
) -> None:
    """e2e/day.py's dialer process, noting the Estimator's answer for every new callback."""
    pin(cpu)
    quiet_logging("warning")
    import redis.asyncio as aioredis

    from callback_dialer.queue.keys import Keys

    async def main() -> None:
        prefix = f"bench-estimate-{variant.name}-" + secrets.token_hex(4)
        dialer, clock, _, _ = await connect_dialer(
            conn, url, prefix, fifo=False, agents=agents, config_path=Path(config_path)
        )
        samples: dict[str, dict[str, float]] = {}
        tasks: set[asyncio.Task[None]] = set()

        async def note(callback_id: str, at: float) -> None:
            cb = await dialer.queue.get(callback_id)
            if cb is None:
                return
            est = dialer.estimator.for_callback(cb)
            old = (est.ahead + 1) * OLD_PER_CALLBACK / est.agents if est.agents else 3600.0
            samples[callback_id] = {
                "at": at,
                "seconds": est.seconds,
                "minutes": est.minutes,
                "old_seconds": old,
                "ahead": est.ahead,
                "live": est.live,
                "agents": est.agents,
                "free": est.free,
                "handle": est.handle_seconds,
            }

        def changed(change: Any) -> None:
            if change.event == "created":
                task = asyncio.ensure_future(note(change.id, clock.now()))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

        dialer.queue.on_change(changed)
        await dialer.start()
        while not (dialer.ami.authenticated and dialer.dispatcher.synced):
            await asyncio.sleep(0.005)
        conn.send(("synced", clock.now()))
        await asyncio.to_thread(conn.recv)  # the simulated day is over
        for callback_id, sample in samples.items():
            cb = await dialer.queue.get(callback_id)
            sample["first_dialed_at"] = (cb.first_dialed_at or 0.0) if cb else 0.0
        await dialer.stop()
        client = aioredis.Redis.from_url(url)
        await delete_prefix(client, Keys(prefix).pattern())
        await client.aclose()
        conn.send(("done", {"prefix": prefix, "samples": samples}))

    asyncio.run(main())


def figures(samples: dict[str, dict[str, float]]) -> dict[str, Any]:
    out = _figures(samples)
    # The callbacks estimated while some agent served their category: the model at work
    # (with nobody on duty the estimate is the flat "about an hour").
    staffed = {k: s for k, s in samples.items() if s["agents"] > 0}
    out["staffed"] = _figures(staffed) if staffed else {}
    return out


def _figures(samples: dict[str, dict[str, float]]) -> dict[str, Any]:
    dialled = [s for s in samples.values() if s["first_dialed_at"]]
    actual = [s["first_dialed_at"] - s["at"] for s in dialled]

    def errors(key: str) -> dict[str, float]:
        abs_err = [abs(s[key] - a) / 60 for s, a in zip(dialled, actual, strict=True)]
        signed = [(s[key] - a) / 60 for s, a in zip(dialled, actual, strict=True)]
        return {
            "abs_median_min": round(median(abs_err), 1) if abs_err else float("nan"),
            "abs_p90_min": round(percentile(abs_err, 0.9), 1) if abs_err else float("nan"),
            "signed_median_min": round(median(signed), 1) if signed else float("nan"),
        }

    promised = [s["minutes"] * 60 for s in dialled]
    within = sum(1 for p, a in zip(promised, actual, strict=True) if a <= p)
    old_within = sum(1 for s, a in zip(dialled, actual, strict=True) if a <= s["old_seconds"])
    return {
        "callbacks": len(samples),
        "dialled": len(dialled),
        "actual_median_min": round(median(actual) / 60, 1) if actual else float("nan"),
        "actual_p90_min": round(percentile(actual, 0.9) / 60, 1) if actual else float("nan"),
        "estimate": errors("seconds"),
        "promise": {
            **errors("minutes_seconds"),
            "within_promise": round(within / len(dialled), 2) if dialled else float("nan"),
        },
        "old": {
            **errors("old_seconds"),
            "within": round(old_within / len(dialled), 2) if dialled else float("nan"),
        },
        "mean_live_at_estimate": round(
            sum(s["live"] for s in samples.values()) / max(1, len(samples)), 2
        ),
        "mean_ahead_at_estimate": round(
            sum(s["ahead"] for s in samples.values()) / max(1, len(samples)), 2
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speed", type=float, default=150.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--agents", type=int, default=6)
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--loads", default="1,2,3")
    parser.add_argument("--redis", default=DEFAULT_REDIS)
    args = parser.parse_args()
    jobs = []
    for load in (float(x) for x in args.loads.split(",")):
        spec = DaySpec(
            agents=args.agents,
            traffic=load,
            seed=args.seed,
            start=DAY_START,
            hours=args.hours,
            speed=args.speed,
        )
        name = f"x{load:g}"
        jobs.append(Job(f"estimate/{name}", spec, LoadVariant(name=name, traffic=load)))
    t0 = time.monotonic()
    results = run_days(
        jobs,
        url=args.redis,
        config_path=ROOT / "config" / "dialer.toml",
        log=lambda m: print(m, file=sys.stderr, flush=True),
        dialer_target=estimate_dialer_process,
    )
    out: dict[str, Any] = {
        "spec": vars(args),
        "wall_seconds": round(time.monotonic() - t0),
        "loads": {},
    }
    for job in jobs:
        samples = results[job.label].dialer["samples"]
        for s in samples.values():
            s["minutes_seconds"] = s["minutes"] * 60
        out["loads"][job.variant.name] = {
            "figures": figures(samples),
            "summary": results[job.label].sim.get("summary", {}),
        }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "estimate.json").write_text(json.dumps(out, indent=2))
    print(
        "| load | callbacks (dialled) | actual median / p90 | estimate abs median / p90 | "
        "signed median | promise abs median / p90 | within promise | old abs median / p90 |"
        " old within |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = []
    for name, data in out["loads"].items():
        rows.append((name, data["figures"]))
        if data["figures"].get("staffed"):
            rows.append((f"{name}, agents on duty", data["figures"]["staffed"]))
    for name, f in rows:
        e, p, o = f["estimate"], f["promise"], f["old"]
        print(
            f"| {name} | {f['callbacks']} ({f['dialled']}) | "
            f"{f['actual_median_min']} / {f['actual_p90_min']} min | "
            f"{e['abs_median_min']} / {e['abs_p90_min']} min | {e['signed_median_min']:+} min | "
            f"{p['abs_median_min']} / {p['abs_p90_min']} min | {p['within_promise']:.0%} | "
            f"{o['abs_median_min']} / {o['abs_p90_min']} min | {o['within']:.0%} |"
        )
    print(f"wall {out['wall_seconds']} s", file=sys.stderr)


if __name__ == "__main__":
    main()
