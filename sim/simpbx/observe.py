"""What happened on the simulated PBX, in people's terms: the ground truth that AMI only hints at.

The PBX tells its observers (the ledger, the traffic model) as things happen; nothing here is
derived from the AMI events, so the benchmark can hold the dialer's conclusions against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from callback_dialer.ami.asterisk import DialStatus, OriginateReason


@dataclass(frozen=True, slots=True)
class CallStarted:
    call_id: str  # the inbound channel's Uniqueid (= its Linkedid)
    number: str  # the caller ID as the trunk delivered it
    tag: str  # the traffic model's subscriber id ("" for scripted calls)
    internal: bool
    at: float


@dataclass(frozen=True, slots=True)
class CallChose:
    call_id: str
    choice: str  # the IVR key, or "t" when the menu timed out
    category: str
    at: float


@dataclass(frozen=True, slots=True)
class CallQueued:
    call_id: str
    queue: str
    at: float


@dataclass(frozen=True, slots=True)
class CallConnected:
    call_id: str
    queue: str
    agent: str  # the member's interface
    at: float


@dataclass(frozen=True, slots=True)
class CallbackAsked:
    call_id: str
    reason: str  # KEYPRESS, TIMEOUT
    at: float


@dataclass(frozen=True, slots=True)
class CallbackOffered:
    """The dialer answered the offer's FastAGI request: the caller hears the ETA."""

    call_id: str
    why: str  # DOOR, KEYPRESS, TIMEOUT
    eta_minutes: int
    at: float


@dataclass(frozen=True, slots=True)
class CallEnded:
    call_id: str
    # served | abandoned (hung up in a queue) | ivr_hangup | callback_requested (* or timeout)
    outcome: str
    hung_up_by: str  # caller | agent | pbx
    at: float


@dataclass(frozen=True, slots=True)
class CustomerRinging:
    """A callback reached a customer's phone (or found it busy, unreachable)."""

    leg_id: str  # the customer channel's Uniqueid
    number: str  # as dialled on the trunk
    callback_id: str
    agent: str
    at: float


@dataclass(frozen=True, slots=True)
class CustomerLegEnded:
    leg_id: str
    number: str
    callback_id: str
    agent: str
    status: DialStatus
    rang_at: float
    answered_at: float | None
    ended_at: float


@dataclass(frozen=True, slots=True)
class OriginateDone:
    """An Originate's first leg is over (the agent, or the customer when customer first)."""

    action_id: str
    callback_id: str
    channel: str  # as requested
    reason: OriginateReason  # OriginateResponse Reason
    answered_at: float | None
    ended_at: float


Notice = (
    CallStarted
    | CallChose
    | CallbackOffered
    | CallQueued
    | CallConnected
    | CallbackAsked
    | CallEnded
    | CustomerRinging
    | CustomerLegEnded
    | OriginateDone
)


class Observer(Protocol):
    def notice(self, event: Notice) -> None: ...
