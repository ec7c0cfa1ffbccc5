"""What every part of the end-to-end benchmark shares: the clock across processes, CPU pinning,
quiet logging, Redis clean-up, percentiles."""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from collections.abc import Iterable

from callback_dialer.clock import ScaledClock
from callback_dialer.config import LoggingConfig
from callback_dialer.logs import configure_logging

DEFAULT_REDIS = os.environ.get("CALLBACK_DIALER_BENCH_REDIS", "redis://127.0.0.1:6379/14")
ALWAYS_OPEN = {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


class SharedClock(ScaledClock):
    """A ScaledClock that reads the same time in every process of one run.

    The simulator and the dialer must share one clock, but they run in separate processes
    (the PBX must not take the dialer's CPU). CLOCK_MONOTONIC is system-wide on Linux, so two
    ScaledClocks built from the same (speed, start, origin) agree to the microsecond."""

    def __init__(self, speed: float, start: float, origin: float) -> None:
        super().__init__(speed, start)
        self._origin = origin

    def spec(self) -> tuple[float, float, float]:
        return (self.speed, self._start, self._origin)

    @classmethod
    def new(cls, speed: float, start: float) -> SharedClock:
        return cls(speed, start, time.monotonic())


def pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu % (os.cpu_count() or 1)})


def quiet_logging(level: str = "info") -> None:
    """Log as in production (JSON at info) but to /dev/null: its cost is part of the path,
    its volume is not wanted. BENCH_DEBUG=1 shows it on stderr."""
    stream = sys.stderr if os.environ.get("BENCH_DEBUG") else open(os.devnull, "w")  # noqa: SIM115
    configure_logging(LoggingConfig(level=level, format="json"), stream=stream)


async def delete_prefix(client, pattern: str) -> int:
    keys = [k async for k in client.scan_iter(match=pattern, count=5000)]
    for i in range(0, len(keys), 5000):
        await client.delete(*keys[i : i + 5000])
    return len(keys)


def median(values: Iterable[float]) -> float:
    data = sorted(values)
    return statistics.median(data) if data else math.nan


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest rank: the smallest value with at least ``q`` of the data at or below it."""
    data = sorted(values)
    if not data:
        return math.nan
    return data[max(0, math.ceil(q * len(data)) - 1)]


def _proc_status_bytes(field: str, pid: int | str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


def rss_bytes(pid: int | str = "self") -> int:
    return _proc_status_bytes("VmRSS:", pid)


def peak_rss_bytes(pid: int | str = "self") -> int:
    return _proc_status_bytes("VmHWM:", pid)
