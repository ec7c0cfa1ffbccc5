"""Callbacks and live callers (issue 12): the variants, and what each did to both.

Variants, side by side on the same seeded days: ``off`` (dispatching paused: detection only),
``old`` (a negative handicap: callbacks never wait for live callers), ``0s`` (a strict turn by
first call), handicaps between, ``live-first`` (``10d``), and two with the guard
``max_callback_share = 0.5``.

Per variant, from the simulator's ledger (what really happened):

- live-queue abandon rate: external calls that joined a queue and never reached an agent
  (hung up, pressed ``*``, timed out), over all external calls that joined a queue;
- live hold p50/p90: from joining the queue to an agent answering, for those answered;
- lost for good: external subscribers with a callable missed call (analysis.population) who
  by the day's end were neither reached by a callback nor served on a later call;
- new subscribers' time to callback (median, p90) and two bounds: the old one
  (analysis.Availability: the first instant an agent of theirs was free) and a live-respecting
  one: the first instant such an agent was free *and* no live caller waiting in that agent's
  queues scored lower than the callback (``joined_at - weight`` against ``first_missed -
  weight + handicap``, the variant's handicap, 0 when negative);
- agent hours a day on callback calls.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from typing import Any

from .analysis import Availability, population, serving_queues
from .common import median, percentile
from .day import Variant

INF = math.inf
DAY = 86400.0

# name, [dispatch] overrides; the order of the table and the plot
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("off", {"enabled": False}),
    ("old", {"callback_handicap": "-1s"}),
    ("0s", {"callback_handicap": "0s"}),
    ("1m", {"callback_handicap": "1m"}),
    ("5m", {"callback_handicap": "5m"}),
    ("15m", {"callback_handicap": "15m"}),
    ("live-first", {"callback_handicap": "10d"}),
    # the guards: at most half of a queue's agents on callbacks at once
    ("5m-share0.5", {"callback_handicap": "5m", "max_callback_share": 0.5}),
    ("live-first-share0.5", {"callback_handicap": "10d", "max_callback_share": 0.5}),
]


def variants() -> list[Variant]:
    return [Variant(name, dispatch=tuple(over.items())) for name, over in VARIANTS]


def handicap_of(name: str) -> float:
    """The score's handicap of a variant, for the live-respecting bound (0 when negative or
    off: the strict turn)."""
    from callback_dialer.config import parse_signed_duration

    over = dict(VARIANTS)[name]
    value = parse_signed_duration(over.get("callback_handicap", "0s"))
    return max(0.0, value)


def _live_intervals(
    data: dict[str, Any], weights: dict[str, float]
) -> dict[str, list[tuple[float, float, float]]]:
    """Per queue: (joined, left, score) of every external caller who waited there."""
    out: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for call in data["inbound"]:
        if call["internal"] or call.get("queued_at") is None:
            continue
        left = call["connected_at"] if call["connected_at"] is not None else call["ended_at"]
        left = left if left is not None else INF
        score = call["queued_at"] - weights.get(call["category"], 0.0)
        for queue in call["queues"]:
            out[queue].append((call["queued_at"], left, score))
    for intervals in out.values():
        intervals.sort()
    return out


class LiveBound:
    """The first instant at or after a miss when an agent serving the category is free and
    no live caller scoring lower waits in that agent's queues."""

    def __init__(self, data: dict[str, Any], weights: dict[str, float], handicap: float) -> None:
        self.avail = Availability(data)
        self.weights = weights
        self.handicap = handicap
        self.live = _live_intervals(data, weights)
        self._starts = {q: [i[0] for i in v] for q, v in self.live.items()}
        self._longest = max(
            (i[1] - i[0] for v in self.live.values() for i in v if i[1] < INF), default=0.0
        )

    def _ahead(self, queues: frozenset[str], t: float, score: float) -> bool:
        for queue in queues:
            intervals = self.live.get(queue, [])
            hi = bisect.bisect_right(self._starts.get(queue, []), t)
            lo = bisect.bisect_left(self._starts.get(queue, []), t - self._longest - 1)
            for joined, left, live_score in intervals[lo:hi]:
                if joined <= t < left and live_score < score:
                    return True
        return False

    def first(self, missed_at: float, category: str, queues: set[str]) -> float:
        score = missed_at - self.weights.get(category, 0.0) + self.handicap
        agents = [(ext, aq, blocks) for ext, aq, blocks in self.avail.agents if aq & queues]
        candidates = {missed_at}
        for _, agent_queues, blocks in agents:
            candidates.update(end for _, end in blocks if missed_at <= end < INF)
            for queue in agent_queues:
                candidates.update(
                    left for _, left, _ in self.live.get(queue, []) if missed_at <= left < INF
                )
        for t in sorted(candidates):
            for ext, agent_queues, _ in agents:
                if _free(self.avail, ext, t) and not self._ahead(agent_queues, t, score):
                    return t - missed_at
        return INF


def _free(avail: Availability, ext: str, t: float) -> bool:
    for e, _, blocks in avail.agents:
        if e != ext:
            continue
        starts = avail._starts[ext]
        i = bisect.bisect_right(starts, t) - 1
        return not (i >= 0 and blocks[i][1] > t)
    return False


def turn_figures(
    data: dict[str, Any],
    dialer: dict[str, Any],
    *,
    variant: str,
    min_call_seconds: float,
    dispatch_queues: dict[str, list[str]],
    weights: dict[str, float],
) -> dict[str, Any]:
    """One simulated day of one variant."""
    queued = [c for c in data["inbound"] if not c["internal"] and c.get("queued_at") is not None]
    answered = [c for c in queued if c["connected_at"] is not None]
    holds = [c["connected_at"] - c["queued_at"] for c in answered]
    rows = population(data, min_call_seconds, dispatch_queues)
    served_at = {s["id"]: s["served_at"] for s in data["subscribers"]}
    lost = [r for r in rows if served_at.get(r["subscriber"]) is None]
    queues = serving_queues(dispatch_queues)
    bound = LiveBound(data, weights, handicap_of(variant))
    new = []
    for r in rows:
        if r["category"] != "new_connection" or r["status"] == "served_by_redial":
            continue
        live = bound.first(r["missed_at"], r["category"], queues[r["category"]])
        new.append({"wait": r["wait"], "bound": r["lower_bound"], "live_bound": live})
    agent_seconds = 0.0
    for leg in data["agent_legs"]:
        if leg["answered_at"] is not None:
            agent_seconds += leg["ended_at"] - leg["answered_at"]
    return {
        "queued": len(queued),
        "abandoned": len(queued) - len(answered),
        "holds": holds,
        "missed": len(rows),
        "lost": len(lost),
        "new": new,
        "agent_seconds": agent_seconds,
        "callback_legs": len(data["callbacks"]),
        "left_to_live": dialer.get("left_to_live", 0),
        "duplicates": sum(1 for c in data["callbacks"] if c["need"] == "served"),
        "errors": (data["scheduler_errors"] or 0) + (dialer.get("handler_errors") or 0),
        # how late the dialer decided (a loaded machine makes it lose races it would win)
        "decision_latency": list(dialer.get("decision_latency", [])),
    }


def pool(runs: list[dict[str, Any]]) -> dict[str, Any]:
    days = len(runs)
    queued = sum(r["queued"] for r in runs)
    holds = [h for r in runs for h in r["holds"]]
    new = [n for r in runs for n in r["new"]]
    return {
        "days": days,
        "abandon_rate": sum(r["abandoned"] for r in runs) / queued if queued else math.nan,
        "hold_p50": median(holds),
        "hold_p90": percentile(holds, 0.9),
        "missed_per_day": sum(r["missed"] for r in runs) / days,
        "lost_per_day": sum(r["lost"] for r in runs) / days,
        "new_n": len(new),
        "new_median": median([n["wait"] for n in new]),
        "new_p90": percentile([n["wait"] for n in new], 0.9),
        "bound_median": median([n["bound"] for n in new]),
        "bound_p90": percentile([n["bound"] for n in new], 0.9),
        "live_bound_median": median([n["live_bound"] for n in new]),
        "live_bound_p90": percentile([n["live_bound"] for n in new], 0.9),
        "agent_hours_per_day": sum(r["agent_seconds"] for r in runs) / 3600 / days,
        "callback_legs_per_day": sum(r["callback_legs"] for r in runs) / days,
        "left_to_live_per_day": sum(r["left_to_live"] for r in runs) / days,
        "callbacks_to_served": sum(r["duplicates"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "decision_ms_p50": 1000 * median([x for r in runs for x in r["decision_latency"]]),
        "decision_ms_p99": 1000
        * percentile([x for r in runs for x in r["decision_latency"]], 0.99),
    }


def choose(pooled: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """The issue's rule: the fewest lost for good with a live abandon rate no worse than
    callbacks-off + 0.5 point (on the busy days). Returns the variant and why."""
    off = pooled["off"]["abandon_rate"]
    allowed = [
        name
        for name, p in pooled.items()
        if name != "off" and p["abandon_rate"] <= off + 0.005 + 1e-12
    ]
    if not allowed:
        # Every order costs the live queue the agent time the callbacks take: the rule cannot
        # be met; take the lowest live abandon rate, then the fewest lost.
        rest = [n for n in pooled if n != "off"]
        best = min(rest, key=lambda n: (pooled[n]["abandon_rate"], pooled[n]["lost_per_day"]))
        return best, (
            f"no variant kept the live abandon rate within 0.5 point of callbacks off "
            f"({off:.1%}); {best} has the lowest ({pooled[best]['abandon_rate']:.1%}), with "
            f"{pooled[best]['lost_per_day']:.1f} lost for good a day against "
            f"{pooled['off']['lost_per_day']:.1f} with callbacks off"
        )
    best = min(allowed, key=lambda n: (pooled[n]["lost_per_day"], pooled[n]["abandon_rate"]))
    return best, (
        f"fewest lost for good ({pooled[best]['lost_per_day']:.1f}/day) among the variants "
        f"whose live abandon rate is within 0.5 point of callbacks off ({off:.1%}): "
        + ", ".join(allowed)
    )
