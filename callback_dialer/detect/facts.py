"""What the call tracker concludes: immutable facts, compared with ``==`` in tests."""

from __future__ import annotations

from dataclasses import dataclass

from ..queue.models import Source


@dataclass(frozen=True, slots=True)
class MissedCall:
    """An inbound call ended without reaching a person: somebody to call back."""

    call_id: str  # the call's Linkedid
    number: str  # E.164, validated
    name: str  # display name, cleaned; may be ""
    category: str
    source: Source
    started_at: float
    ended_at: float
    queue: str = ""  # the last queue the caller waited in
    # The caller ID (E.164) when the caller typed another number to be called back on
    # (``number``); "" when the callback goes to the caller ID itself.
    caller_id: str = ""
    # When the IVR's offer promised to call back by (epoch; 0: no promise was made).
    promised_by: float = 0.0


@dataclass(frozen=True, slots=True)
class Served:
    """This number talked to a person: its open callback is no longer needed."""

    number: str  # E.164
    how: str  # served_inbound | served_outbound
    call_id: str
    at: float
    agent: str = ""


@dataclass(frozen=True, slots=True)
class SelfServed:
    """The IVR served this caller itself (CALLBACK_SKIP or a [detection] self_service rule):
    no callback is owed; counted by ``reason`` for the page, metrics and the daily report."""

    call_id: str
    number: str  # E.164, or "" when the caller ID is not a usable number
    category: str
    reason: str  # a-z0-9_, e.g. "balance"
    started_at: float
    ended_at: float


@dataclass(frozen=True, slots=True)
class NotQueued:
    """A call that is not called back, and why (logged and counted, never queued)."""

    call_id: str
    reason: str  # a phone.Rejection value, "too_short" or "fate_unknown"
    at: float


Fact = MissedCall | Served | SelfServed | NotQueued
