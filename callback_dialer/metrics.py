"""Process metrics in the Prometheus text format, without a dependency.

Counters and histograms are updated where things happen (tracker, dispatcher); gauges are read
when /metrics is scraped, from whoever knows the value (queue depth from Redis, AMI state).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    inner = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


@dataclass
class Counter:
    name: str
    help: str
    labels: tuple[str, ...] = ()
    values: dict[tuple[str, ...], float] = field(default_factory=dict)

    def inc(self, *label_values: str, by: float = 1.0) -> None:
        self.values[label_values] = self.values.get(label_values, 0.0) + by

    def get(self, *label_values: str) -> float:
        return self.values.get(label_values, 0.0)

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        for key, value in sorted(self.values.items()):
            out.append(f"{self.name}{_labels(self.labels, key)} {_num(value)}")
        return out


@dataclass
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.counts):
            self.counts[index] += 1
        self.total += value
        self.n += 1

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        running = 0
        for bound, count in zip(self.buckets, self.counts, strict=True):
            running += count
            out.append(f'{self.name}_bucket{{le="{_num(bound)}"}} {running}')
        out.append(f'{self.name}_bucket{{le="+Inf"}} {self.n}')
        out.append(f"{self.name}_sum {_num(self.total)}")
        out.append(f"{self.name}_count {self.n}")
        return out


GaugeReader = Callable[[], Awaitable[Iterable[tuple[tuple[str, ...], float]]]]


@dataclass
class Gauge:
    name: str
    help: str
    labels: tuple[str, ...]
    read: GaugeReader

    async def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} gauge"]
        for key, value in await self.read():
            out.append(f"{self.name}{_labels(self.labels, key)} {_num(value)}")
        return out


class Metrics:
    """The dialer's metrics, one instance per process."""

    def __init__(self) -> None:
        self.missed_calls = Counter(
            "callback_dialer_missed_calls_total",
            "Inbound calls that ended without reaching a person and were queued.",
            ("category", "source"),
        )
        self.not_queued = Counter(
            "callback_dialer_calls_not_queued_total",
            "Calls not called back, by reason (anonymous, internal, too_short, ...).",
            ("reason",),
        )
        self.self_service = Counter(
            "callback_dialer_self_service_total",
            "Calls the IVR served itself (CALLBACK_SKIP or a self_service rule): no callback.",
            ("reason",),
        )
        self.served = Counter(
            "callback_dialer_customers_served_total",
            "Customers who got through to a person while a callback was open.",
            ("how",),
        )
        self.outcomes = Counter(
            "callback_dialer_callback_outcomes_total",
            "Callback attempts by outcome (answered, busy, no_answer, agent_no_answer, ...).",
            ("outcome",),
        )
        self.originate_to_answer = Histogram(
            "callback_dialer_originate_to_answer_seconds",
            "From an Originate written to the socket to the agent leg being answered.",
        )
        self.decision_latency = Histogram(
            "callback_dialer_dispatch_decision_seconds",
            "From the event that freed an agent to the Originate written on the socket.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1),
        )
        self.left_to_live = Counter(
            "callback_dialer_agents_left_to_live_total",
            "Free agents left to Asterisk's queue for live callers instead of a callback",
            ("queue", "reason"),
        )
        self.ami_reconnects = Counter(
            "callback_dialer_ami_connects_total", "Successful AMI logins (the first one included)."
        )
        self.records = Counter(
            "callback_dialer_astdb_records_total",
            "Records the dialplan left in AstDB, read back by result: applied (a call or a "
            "callback's fate nobody had seen), seen_live (matched a call followed live), "
            "purged (older than records.max_age), unreadable.",
            ("kind", "result"),
        )
        self.records_disagree = Counter(
            "callback_dialer_astdb_records_disagree_total",
            "Calls followed live whose AstDB record says otherwise (live: what the events "
            "said; record: what the dialplan wrote). Live wins; this counts the doubt.",
            ("live", "record"),
        )
        self.gauges: list[Gauge] = []

    def gauge(self, name: str, help_text: str, labels: tuple[str, ...], read: GaugeReader) -> None:
        self.gauges.append(Gauge(name, help_text, labels, read))

    async def render(self) -> str:
        lines: list[str] = []
        for metric in (
            self.missed_calls,
            self.not_queued,
            self.self_service,
            self.served,
            self.outcomes,
            self.left_to_live,
            self.ami_reconnects,
            self.records,
            self.records_disagree,
        ):
            lines += metric.render()
        lines += self.originate_to_answer.render()
        lines += self.decision_latency.render()
        for gauge in self.gauges:
            try:
                lines += await gauge.render()
            except Exception as exc:
                # One unreadable gauge (Redis down) must not fail the scrape: Prometheus
                # should still see ami_connected, redis_reachable 0 and the counters.
                lines.append(f"# {gauge.name} not readable: {type(exc).__name__}")
        return "\n".join(lines) + "\n"
