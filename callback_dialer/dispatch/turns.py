"""Whose turn is a free agent: a callback's, or a caller's waiting live in Asterisk's queue?

A freed agent is wanted by both. Taking them for a callback the instant they are free (the
dialer reacts in milliseconds, app_queue rechecks about once a second) makes the live callers
wait longer, and some of them hang up: the next callbacks. So both kinds of waiting take one
score, lower first:

    live caller:  joined_at   - weight(category)
    callback:     first_missed - weight(category) + callback_handicap

The dispatcher takes the best callback a free agent may serve only if it scores lower than
every live caller waiting in the queues that agent answers (their unpaused memberships);
otherwise the agent is left to Asterisk. The comparison is made inside the claim (the bound
goes to claim.lua), so a callback written meanwhile cannot slip past it. A negative handicap
switches the comparison off (callbacks first, the behaviour before the live queue).

Two guards stand beside the score: ``max_callback_share`` (at most that fraction of a
queue's logged-in agents on callbacks at once) and ``reserve_agents`` (per queue, agents kept
free for live calls whenever anyone waits there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from ..config import Config
from ..detect.agents import AgentBook, QueueAgents
from ..detect.livequeue import LiveQueueBook


class HoldReason(StrEnum):
    LIVE_CALLER_AHEAD = "live_caller_ahead"
    MAX_CALLBACK_SHARE = "max_callback_share"
    RESERVE_AGENTS = "reserve_agents"


@dataclass(frozen=True, slots=True)
class Hold:
    """Why a free agent was left to Asterisk's queue."""

    reason: HoldReason
    queue: str
    agent: str
    waiting: int  # live callers waiting in that queue
    longest_wait: float  # seconds
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {
            "reason": self.reason.value,
            "queue": self.queue,
            "agent": self.agent,
            "waiting": self.waiting,
            "longest_wait_seconds": round(self.longest_wait, 1),
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Bound:
    """Only callbacks whose ready score (first_missed - weight) is below ``below`` may be
    taken; ``ahead`` is the live caller who sets it."""

    below: float
    queue: str
    caller: str
    caller_score: float


class Turns:
    def __init__(self, config: Config, agents: AgentBook, live: LiveQueueBook) -> None:
        self.handicap = config.dispatch.callback_handicap
        self.share = config.dispatch.max_callback_share
        self.reserve = dict(config.dispatch.reserve_agents)
        self.agents = agents
        self.live = live

    @property
    def respects_live(self) -> bool:
        return self.handicap >= 0

    def bound(self, interface: str) -> Bound | None:
        """The claim's bound for this agent (None: no live caller holds them back)."""
        if not self.respects_live:
            return None
        best = self.live.best_in(self.agents.answering_queues(interface))
        if best is None:
            return None
        score = self.live.score(best)
        return Bound(
            below=score - self.handicap, queue=best.queue, caller=best.uniqueid, caller_score=score
        )

    def guard(self, interface: str, counts: dict[str, QueueAgents]) -> Hold | None:
        """A guard that keeps this agent from any callback now (None: the score decides)."""
        for queue in self.agents.answering_queues(interface):
            c = counts.get(queue)
            if c is None:
                continue
            if self.share < 1.0:
                allowed = math.floor(self.share * c.logged_in + 1e-9)
                if c.on_callbacks + 1 > allowed:
                    return self._hold(
                        HoldReason.MAX_CALLBACK_SHARE,
                        queue,
                        interface,
                        f"{c.on_callbacks} of {c.logged_in} agents of {queue} on callbacks; "
                        f"at most {allowed} (max_callback_share {self.share:g})",
                    )
            keep = self.reserve.get(queue, 0)
            if keep and self.live.count(queue) and c.free - 1 < keep:
                return self._hold(
                    HoldReason.RESERVE_AGENTS,
                    queue,
                    interface,
                    f"{queue} keeps {keep} free agent(s) for its live callers; {c.free} free now",
                )
        return None

    def held_by_score(self, interface: str, bound: Bound, callback_score: float) -> Hold:
        waited = self._longest(bound.queue)
        ahead = callback_score + self.handicap - bound.caller_score
        return self._hold(
            HoldReason.LIVE_CALLER_AHEAD,
            bound.queue,
            interface,
            f"a live caller in {bound.queue} scores {ahead:.0f}s ahead of the best callback "
            f"(callback_handicap {self.handicap:g}s)",
            longest=waited,
        )

    def _longest(self, queue: str) -> float:
        for view in self.live.views([queue]):
            if view.queue == queue:
                return view.longest_wait
        return 0.0

    def _hold(
        self,
        reason: HoldReason,
        queue: str,
        interface: str,
        detail: str,
        longest: float | None = None,
    ) -> Hold:
        return Hold(
            reason=reason,
            queue=queue,
            agent=interface,
            waiting=self.live.count(queue),
            longest_wait=self._longest(queue) if longest is None else longest,
            detail=detail,
        )
