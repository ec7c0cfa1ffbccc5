"""The numbers of one day for the status page and ``GET /api/stats``.

A day is a local date in the calling-hours time zone (``YYYY-MM-DD``). Two sources, both kept
by the queue's scripts as things happen:

- the day's counters (``StatusSource.day_stats``): every missed call by category, source and hour,
  our calls to customers and callbacks done by hour;
- the callbacks first missed that day (``StatusSource.day_callbacks``) and their fate, the same fate
  the daily report writes (``jobs.reports``), so the page and the report agree.

Definitions (the page's help text repeats them):

- time to callback: from the first missed call to our first call ringing the customer;
  median and 90th percentile (nearest rank) over the callbacks we called;
- within the target: called within ``[web] target`` of the first missed call, as a share of
  the callbacks that needed us: those we called, and those not called in time (still waiting
  past the target, or closed without our call after the target). Callbacks closed without our
  call before the target ran out (the caller got through, a supervisor cancelled) and ones
  still within the target are left out: they neither met nor missed it;
- success rate: callbacks done by our call out of those done by our call or failed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import statistics
from typing import TYPE_CHECKING, Any

from ..config import Config
from ..jobs.reports import check_day
from ..jobs.reports import fate as report_fate
from ..queue.models import Callback

if TYPE_CHECKING:
    from .ports import StatusSource

HOURS = 24
WEEK = 7


def previous_days(day: str, count: int) -> list[str]:
    start = dt.date.fromisoformat(day)
    return [(start - dt.timedelta(days=i)).isoformat() for i in range(1, count + 1)]


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least ``share`` of all at or
    below it (so p90 of ten values is the ninth)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _hourly(counters: dict[str, int], prefix: str) -> list[int]:
    return [counters.get(f"{prefix}:hour:{h}", 0) for h in range(HOURS)]


def _prefixed(counters: dict[str, int], prefix: str) -> dict[str, int]:
    return {k[len(prefix) :]: v for k, v in sorted(counters.items()) if k.startswith(prefix) and v}


def _wait(cb: Callback) -> float | None:
    if cb.first_dialed_at is None:
        return None
    return max(0.0, cb.first_dialed_at - cb.first_missed)


def _fates(callbacks: list[Callback], now: float, target: float) -> dict[str, Any]:
    fates = [report_fate(cb) for cb in callbacks]
    waits = [w for cb in callbacks if (w := _wait(cb)) is not None]
    within = sum(1 for w in waits if w <= target)
    missed_target = 0
    for cb in callbacks:
        if cb.first_dialed_at is not None:
            continue
        end = cb.closed_at if cb.closed_at is not None else now
        if end - cb.first_missed > target:
            missed_target += 1
    due = len(waits) + missed_target
    called_back = fates.count("called_back")
    failed = fates.count("failed")
    reasons: dict[str, int] = {}
    for cb, fate in zip(callbacks, fates, strict=True):
        if fate == "failed":
            reasons[cb.reason or "unknown"] = reasons.get(cb.reason or "unknown", 0) + 1
    median = statistics.median(waits) if waits else None
    return {
        "callbacks": len(callbacks),
        "called_back": called_back,
        "served_inbound": fates.count("served_inbound"),
        "served_outbound": fates.count("served_outbound"),
        "failed": failed,
        "failed_by_reason": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        "cancelled": fates.count("cancelled"),
        "open": fates.count("waiting") + fates.count("in_progress"),
        "success_rate": (called_back / (called_back + failed)) if called_back + failed else None,
        "time_to_callback": {
            "count": len(waits),
            "median_seconds": median,
            "p90_seconds": percentile(waits, 0.9),
        },
        "within_target": {
            "count": within,
            "of": due,
            "share": (within / due) if due else None,
        },
    }


async def day_summary(
    status: StatusSource, config: Config, day: str, now: float, *, week: bool = True
) -> dict[str, Any]:
    """Everything the page shows about ``day``; with ``week`` also the average of the seven
    days before it, hour by hour, for the "today against the last 7 days" chart."""
    check_day(day)
    counters, callbacks = await asyncio.gather(status.day_stats(day), status.day_callbacks(day))
    target = config.web.target
    missed_by_category = _prefixed(counters, "missed:cat:")
    names = list(config.category_names())
    names += sorted(({cb.category for cb in callbacks} | set(missed_by_category)) - set(names))
    categories = []
    for name in names:
        category = config.category(name)
        mine = [cb for cb in callbacks if cb.category == name]
        categories.append(
            {
                "category": name,
                "label": category.label if category and category.label else name,
                "label_ru": category.label_ru if category and category.label_ru else name,
                "missed": missed_by_category.get(name, 0),
                **_fates(mine, now, target),
            }
        )
    summary: dict[str, Any] = {
        "day": day,
        "today": status.day_key(now) == day,
        "target_seconds": target,
        "missed": {
            "total": counters.get("missed:total", 0),
            "by_category": missed_by_category,
            "by_source": _prefixed(counters, "missed:src:"),
        },
        # Calls the IVR served itself: not missed, no callback, counted by reason.
        "self_service": {
            "total": counters.get("selfservice:total", 0),
            "by_reason": _prefixed(counters, "selfservice:reason:"),
            "by_category": _prefixed(counters, "selfservice:cat:"),
        },
        **_fates(callbacks, now, target),
        "by_category": categories,
        "hourly": {
            "missed": _hourly(counters, "missed"),
            "dialed": _hourly(counters, "callbacks"),
            "called_back": _hourly(counters, "done"),
        },
    }
    if week:
        before = await asyncio.gather(*(status.day_stats(d) for d in previous_days(day, WEEK)))
        for key, prefix in (("week_missed", "missed"), ("week_called_back", "done")):
            rows = [_hourly(c, prefix) for c in before]
            summary["hourly"][key] = [
                round(sum(r[h] for r in rows) / WEEK, 2) for h in range(HOURS)
            ]
    return summary
