"""From a simulated day's ledger to the benchmark's figures.

Who counts. For every external subscriber (a number the dialer may call: not an office phone,
not withheld), their first *callable* missed call: a call that ended without reaching an agent
and lasted at least ``detection.min_call_seconds`` (shorter ones are misdials the dialer
deliberately ignores). Its end is the miss instant ``m``; its category is the one the IVR set
(a caller who hung up in the IVR is ``other``, the dialer's fallback).

- ``ring``: the first callback leg to that subscriber that started at or after ``m`` (their
  phone rang, whatever the outcome). Time to callback = ``ring - m``.
- A subscriber who got through to an agent by calling again before any callback rang needs no
  callback: counted as "served by redialling" and left out of the times.
- A subscriber neither called back nor served by the end of the simulated day counts with an
  infinite time (it raises the median and p90; it is never "within 15 minutes").

The lower bound (``lower_bound``), for the same subscribers: the first instant ``t >= m`` at
which an agent whose queues serve the category (``dispatch.queues``) was free. An agent is free
when logged in (the plan's shift), not paused (the plan's breaks), not on a call and not in the
PBX's wrap-up after one. The calls that block an agent are the day's as they happened: each
inbound call the ledger shows them connected to, and each callback call they answered, from
its answer to its end plus the profile's ``wrapup``. So this bound is of the variant's own day
(priority and FIFO each get theirs). Every caller is credited the first free instant on their
own: the bound ignores that two callers waiting at once cannot both have it, so it is what each
missed caller could get if they were the only one waiting. Ringing before a queue call is
answered is counted as free (the ledger has no ring start), which only lowers the bound.

``contention_free_bound`` counts agents on callback calls as free too: what a caller could get
if the agents did no callback work at all. It ignores the competition between callbacks
entirely and is far lower on a day with many callbacks.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from typing import Any

from callback_dialer.dispatch.origination import extension_of

from .common import median, percentile

INF = math.inf
CATEGORIES = ("new_connection", "support", "billing", "other")
WITHIN = 900.0  # "called back within 15 minutes"


def _merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


class Availability:
    """When each simulated agent was unavailable, and the first free instant after a time.

    ``callbacks``: whether the agents' callback calls occupy them (the bound of the day as it
    went) or not (the contention-free bound)."""

    def __init__(self, data: dict[str, Any], *, callbacks: bool = True) -> None:
        wrapup = data["wrapup"]
        by_ext: dict[str, list[tuple[float, float]]] = defaultdict(list)
        interfaces = data["interfaces"]
        for call in data["inbound"]:
            if call["connected_at"] is None or not call["agent"]:
                continue
            ext = interfaces.get(call["agent"], "")
            end = call["ended_at"] if call["ended_at"] is not None else INF
            by_ext[ext].append((call["connected_at"], end + wrapup))
        if callbacks:
            for leg in data["agent_legs"]:
                if leg["answered_at"] is not None:
                    by_ext[extension_of(leg["channel"])].append(
                        (leg["answered_at"], leg["ended_at"] + wrapup)
                    )
        self.agents: list[tuple[str, frozenset[str], list[tuple[float, float]]]] = []
        for agent in data["plan"]["agents"]:
            blocked = list(by_ext.get(agent["extension"], []))
            blocked += [(b[0], b[1]) for b in agent["breaks"]]
            previous = -INF
            for login, logout in sorted(tuple(s) for s in agent["shifts"]):
                blocked.append((previous, login))
                previous = logout
            blocked.append((previous, INF))
            self.agents.append((agent["extension"], frozenset(agent["queues"]), _merge(blocked)))
        self._starts = {ext: [b[0] for b in blocks] for ext, _, blocks in self.agents}

    def first_free(self, at: float, queues: set[str]) -> float:
        best = INF
        for ext, agent_queues, blocks in self.agents:
            if not agent_queues & queues:
                continue
            i = bisect.bisect_right(self._starts[ext], at) - 1
            t = blocks[i][1] if i >= 0 and blocks[i][1] > at else at
            best = min(best, t)
        return best


def serving_queues(dispatch_queues: dict[str, list[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for queue, categories in dispatch_queues.items():
        for category in categories:
            out[category].add(queue)
    return out


def by_subscriber(
    data: dict[str, Any],
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]:
    """The ledger's inbound calls and callback legs, by subscriber."""
    calls: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for call in data["inbound"]:
        calls[call["subscriber"]].append(call)
    legs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for leg in data["callbacks"]:
        if leg["subscriber"]:
            legs[leg["subscriber"]].append(leg)
    return calls, legs


def population(
    data: dict[str, Any], min_call_seconds: float, dispatch_queues: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """One row per external subscriber with a callable missed call (see the module doc)."""
    calls, legs = by_subscriber(data)
    avail = Availability(data)
    free = Availability(data, callbacks=False)
    queues_for = serving_queues(dispatch_queues)
    rows = []
    for sub in data["subscribers"]:
        if sub["kind"] != "external":
            continue
        mine = sorted(calls[sub["id"]], key=lambda c: c["started_at"])
        miss = next(
            (
                c
                for c in mine
                if c["connected_at"] is None
                and c["ended_at"] is not None
                and c["ended_at"] - c["started_at"] >= min_call_seconds
            ),
            None,
        )
        if miss is None:
            continue
        m = miss["ended_at"]
        category = miss["category"] or "other"
        ring = min((leg["rang_at"] for leg in legs[sub["id"]] if leg["rang_at"] >= m), default=INF)
        served_in = min(
            (
                c["connected_at"]
                for c in mine
                if c["connected_at"] is not None and c["connected_at"] >= m
            ),
            default=INF,
        )
        if served_in < ring:
            status = "served_by_redial"
        elif ring < INF:
            status = "called_back"
        else:
            status = "not_called_back"
        rows.append(
            {
                "subscriber": sub["id"],
                "category": category,
                "missed_at": m,
                "source": miss["outcome"],
                "status": status,
                "wait": ring - m if status != "served_by_redial" else None,
                "lower_bound": avail.first_free(m, queues_for.get(category, set())) - m,
                "contention_free_bound": free.first_free(m, queues_for.get(category, set())) - m,
                "ring_at": ring,
                "served_inbound_at": served_in,
            }
        )
    return rows


def duplicates(data: dict[str, Any]) -> dict[str, int]:
    """Calls to one number at once. ``dialled_busy``: a callback started while that subscriber
    was on another call (an inbound call, or another callback of ours) - the dialer's fault;
    ``called_in_during``: the subscriber's own call began while our callback was up."""
    calls, legs = by_subscriber(data)
    out = {"dialled_busy": 0, "overlapping_callbacks": 0, "called_in_during": 0}

    def up(start: float, end: float | None, at: float) -> bool:
        return start <= at and (end is None or end > at)

    for sid, mine in legs.items():
        for leg in mine:
            at = leg["rang_at"]
            end = leg["ended_at"] if leg["ended_at"] is not None else INF
            on_inbound = any(up(c["started_at"], c["ended_at"], at) for c in calls[sid])
            on_ours = any(o is not leg and up(o["rang_at"], o["ended_at"], at) for o in mine)
            if on_inbound or on_ours:
                out["dialled_busy"] += 1
            if on_ours:
                out["overlapping_callbacks"] += 1
            if any(at < c["started_at"] < end for c in calls[sid]):
                out["called_in_during"] += 1
    return out


def agent_seconds_by_category(
    data: dict[str, Any],
    rows: list[dict[str, Any]],
) -> dict[str, float]:
    category = {r["subscriber"]: r["category"] for r in rows}
    planned = {s["id"]: s["planned_category"] for s in data["subscribers"]}
    by_callback: dict[str, str] = {}
    for leg in data["callbacks"]:
        sid = leg["subscriber"]
        by_callback[leg["callback_id"]] = category.get(sid) or planned.get(sid) or "unknown"
    out: dict[str, float] = defaultdict(float)
    for leg in data["agent_legs"]:
        if leg["answered_at"] is not None:
            out[by_callback.get(leg["callback_id"], "unknown")] += (
                leg["ended_at"] - leg["answered_at"]
            )
    return dict(out)


def waiting_at_rings(rows: list[dict[str, Any]]) -> dict[str, float]:
    """How many callable missed callers were waiting (missed, not yet rung, not served) at the
    moment each first callback rang: above 1, callbacks competed for the agent."""
    counts = []
    for row in rows:
        if row["status"] != "called_back":
            continue
        t = row["ring_at"]
        counts.append(
            sum(
                1
                for r in rows
                if r["missed_at"] <= t and min(r["ring_at"], r["served_inbound_at"]) >= t
            )
            - 1
        )
    return {
        "mean": sum(counts) / len(counts) if counts else 0.0,
        "max": max(counts, default=0),
        "share_with_others_waiting": (
            sum(1 for c in counts if c > 0) / len(counts) if counts else 0.0
        ),
    }


def stats(values: list[float]) -> dict[str, Any]:
    return {
        "median": median(values),
        "p90": percentile(values, 0.9),
        "within_15m": (sum(1 for v in values if v <= WITHIN) / len(values) if values else math.nan),
    }


def run_figures(
    data: dict[str, Any],
    dialer: dict[str, Any],
    *,
    min_call_seconds: float,
    dispatch_queues: dict[str, list[str]],
) -> dict[str, Any]:
    """One simulated day: the rows of its missed callers and its counters."""
    rows = population(data, min_call_seconds, dispatch_queues)
    to_served = [c for c in data["callbacks"] if c["need"] != "open"]
    lat = sorted(dialer.get("decision_latency", []))
    return {
        "rows": rows,
        "agent_seconds": agent_seconds_by_category(data, rows),
        "callbacks_to_served": len(to_served),
        "callbacks_to_served_detail": [
            {k: c[k] for k in ("subscriber", "rang_at", "status", "need", "agent")}
            for c in to_served
        ],
        "duplicates": duplicates(data),
        "competition": waiting_at_rings(rows),
        "late_new_subscribers": who_took_the_agent(data, rows, "new_connection", dispatch_queues),
        "callback_legs": len(data["callbacks"]),
        "summary": data["summary"],
        "pbx_events": data["events"],
        "sim_cpu_seconds": data.get("cpu_seconds"),
        "sim_scheduler_errors": data["scheduler_errors"],
        "dialer_handler_errors": dialer.get("handler_errors"),
        "dialer_outcomes": dialer.get("outcomes"),
        "dialer_not_queued": dialer.get("not_queued"),
        "dialer_cpu_seconds": dialer.get("cpu_seconds"),
        "weights": dialer.get("weights"),
        "decision_latency_ms": {
            "n": len(lat),
            "p50": median(lat) * 1000,
            "p99": percentile(lat, 0.99) * 1000,
        }
        if lat
        else {},
    }


def pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several simulated days (seeds) of one variant as one sample of missed callers."""
    rows = [r for run in runs for r in run["rows"]]
    days = len(runs)
    per_category = {}
    for category in (*CATEGORIES, "all"):
        mine = [r for r in rows if category == "all" or r["category"] == category]
        timed = [r for r in mine if r["status"] != "served_by_redial"]
        seconds = sum(
            v for run in runs for c, v in run["agent_seconds"].items() if category in ("all", c)
        )
        per_category[category] = {
            "missed": len(mine),
            "called_back": sum(1 for r in mine if r["status"] == "called_back"),
            "served_by_redial": sum(1 for r in mine if r["status"] == "served_by_redial"),
            "not_called_back": sum(1 for r in mine if r["status"] == "not_called_back"),
            "dialer": stats([r["wait"] for r in timed]),
            "lower_bound": stats([r["lower_bound"] for r in timed]),
            "contention_free_bound": stats([r["contention_free_bound"] for r in timed]),
            "agent_hours_per_day": seconds / 3600 / days,
        }
    late: dict[str, int] = defaultdict(int)
    for run in runs:
        for k, v in run["late_new_subscribers"].items():
            late[k] += v
    dup: dict[str, int] = defaultdict(int)
    for run in runs:
        for k, v in run["duplicates"].items():
            dup[k] += v
    return {
        "days": days,
        "per_category": per_category,
        "callbacks_to_served": sum(run["callbacks_to_served"] for run in runs),
        "duplicates": dict(dup),
        "late_new_subscribers": dict(late),
        "competition_mean": sum(run["competition"]["mean"] for run in runs) / days,
        "calls_per_day": sum(run["summary"]["calls"] for run in runs) / days,
        "unanswered_share": (
            sum(run["summary"]["unanswered_calls"] for run in runs)
            / max(1, sum(run["summary"]["external_calls"] for run in runs))
        ),
        "callbacks_per_day": sum(run["callback_legs"] for run in runs) / days,
        "errors": sum(
            (run["sim_scheduler_errors"] or 0) + (run["dialer_handler_errors"] or 0) for run in runs
        ),
    }


def who_took_the_agent(
    data: dict[str, Any],
    rows: list[dict[str, Any]],
    category: str,
    dispatch_queues: dict[str, list[str]],
    *,
    slack: float = 15.0,
) -> dict[str, int]:
    """For callers of ``category`` rung more than ``slack`` seconds after their lower bound:
    what the agent(s) free at the bound instant did next - another callback of the same
    category (queued ahead of them), a callback of another category, a queue call (a live
    caller waiting in the queue took the agent), a break or the end of the shift."""
    cat_of = {r["subscriber"]: r["category"] for r in rows}
    planned = {s["id"]: s["planned_category"] for s in data["subscribers"]}
    sub_of = {leg["callback_id"]: leg["subscriber"] for leg in data["callbacks"]}
    interfaces = data["interfaces"]
    next_use: dict[str, list[tuple[float, str, str]]] = defaultdict(list)
    for call in data["inbound"]:
        if call["connected_at"] is not None and call["agent"]:
            next_use[interfaces.get(call["agent"], "")].append(
                (call["connected_at"], "queue_call", "")
            )
    for leg in data["agent_legs"]:
        if leg["answered_at"] is not None:
            sid = sub_of.get(leg["callback_id"], "")
            next_use[extension_of(leg["channel"])].append((leg["answered_at"], "callback", sid))
    for agent in data["plan"]["agents"]:
        for begin, _ in agent["breaks"]:
            next_use[agent["extension"]].append((begin, "break", ""))
        for _, logout in agent["shifts"]:
            next_use[agent["extension"]].append((logout, "shift_end", ""))
    for uses in next_use.values():
        uses.sort()
    avail = Availability(data)
    queues = serving_queues(dispatch_queues)
    out: dict[str, int] = defaultdict(int)
    for row in rows:
        if row["category"] != category or row["status"] != "called_back":
            continue
        if row["wait"] - row["lower_bound"] <= slack:
            out["on_time"] += 1
            continue
        t = row["missed_at"] + row["lower_bound"]
        taken = []
        for ext, agent_queues, _ in avail.agents:
            if not agent_queues & queues[category] or avail.first_free(t, agent_queues) > t:
                continue
            use = next(((at, kind, sid) for at, kind, sid in next_use[ext] if at >= t), None)
            if use is None:
                continue
            at, kind, sid = use
            if kind == "callback":
                if sid == row["subscriber"]:
                    kind = "own_callback"
                else:
                    same = (cat_of.get(sid) or planned.get(sid)) == category
                    kind = "callback_same_category" if same else "callback_other_category"
            taken.append((at, kind))
        out[min(taken)[1] if taken else "unknown"] += 1
    return dict(out)
