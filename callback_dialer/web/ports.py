"""All the web layer may know of the running dialer: what it reads, and what it may ask for.

The page, the JSON API, the live stream and /metrics read through ``StatusSource`` and change
things only through ``Commands``; signed-in sessions live in a ``SessionStore``. The
composition (``callback_dialer.app.build_dialer``) implements them by delegating to the parts,
so the web never walks the object graph: it cannot name the dispatcher, the agent book, the AMI
client or the Redis client, and those can change shape without the page noticing. The tests
serve the page through proxies that expose exactly these members, so a handler reaching for
anything else fails there.

Queue reads raise ``QueueUnavailable`` when Redis does not answer, as the queue does; the page
turns that into a 503 naming the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..jobs.admin import FailedJob, JobCounts, ParkedEvent, ReceiverState
from ..jobs.reports import ReportFiles
from ..queue.models import Callback, EnqueueResult, HistoryEntry, Outage, OutageEnd
from ..queue.store import ActionResult


class AgentRow(Protocol):
    """One agent as the dialer sees it right now."""

    @property
    def interface(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def state(self) -> str: ...  # free | ringing | talking | wrapup | paused | ... | reserved
    @property
    def paused_reason(self) -> str: ...
    @property
    def queues(self) -> tuple[str, ...]: ...
    @property
    def categories(self) -> tuple[str, ...]: ...
    @property
    def since(self) -> float: ...
    @property
    def reserved_for(self) -> str: ...


@dataclass(frozen=True, slots=True)
class DispatchState:
    """Whether this dialer calls back now, and if not, who or what stopped it."""

    paused: bool
    paused_by: str
    paused_reason: str
    alarm: str
    dispatching: bool
    blocked_by: str
    # Several dialers: this one's name and the leader lease's holder ("" none yet); only the
    # leader dispatches, the others show blocked_by "standby".
    instance: str = ""
    leader: str = ""


@dataclass(frozen=True, slots=True)
class LiveQueueRow:
    """One Asterisk queue now: its live callers, and where its logged-in agents are."""

    queue: str
    waiting: int
    longest_wait: float  # seconds the longest-waiting live caller has held
    oldest_joined_at: float | None  # when they joined (None: nobody waits)
    logged_in: int
    agents_free: int
    agents_on_live: int
    agents_on_callbacks: int
    agents_paused: int


@dataclass(frozen=True, slots=True)
class HoldRow:
    """A free agent the dispatcher left to Asterisk's queue, and why."""

    agent: str
    queue: str
    reason: str  # live_caller_ahead | max_callback_share | reserve_agents
    waiting: int
    longest_wait: float
    detail: str


@dataclass(frozen=True, slots=True)
class LiveQueues:
    queues: list[LiveQueueRow]
    holding: list[HoldRow]
    holding_since: float | None  # since when calling back holds off (None: it does not)
    handicap: float  # [dispatch] callback_handicap, seconds


@dataclass(frozen=True, slots=True)
class SideJobs:
    """The side jobs (rq) and the reports on disk, read together."""

    counts: JobCounts
    failed: list[FailedJob]
    parked: list[ParkedEvent]
    receivers: list[ReceiverState]
    reports: list[ReportFiles]


class StatusSource(Protocol):
    # ---- the dialer's clock and calendar
    def now(self) -> float:
        """The dialer's clock (the demo's runs faster than real time)."""
        ...

    def clock_rate(self) -> float:
        """Seconds of the dialer's clock per real second (0: frozen)."""
        ...

    def day_key(self, at: float) -> str:
        """The local day (YYYY-MM-DD, calling-hours time zone) of the moment ``at``."""
        ...

    # ---- the queue (Redis: the truth about callbacks)
    async def waiting(self, limit: int, categories: list[str] | None = None) -> list[Callback]:
        """Open callbacks not being called, in the order they will be taken."""
        ...

    async def dialing(self) -> list[Callback]:
        """Callbacks being called, by this dialer or another one (by lease)."""
        ...

    async def finished_between(self, start: float, end: float) -> list[Callback]: ...
    async def callback(self, callback_id: str) -> Callback | None: ...
    async def callbacks_of(self, number: str) -> list[Callback]:
        """Every callback of ``number`` (E.164) still kept, open and finished, newest first."""
        ...

    async def history(self, callback_id: str) -> list[HistoryEntry]: ...
    async def counts(self) -> dict[str, dict[str, int]]:
        """Open callbacks by state, then category."""
        ...

    async def oldest_waiting_since(self) -> float | None:
        """The first missed call of the oldest open callback (None: none is open)."""
        ...

    async def day_callbacks(self, day: str) -> list[Callback]:
        """The callbacks first missed on ``day``."""
        ...

    async def held_callbacks(self, limit: int) -> list[Callback]:
        """Callbacks outages hold now, each outage's in the order they would be released."""
        ...

    async def outages(self) -> list[Outage]:
        """Active and ending outages first, then the latest ended ones."""
        ...

    async def day_stats(self, day: str) -> dict[str, int]:
        """The counters the queue keeps for ``day``."""
        ...

    async def next_queue_change(self, after: str | None) -> str | None:
        """Wait a short while for the queue's events (from any dialer) past the cursor
        ``after`` (None: from now on); the newest event's cursor, ``after`` if none came."""
        ...

    # ---- this dialer's memory
    def attempts_in_progress(self) -> list[dict[str, Any]]:
        """The calls this dialer is making: id, agent, number, category, stage, since, ..."""
        ...

    def agents(self) -> Sequence[AgentRow]: ...
    def live_queues(self) -> LiveQueues:
        """Asterisk's queues as the dialer follows them, and the agents it leaves to them."""
        ...

    def dispatch_state(self) -> DispatchState: ...
    def on_dispatch_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever dispatching is paused, resumed or alarmed."""
        ...

    # ---- the links and the process
    def ami_link(self) -> tuple[bool, str]:
        """(logged in to Asterisk, why not when not)."""
        ...

    async def health(self) -> tuple[bool, list[str]]:
        """(all up, the problems in words)."""
        ...

    async def metrics_text(self) -> str:
        """The Prometheus text of /metrics."""
        ...

    # ---- side jobs and reports
    async def side_jobs(self) -> SideJobs:
        """Counts, failed jobs, parked webhook events, receivers and reports on disk;
        ``QueueUnavailable`` when Redis cannot be read."""
        ...

    async def reports(self) -> list[ReportFiles]:
        """The reports on disk, newest day first."""
        ...

    async def report_file(self, name: str) -> Path | None:
        """The report file called ``name``, or None (only our own file names)."""
        ...


@dataclass(frozen=True, slots=True)
class StoredSession:
    """A signed-in session as kept: whose, and when (real epoch seconds) it was opened and
    last used."""

    user: str
    created: float
    seen: float


class SessionStore(Protocol):
    """Sessions of the status page, kept where every dialer serving it sees them (Redis), so
    signing out ends a session everywhere at once. Sessions are named by a digest of their
    cookie, never by the cookie itself. A session not used for ``ttl`` seconds disappears by
    itself. ``QueueUnavailable`` when the store does not answer."""

    async def open_session(self, digest: str, user: str, now: float, ttl: float) -> None: ...
    async def session(self, digest: str) -> StoredSession | None: ...
    async def touch_session(self, digest: str, now: float, ttl: float) -> None:
        """Mark the session used at ``now``, to live ``ttl`` more; nothing if it is gone."""
        ...

    async def end_session(self, digest: str, user: str) -> None: ...
    async def end_sessions_of(self, user: str) -> int:
        """End every session of ``user``; how many there were."""
        ...


class Commands(Protocol):
    """Everything a supervisor can make the dialer do. ``actor`` goes into the callback's
    history (``web:<user>``)."""

    async def call_now(self, callback_id: str, actor: str) -> ActionResult: ...
    async def cancel(self, callback_id: str, reason: str, actor: str) -> ActionResult:
        """Close an open callback; one being called is hung up."""
        ...

    async def set_category(self, callback_id: str, category: str, actor: str) -> ActionResult: ...
    async def add_manual(
        self, number: str, category: str, actor: str, *, name: str, note: str
    ) -> EnqueueResult:
        """A callback added by hand (``number`` already checked: E.164, allowed)."""
        ...

    async def pause(self, actor: str, reason: str) -> None: ...
    async def resume(self, actor: str) -> None: ...
    async def rerun_failed_job(self, job_id: str) -> bool:
        """Give one failed side job all its tries again; False when there is no such job."""
        ...

    async def rerun_failed_jobs(self) -> int: ...
    async def rerun_parked_events(self) -> int:
        """Send every parked webhook event again; how many."""
        ...

    async def make_report(self, day: str) -> ReportFiles:
        """Make (or remake) the daily report of ``day`` now."""
        ...

    async def declare_outage(
        self,
        actor: str,
        *,
        categories: list[str],
        prefixes: list[str],
        areas: list[str],
        message: str,
        expected_end: float | None,
    ) -> tuple[bool, Outage]:
        """Declare an outage: the missed calls it covers are held. (newly declared, outage);
        raises QueueInputError on a bad category, prefix or time."""
        ...

    async def end_outage(
        self, outage_id: str, choice: OutageEnd, actor: str, *, per_hour: int | None
    ) -> tuple[str, Outage | None]:
        """End an active outage; its held callbacks are dropped or released (``per_hour``
        None: [outage] release_per_hour). Result ok | not_found | not_active."""
        ...
