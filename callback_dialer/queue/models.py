"""What a callback is, as read back from Redis: immutable, comparable with ``==``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class State(StrEnum):
    PENDING = "pending"  # ready: the next free suitable agent takes it
    SCHEDULED = "scheduled"  # due later: retry delay, calling hours closed
    DIALING = "dialing"  # claimed by a dispatcher (a lease), a call is being made
    HELD = "held"  # an outage covers it: not dialled until the outage ends (released/dropped)
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_open(self) -> bool:
        return self in OPEN_STATES


OPEN_STATES = (State.PENDING, State.SCHEDULED, State.DIALING, State.HELD)
FINISHED_STATES = (State.DONE, State.FAILED, State.CANCELLED)


class Source(StrEnum):
    ABANDON = "abandon"  # hung up while waiting in a queue
    IVR_HANGUP = "ivr_hangup"  # hung up in the IVR, before any queue
    TIMEOUT = "timeout"  # the queue gave up on the caller (dialplan asked for a callback)
    EXPLICIT = "explicit"  # the caller asked for a callback (pressed a key)
    MANUAL = "manual"  # a supervisor added it by hand


# When calls merge, the stronger source stays: a caller who asked explicitly is an explicit
# request even if their first call was a plain abandon.
SOURCE_RANK = {
    Source.IVR_HANGUP: 1,
    Source.ABANDON: 2,
    Source.TIMEOUT: 3,
    Source.EXPLICIT: 4,
    Source.MANUAL: 5,
}


class Stage(StrEnum):
    """Where a callback in progress is; shown on the status page."""

    CLAIMED = "claimed"
    RINGING_AGENT = "ringing_agent"
    RINGING_CUSTOMER = "ringing_customer"
    TALKING = "talking"


@dataclass(frozen=True, slots=True)
class Attempt:
    at: float
    agent: str
    outcome: str  # answered, busy, no_answer, congestion, unavailable, short_call, ...
    talk_seconds: float = 0.0
    counted: bool = True  # did it use one of the customer's attempts?

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attempt:
        return cls(
            at=float(data.get("at", 0)),
            agent=str(data.get("agent", "")),
            outcome=str(data.get("outcome", "")),
            talk_seconds=float(data.get("talk_seconds", 0) or 0),
            counted=bool(data.get("counted", True)),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "at": round(self.at, 3),
            "agent": self.agent,
            "outcome": self.outcome,
            "talk_seconds": round(self.talk_seconds, 3),
            "counted": self.counted,
        }


def _f(value: str | None) -> float | None:
    if value in (None, ""):
        return None
    return float(value)


@dataclass(frozen=True, slots=True)
class Callback:
    id: str
    number: str
    category: str
    source: Source
    state: State
    reason: str
    first_missed: float
    last_missed: float
    missed_count: int
    attempts: int
    score: float
    created_at: float
    updated_at: float
    name: str = ""
    next_at: float | None = None
    closed_at: float | None = None
    trunk: str = ""
    agent: str = ""
    stage: str = ""
    stage_at: float | None = None  # when ``stage`` began (a talk counts from then)
    claimed_by: str = ""
    lease_until: float | None = None
    first_dialed_at: float | None = None
    pinned: bool = False
    note: str = ""
    day: str = ""
    outage: str = ""  # the outage that held it (kept after release or drop, for reports)
    attempt_log: tuple[Attempt, ...] = field(default_factory=tuple)
    # The missed call it began with: its Linkedid (the caller channel's Uniqueid, as
    # app_queue writes it in queue_log) and the queue it waited in ("" for none).
    call_id: str = ""
    queue: str = ""
    # The number the missed call came from, when the caller asked to be called back on
    # another one (``number``): "" when they are the same.
    caller_id: str = ""
    # When the IVR's offer said we would call back by (None: no promise was made).
    promised_by: float | None = None

    @classmethod
    def from_redis(cls, raw: dict[str, str]) -> Callback:
        log = tuple(Attempt.from_json(a) for a in json.loads(raw.get("attempt_log") or "[]"))
        return cls(
            id=raw["id"],
            number=raw["number"],
            category=raw["category"],
            source=Source(raw["source"]),
            state=State(raw["state"]),
            reason=raw.get("reason", ""),
            first_missed=float(raw["first_missed"]),
            last_missed=float(raw["last_missed"]),
            missed_count=int(raw["missed_count"]),
            attempts=int(raw.get("attempts") or 0),
            score=float(raw["score"]),
            created_at=float(raw["created_at"]),
            updated_at=float(raw["updated_at"]),
            name=raw.get("name", ""),
            next_at=_f(raw.get("next_at")),
            closed_at=_f(raw.get("closed_at")),
            trunk=raw.get("trunk", ""),
            agent=raw.get("agent", ""),
            stage=raw.get("stage", ""),
            stage_at=_f(raw.get("stage_at")),
            claimed_by=raw.get("claimed_by", ""),
            lease_until=_f(raw.get("lease_until")),
            first_dialed_at=_f(raw.get("first_dialed_at")),
            pinned=raw.get("pinned") == "1",
            note=raw.get("note", ""),
            day=raw.get("day", ""),
            outage=raw.get("outage", ""),
            attempt_log=log,
            call_id=raw.get("call_id", ""),
            queue=raw.get("queue", ""),
            caller_id=raw.get("caller_id", ""),
            promised_by=_f(raw.get("promised_by")),
        )

    def to_public(self) -> dict[str, Any]:
        """A JSON-ready dict (API, webhooks); numbers are E.164, names raw text."""
        return {
            "id": self.id,
            "number": self.number,
            "caller_id": self.caller_id,
            "promised_by": self.promised_by,
            "name": self.name,
            "category": self.category,
            "source": self.source.value,
            "state": self.state.value,
            "reason": self.reason,
            "first_missed": self.first_missed,
            "last_missed": self.last_missed,
            "missed_count": self.missed_count,
            "attempts": self.attempts,
            "next_at": self.next_at,
            "closed_at": self.closed_at,
            "agent": self.agent,
            "stage": self.stage,
            "pinned": self.pinned,
            "note": self.note,
            "outage": self.outage,
            "attempt_log": [a.to_json() for a in self.attempt_log],
        }


@dataclass(frozen=True, slots=True)
class WaitingEntry:
    """A waiting callback as the index holds it: enough to count who is ahead of whom."""

    id: str
    category: str
    score: float
    due_at: float | None  # scheduled ones: when they become ready; None when ready now


@dataclass(frozen=True, slots=True)
class Claim:
    """A callback held by one dispatcher until it settles it or the lease runs out."""

    callback: Callback
    token: str


@dataclass(frozen=True, slots=True)
class Adoption:
    """A callback call found up in Asterisk that no attempt of ours follows, to be taken over:
    its new claim is held under ``token``; ``stage`` is where Asterisk shows the call now."""

    callback_id: str
    token: str
    agent: str = ""
    stage: str = ""
    stage_at: float | None = None


@dataclass(frozen=True, slots=True)
class AdoptResult:
    """What the queue made of one ``Adoption``: ``adopted`` (the claim is ours now),
    ``reclaimed`` (its lease had run out; claimed again), ``closed`` (finished: not followed),
    ``gone``. ``claim`` is set for the first two."""

    callback_id: str
    result: str
    claim: Claim | None = None
    state: str = ""
    number: str = ""  # closed: the callback's number


@dataclass(frozen=True, slots=True)
class HeldBack:
    """A claim that found a callback but took none: its score was not below the bound (a
    live caller in Asterisk's queue goes first)."""

    score: float


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    at: float
    event: str
    state: str
    reason: str
    actor: str
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class QueueChange:
    """A write to the queue that may concern a dispatcher, as told to the queue's listeners:
    a callback that may be dispatchable now, one due later, or one just closed."""

    id: str
    event: str  # what happened, as the history says: created, merged, call_now, cancelled, ...
    state: State  # the callback's state after the write
    previous_state: State | None = None  # set by the writes that close a callback
    due_at: float | None = None  # scheduled: when it becomes ready

    @property
    def ready(self) -> bool:
        """Ready now: a free agent may take it at once."""
        return self.state is State.PENDING

    @property
    def closed(self) -> bool:
        return not self.state.is_open


@dataclass(frozen=True, slots=True)
class DispatchControl:
    """The dispatching switch: paused or not, by whom and why, and the alarm that paused it.
    Kept in Redis so that a supervisor's pause outlives a restart of the dialer."""

    paused: bool
    by: str = ""
    reason: str = ""
    alarm: str = ""
    at: float | None = None  # when it was saved (read back only; saving stamps the time)


class OutageState(StrEnum):
    ACTIVE = "active"  # declared: covered missed calls are held
    ENDING = "ending"  # ended by a supervisor: its held callbacks are being dropped/released
    ENDED = "ended"  # every held callback has its fate


class OutageEnd(StrEnum):
    """What becomes of an outage's held callbacks when it ends (the supervisor's choice)."""

    DROP = "drop"  # cancelled, the caller told "service is back" (SMS)
    RELEASE = "release"  # called back in the usual order, at most ``release_per_hour``


@dataclass(frozen=True, slots=True)
class Outage:
    """A known outage: while active, the missed calls it covers are held, not dialled."""

    id: str
    categories: tuple[str, ...]
    prefixes: tuple[str, ...]  # E.164 starts ("+7495123"); none and no areas: every caller
    areas: tuple[str, ...]  # area names the CRM lookup hook answers with
    message: str
    expected_end: float | None
    declared_by: str
    declared_at: float
    state: OutageState
    end_choice: str = ""  # drop | release, once ended
    release_per_hour: int = 0
    ended_by: str = ""
    ended_at: float | None = None
    held: int = 0  # callbacks held so far (all of them, released and dropped included)
    released: int = 0
    dropped: int = 0
    waiting: int = 0  # still held now

    @property
    def active(self) -> bool:
        return self.state is OutageState.ACTIVE

    def covers(self, category: str, number: str, area: str = "") -> bool:
        """Would a missed call of ``category`` from ``number`` (in ``area``) be held? The
        same rule as enqueue.lua's, for the page and the tests."""
        if not self.active or category not in self.categories:
            return False
        if not self.prefixes and not self.areas:
            return True
        return any(number.startswith(p) for p in self.prefixes) or (
            bool(area) and area in self.areas
        )

    @classmethod
    def from_redis(cls, raw: dict[str, str], waiting: int = 0) -> Outage:
        return cls(
            id=raw["id"],
            categories=tuple(json.loads(raw.get("categories") or "[]")),
            prefixes=tuple(json.loads(raw.get("prefixes") or "[]")),
            areas=tuple(json.loads(raw.get("areas") or "[]")),
            message=raw.get("message", ""),
            expected_end=_f(raw.get("expected_end")),
            declared_by=raw.get("declared_by", ""),
            declared_at=float(raw.get("declared_at") or 0),
            state=OutageState(raw.get("state") or "active"),
            end_choice=raw.get("end_choice", ""),
            release_per_hour=int(raw.get("release_per_hour") or 0),
            ended_by=raw.get("ended_by", ""),
            ended_at=_f(raw.get("ended_at")),
            held=int(raw.get("held") or 0),
            released=int(raw.get("released") or 0),
            dropped=int(raw.get("dropped") or 0),
            waiting=waiting,
        )

    def to_public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state.value,
            "categories": list(self.categories),
            "prefixes": list(self.prefixes),
            "areas": list(self.areas),
            "message": self.message,
            "expected_end": self.expected_end,
            "declared_by": self.declared_by,
            "declared_at": self.declared_at,
            "end_choice": self.end_choice,
            "release_per_hour": self.release_per_hour,
            "ended_by": self.ended_by,
            "ended_at": self.ended_at,
            "held": self.held,
            "released": self.released,
            "dropped": self.dropped,
            "waiting": self.waiting,
        }


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    result: str  # created | merged | duplicate
    id: str
