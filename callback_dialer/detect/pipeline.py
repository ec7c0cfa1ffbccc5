"""The detection path, wired once: router -> tracker and agents -> sink -> queue.

The live dialer and ``callback-dialer replay`` both build it here, so a replayed capture goes
through exactly the handlers a live Asterisk feeds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..ami.router import EventRouter
from ..ami.stream import AmiStream
from ..clock import Clock
from ..config import Config
from ..queue.store import CallbackQueue
from .agents import AgentBook
from .facts import Fact
from .livequeue import LiveQueueBook
from .sink import AreaOf, OnApplied, QueueSink
from .tracker import CallTracker


@dataclass
class Pipeline:
    router: EventRouter
    tracker: CallTracker
    agents: AgentBook
    sink: QueueSink
    live: LiveQueueBook

    def stream(self) -> AmiStream:
        """An AmiStream for a recording (a live link has its own, with its responses hook)."""
        return AmiStream(self.router)


def build_pipeline(
    config: Config,
    clock: Clock,
    queue: CallbackQueue,
    *,
    spool: Path | None = None,
    on_applied: OnApplied | None = None,
    on_agent_change: Callable[[str], None] | None = None,
    on_rest: Callable[[float], None] | None = None,
    on_fact: Callable[[Fact], None] | None = None,
    on_live_change: Callable[[str], None] | None = None,
    area_of: AreaOf | None = None,
) -> Pipeline:
    router = EventRouter()
    sink = QueueSink(queue, spool=spool, on_applied=on_applied, area_of=area_of)
    agents = AgentBook(config, clock, on_change=on_agent_change, on_rest=on_rest)

    def emit(fact: Fact) -> None:
        if on_fact is not None:
            on_fact(fact)
        sink.put(fact)

    tracker = CallTracker(config, emit, is_agent_channel=agents.is_agent_channel)
    live = LiveQueueBook(
        config, clock, known_category=tracker.category_var_of, on_change=on_live_change
    )
    # Agents first: a bridge is judged against the freshest list of agents' channels. The
    # live queue before the tracker: a caller's category is taken before the tracker may
    # forget a call that ends with this event.
    router.add(agents)
    router.add(live)
    router.add(tracker)
    return Pipeline(router=router, tracker=tracker, agents=agents, sink=sink, live=live)
