"""How long until a caller is called back: the IVR's "we will call you back in about N
minutes", the SMS's, and the queue-door check "is the wait longer than ``[ivr] offer_after``".

From what the dialer knows right now, all of it in memory so that a caller on the line never
waits on Redis: the callbacks ahead in the order agents will take them (a copy of the waiting
list, refreshed in the background and whenever the queue changes), the callers waiting live in
the queues of the agents who serve the category (the call tracker), those agents (the agent
book: paused and unavailable ones do not count, free ones start at once), how long one call
keeps an agent recently (``HandleTimes``, from the agents' own busy periods: queue calls and
callbacks alike), and the calling hours.

The model: ``work`` jobs are ahead (callbacks before this one plus callers waiting live). With
``free`` agents idle the first ``free`` jobs start now; after that, with all ``n`` agents busy
for a typical ``h`` seconds each, the first agent frees after about ``h/(n+1)`` and one more
every ``h/n``. A promise to a customer is rounded up to five minutes (never under five): it
errs late rather than early, and "about 10 minutes" is what a person says. The simulator
measures how far off it is (bench/estimate_bench.py, BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import math
import statistics
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from ..clock import Clock
from ..config import Config
from ..detect.agents import AgentBook, AgentView
from ..detect.tracker import CallTracker
from ..hours import CallingHours
from ..logs import get_logger
from ..queue.models import Callback, QueueChange, State, WaitingEntry
from ..queue.store import CallbackQueue, QueueUnavailable

log = get_logger(__name__)

# Ring, talk and wrap-up of one call, until enough of them were seen.
DEFAULT_HANDLE_SECONDS = 300.0
# Minutes promised when no agent serves the category at all (nobody logged in).
NO_AGENT_MINUTES = 60
_IDLE = frozenset({"free"})
_AWAY = frozenset({"paused", "unavailable"})


def promise_minutes(seconds: float) -> int:
    """Round numbers for a person: 5, 10, 15 ... never less than 5."""
    return max(5, 5 * math.ceil(seconds / 300))


@dataclass(frozen=True, slots=True)
class Estimate:
    seconds: float  # expected time until the callback is dialled
    ahead: int  # callbacks before it in the take order
    live: int  # callers waiting live in the queues of the agents serving it
    agents: int  # agents serving the category, not paused or unavailable
    free: int  # of them, idle now
    handle_seconds: float  # what one call keeps an agent, recently
    closed_for: float = 0.0  # seconds until calling hours open (included in ``seconds``)

    @property
    def minutes(self) -> int:
        return promise_minutes(self.seconds)


class HandleTimes:
    """How long a call keeps an agent lately: from an agent's leaving "free" for a call to
    their being free again, wrap-up included, counted only when they talked. The median of
    the last ``keep`` such periods within ``max_age``; the default until ``min_samples``."""

    BUSY = frozenset({"reserved", "ringing", "talking", "wrapup", "cooldown"})

    def __init__(
        self,
        clock: Clock,
        *,
        keep: int = 50,
        max_age: float = 2 * 3600.0,
        min_samples: int = 3,
        default: float = DEFAULT_HANDLE_SECONDS,
    ) -> None:
        self.clock = clock
        self.max_age = max_age
        self.min_samples = min_samples
        self.default = default
        self._samples: deque[tuple[float, float]] = deque(maxlen=keep)  # (at, seconds)
        self._busy_since: dict[str, tuple[float, bool]] = {}  # interface -> (start, talked)

    def add(self, seconds: float, at: float | None = None) -> None:
        if seconds > 0:
            self._samples.append((self.clock.now() if at is None else at, seconds))

    def observe(self, view: AgentView) -> None:
        """An agent's state changed (the agent book's on_change)."""
        now = self.clock.now()
        busy = self._busy_since.get(view.interface)
        if view.state in self.BUSY:
            if busy is None:
                self._busy_since[view.interface] = (now, view.state == "talking")
            elif view.state == "talking" and not busy[1]:
                self._busy_since[view.interface] = (busy[0], True)
            return
        if busy is not None:
            del self._busy_since[view.interface]
            start, talked = busy
            if talked:
                self.add(now - start, now)

    def typical(self) -> float:
        now = self.clock.now()
        recent = [s for at, s in self._samples if now - at <= self.max_age]
        if len(recent) < self.min_samples:
            return self.default
        return float(statistics.median(recent))


class Estimator:
    """The estimates, answered from memory. ``run()`` keeps the copy of the waiting list
    fresh (every ``refresh_every`` seconds and after each queue change); while Redis is away
    the last copy stands, so the IVR still answers at once."""

    def __init__(
        self,
        config: Config,
        clock: Clock,
        queue: CallbackQueue,
        agents: AgentBook,
        tracker: CallTracker,
        handle_times: HandleTimes | None = None,
        *,
        refresh_every: float = 2.0,
        min_interval: float = 0.5,
    ) -> None:
        self.config = config
        self.clock = clock
        self.queue = queue
        self.agents = agents
        self.tracker = tracker
        self.handle_times = handle_times or HandleTimes(clock)
        self.hours = CallingHours(config.hours)
        self.refresh_every = refresh_every
        self.min_interval = min_interval
        self.weights = {c.name: c.weight for c in config.categories}
        self.serves = {q: tuple(cats) for q, cats in config.dispatch.queues.items()}
        self._waiting: list[WaitingEntry] = []
        self.refreshed_at: float | None = None
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ keeping current

    def agent_changed(self, interface: str) -> None:
        for view in self.agents.views():
            if view.interface == interface:
                self.handle_times.observe(view)
                return

    def queue_changed(self, change: QueueChange) -> None:
        self._changed.set()

    async def refresh(self) -> bool:
        try:
            entries = await self.queue.waiting_index(limit=1000)
        except QueueUnavailable:
            return False  # the last copy stands; the sink and the page say Redis is away
        except Exception as exc:  # a bad record must not stop the dialer: the copy stands
            log.warning(
                "waiting list not read for the estimate", error=f"{type(exc).__name__}: {exc}"
            )
            return False
        self._waiting = entries
        self.refreshed_at = self.clock.now()
        return True

    def set_waiting(self, waiting: Iterable[Callback]) -> None:
        """Take the waiting list from whole records (tests and tools that hold them)."""
        self._waiting = [
            WaitingEntry(
                id=cb.id,
                category=cb.category,
                score=cb.score,
                due_at=cb.next_at if cb.state is State.SCHEDULED else None,
            )
            for cb in waiting
            if cb.state in (State.PENDING, State.SCHEDULED)
        ]
        self.refreshed_at = self.clock.now()

    async def run(self) -> None:
        while True:
            self._changed.clear()
            await self.refresh()
            try:
                # Every change wakes it; the period is a safety net, so a fast simulated
                # clock need not read the waiting list many times a real second.
                period = max(0.25, self.clock.to_real(self.refresh_every))
                await asyncio.wait_for(self._changed.wait(), period)
            except TimeoutError:
                pass
            # Writes come in bursts, and under a storm every claim is one: at most one read per
            # min_interval (real seconds) covers them, and an estimate half a second old is as
            # good as a fresh one to a caller told "about N minutes".
            await asyncio.sleep(self.min_interval)

    # ------------------------------------------------------------------ estimating

    def _serving(self, category: str) -> list[AgentView]:
        return [v for v in self.agents.views() if category in v.categories and v.state not in _AWAY]

    def _live(self, serving: list[AgentView], exclude_call: str = "") -> int:
        queues = {q for v in serving for q in v.queues}
        return sum(
            1
            for c in self.tracker.snapshot()
            if c.in_queue
            and not c.connected
            and c.call_id != exclude_call
            and c.queues
            and c.queues[-1] in queues
        )

    def _wait(self, work: int, agents: int, free: int, handle: float) -> float:
        if work < free:
            return 0.0
        return handle / (agents + 1) + (work - free) * handle / agents

    def _estimate(self, category: str, ahead: int, exclude_call: str = "") -> Estimate:
        serving = self._serving(category)
        handle = self.handle_times.typical()
        live = self._live(serving, exclude_call)
        now = self.clock.now()
        closed_for = 0.0
        opening = self.hours.next_open(now)
        if opening is not None and opening > now:
            closed_for = opening - now
        if not serving:
            return Estimate(
                seconds=NO_AGENT_MINUTES * 60.0 + closed_for,
                ahead=ahead,
                live=live,
                agents=0,
                free=0,
                handle_seconds=handle,
                closed_for=closed_for,
            )
        free = sum(1 for v in serving if v.state in _IDLE)
        # Outside calling hours nobody is called back meanwhile, and the callers waiting now
        # are long gone by the opening: only the callbacks ahead count then.
        work = ahead if closed_for else ahead + live
        wait = self._wait(work, len(serving), len(serving) if closed_for else free, handle)
        return Estimate(
            seconds=wait + closed_for,
            ahead=ahead,
            live=live,
            agents=len(serving),
            free=free,
            handle_seconds=handle,
            closed_for=closed_for,
        )

    def _ahead(self, category: str, score: float, exclude: str = "") -> int:
        cats = {c for v in self._serving(category) for c in v.categories} or {category}
        now = self.clock.now()
        return sum(
            1
            for w in self._waiting
            if w.id != exclude
            and w.category in cats
            and (w.due_at is None or w.due_at <= now)
            and w.score < score
        )

    def for_new(self, category: str, call_id: str = "") -> Estimate:
        """A callback asked for now (the IVR's offer): it would be last among its equals."""
        score = self.clock.now() - self.weights.get(category, 0.0)
        return self._estimate(category, self._ahead(category, score), exclude_call=call_id)

    def for_callback(self, callback: Callback) -> Estimate:
        est = self._estimate(
            callback.category, self._ahead(callback.category, callback.score, callback.id)
        )
        now = self.clock.now()
        if callback.state is State.SCHEDULED and callback.next_at and callback.next_at > now:
            due_in = callback.next_at - now
            if due_in > est.seconds:
                return Estimate(**{**_fields(est), "seconds": due_in})
        return est

    def queue_wait(self, queue: str, call_id: str = "") -> float:
        """Expected seconds until an agent of ``queue`` answers a caller joining it now."""
        members = [v for v in self.agents.views() if queue in v.queues and v.state not in _AWAY]
        if not members:
            return float("inf")
        ahead = sum(
            1
            for c in self.tracker.snapshot()
            if c.in_queue and not c.connected and c.call_id != call_id and c.queues[-1:] == (queue,)
        )
        free = sum(1 for v in members if v.state in _IDLE)
        return self._wait(ahead, len(members), free, self.handle_times.typical())


def _fields(est: Estimate) -> dict[str, object]:
    return {name: getattr(est, name) for name in Estimate.__slots__}


async def estimate_minutes(
    callback: Callback,
    *,
    queue: CallbackQueue,
    agents: AgentBook,
    tracker: CallTracker,
    config: Config,
    clock: Clock,
    handle_times: HandleTimes | None = None,
) -> int:
    """One estimate with a fresh read of the waiting list (tests, tools)."""
    estimator = Estimator(config, clock, queue, agents, tracker, handle_times)
    await estimator.refresh()
    return estimator.for_callback(callback).minutes
