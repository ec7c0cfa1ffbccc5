"""Ground truth for the end-to-end benchmark: what really happened to every subscriber.

The ledger listens to the PBX's notices (observe.py), never to AMI, and answers as immutable
records: each subscriber's calls (when, chose what, served or not, hung up when), every
callback that reached their phone (ringing from when, answered or not, talked how long), and
the two things that must never happen: a callback to someone already served, and two calls to
one number at the same time.

A subscriber's need opens when one of their calls ends without reaching an agent and closes
when they are served: an inbound call connected to an agent, or a callback they answered and
talked on for at least ``served_talk`` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from callback_dialer.ami.asterisk import OriginateReason

from .observe import (
    CallbackAsked,
    CallChose,
    CallConnected,
    CallEnded,
    CallQueued,
    CallStarted,
    CustomerLegEnded,
    CustomerRinging,
    Notice,
    OriginateDone,
)


def number_key(number: str) -> str:
    """Two spellings of one subscriber's number share their last ten digits."""
    digits = "".join(c for c in number if c.isdigit())
    return digits[-10:] if len(digits) >= 10 else digits


@dataclass(frozen=True, slots=True)
class InboundRecord:
    call_id: str
    subscriber: str
    number: str  # the caller ID as presented
    internal: bool
    started_at: float
    choice: str = ""  # IVR key, "t" for no choice, "" for none (hung up in the IVR)
    category: str = ""
    queues: tuple[str, ...] = ()
    queued_at: float | None = None  # when they first joined a queue (their live wait began)
    connected_at: float | None = None
    agent: str = ""
    callback_asked: str = ""  # KEYPRESS / TIMEOUT
    outcome: str = ""  # served | abandoned | ivr_hangup | callback_requested
    ended_at: float | None = None

    @property
    def served(self) -> bool:
        return self.connected_at is not None

    @property
    def missed(self) -> bool:
        """Ended without reaching an agent (what the dialer should call back, if it can)."""
        return self.ended_at is not None and not self.served


@dataclass(frozen=True, slots=True)
class CallbackRecord:
    leg_id: str
    callback_id: str
    subscriber: str  # "" when the number belongs to nobody the ledger knows
    number: str  # as dialled on the trunk
    agent: str
    rang_at: float
    status: str = ""  # ANSWER BUSY NOANSWER CONGESTION CHANUNAVAIL CANCEL ("" while ringing)
    answered_at: float | None = None
    ended_at: float | None = None
    # Why this call was made, seen from the subscriber: open (they were waiting for it),
    # served (their need was already met), never_missed (they never missed a call).
    need: str = "open"
    # Another call to or from this subscriber was under way while this one rang or talked.
    concurrent: bool = False

    @property
    def talk(self) -> float:
        if self.answered_at is None or self.ended_at is None:
            return 0.0
        return self.ended_at - self.answered_at


@dataclass(frozen=True, slots=True)
class AgentLegRecord:
    """An Originate's first leg (agent first: the agent's phone)."""

    action_id: str
    callback_id: str
    channel: str
    reason: OriginateReason
    answered_at: float | None
    ended_at: float

    @property
    def agent_seconds(self) -> float:
        return self.ended_at - self.answered_at if self.answered_at is not None else 0.0


@dataclass(frozen=True, slots=True)
class SubscriberRecord:
    id: str
    number: str  # canonical digits (e.g. 79161234567)
    kind: str  # external | internal | withheld
    intent: str
    calls: tuple[InboundRecord, ...]
    callbacks: tuple[CallbackRecord, ...]
    first_missed_at: float | None  # end of their first call that missed
    served_at: float | None  # first time served after that (None: never)
    served_by: str  # inbound | callback | ""

    @property
    def missed(self) -> bool:
        return self.first_missed_at is not None

    def first_callback_after_miss(self) -> CallbackRecord | None:
        if self.first_missed_at is None:
            return None
        for cb in self.callbacks:
            if cb.rang_at >= self.first_missed_at:
                return cb
        return None


@dataclass(slots=True)
class _Sub:
    id: str
    number: str
    kind: str
    intent: str
    calls: list[str] = field(default_factory=list)
    legs: list[str] = field(default_factory=list)
    need_open_since: float | None = None
    first_missed_at: float | None = None
    served_at: float | None = None
    served_by: str = ""
    ever_missed: bool = False
    ever_served_after_miss: bool = False


class Ledger:
    """An observer of one SimPbx (``pbx.observers.append(ledger)``)."""

    def __init__(self, *, served_talk: float = 10.0) -> None:
        self.served_talk = served_talk
        self._subs: dict[str, _Sub] = {}
        self._by_number: dict[str, str] = {}
        self._calls: dict[str, InboundRecord] = {}
        self._legs: dict[str, CallbackRecord] = {}
        self._agent_legs: list[AgentLegRecord] = []
        self._anonymous = 0

    # ------------------------------------------------------------------ who is who

    def register(
        self, subscriber_id: str, number: str, *, kind: str = "external", intent: str = ""
    ) -> None:
        """A subscriber the traffic model will make call (``number``: canonical digits)."""
        self._subs[subscriber_id] = _Sub(subscriber_id, number, kind, intent)
        if kind == "external":
            self._by_number[number_key(number)] = subscriber_id

    def _subscriber_for(self, tag: str, number: str, internal: bool) -> _Sub:
        if tag and tag in self._subs:
            return self._subs[tag]
        key = number_key(number)
        if key in self._by_number and not internal:
            return self._subs[self._by_number[key]]
        # A scripted caller the traffic model did not announce: known by number from now on.
        sid = tag or f"n:{key or 'anonymous'}"
        if not key:
            self._anonymous += 1
            sid = f"anonymous-{self._anonymous}"
        kind = "internal" if internal else ("external" if len(key) >= 10 else "withheld")
        self.register(sid, key, kind=kind)
        return self._subs[sid]

    # ------------------------------------------------------------------ notices

    def notice(self, event: Notice) -> None:
        handler = getattr(self, "_on_" + type(event).__name__, None)
        if handler is not None:
            handler(event)

    def _update(self, call_id: str, **changes: object) -> InboundRecord | None:
        record = self._calls.get(call_id)
        if record is None:
            return None
        new = replace(record, **changes)  # type: ignore[arg-type]
        self._calls[call_id] = new
        return new

    def _on_CallStarted(self, e: CallStarted) -> None:
        sub = self._subscriber_for(e.tag, e.number, e.internal)
        self._calls[e.call_id] = InboundRecord(
            call_id=e.call_id,
            subscriber=sub.id,
            number=e.number,
            internal=e.internal,
            started_at=e.at,
        )
        sub.calls.append(e.call_id)

    def _on_CallChose(self, e: CallChose) -> None:
        self._update(e.call_id, choice=e.choice, category=e.category)

    def _on_CallQueued(self, e: CallQueued) -> None:
        record = self._calls.get(e.call_id)
        if record is not None:
            first = record.queued_at if record.queued_at is not None else e.at
            self._update(e.call_id, queues=(*record.queues, e.queue), queued_at=first)

    def _on_CallConnected(self, e: CallConnected) -> None:
        record = self._update(e.call_id, connected_at=e.at, agent=e.agent)
        if record is not None:
            self._served(self._subs[record.subscriber], e.at, "inbound")

    def _on_CallbackAsked(self, e: CallbackAsked) -> None:
        self._update(e.call_id, callback_asked=e.reason)

    def _on_CallEnded(self, e: CallEnded) -> None:
        record = self._update(e.call_id, outcome=e.outcome, ended_at=e.at)
        if record is None or record.served:
            return
        sub = self._subs[record.subscriber]
        sub.ever_missed = True
        if sub.need_open_since is None:
            sub.need_open_since = e.at
        if sub.first_missed_at is None:
            sub.first_missed_at = e.at

    def _served(self, sub: _Sub, at: float, how: str) -> None:
        if sub.need_open_since is not None:
            sub.ever_served_after_miss = True
        sub.need_open_since = None
        if sub.first_missed_at is not None and sub.served_at is None:
            sub.served_at, sub.served_by = at, how

    def _on_CustomerRinging(self, e: CustomerRinging) -> None:
        key = number_key(e.number)
        sid = self._by_number.get(key, "")
        need = "open"
        if sid:
            sub = self._subs[sid]
            if sub.need_open_since is None:
                need = "served" if sub.ever_missed else "never_missed"
            sub.legs.append(e.leg_id)
        self._legs[e.leg_id] = CallbackRecord(
            leg_id=e.leg_id,
            callback_id=e.callback_id,
            subscriber=sid,
            number=e.number,
            agent=e.agent,
            rang_at=e.at,
            need=need,
            concurrent=bool(sid) and self._busy(sid, e.at, exclude=e.leg_id),
        )

    def _on_CustomerLegEnded(self, e: CustomerLegEnded) -> None:
        record = self._legs.get(e.leg_id)
        if record is None:
            return
        self._legs[e.leg_id] = replace(
            record, status=e.status, answered_at=e.answered_at, ended_at=e.ended_at
        )
        if (
            record.subscriber
            and e.answered_at is not None
            and e.ended_at - e.answered_at >= self.served_talk
        ):
            self._served(self._subs[record.subscriber], e.ended_at, "callback")

    def _on_OriginateDone(self, e: OriginateDone) -> None:
        self._agent_legs.append(
            AgentLegRecord(
                action_id=e.action_id,
                callback_id=e.callback_id,
                channel=e.channel,
                reason=e.reason,
                answered_at=e.answered_at,
                ended_at=e.ended_at,
            )
        )

    def _busy(self, sid: str, at: float, *, exclude: str) -> bool:
        """Was another call of this subscriber's under way at ``at``?"""
        sub = self._subs[sid]
        for call_id in sub.calls:
            c = self._calls[call_id]
            if c.started_at <= at and (c.ended_at is None or c.ended_at > at):
                return True
        for leg_id in sub.legs:
            if leg_id == exclude:
                continue
            leg = self._legs[leg_id]
            if leg.rang_at <= at and (leg.ended_at is None or leg.ended_at > at):
                return True
        return False

    def on_the_phone(self, subscriber_id: str, at: float) -> bool:
        """Is this subscriber's phone taken at ``at`` (an inbound call or a callback)?"""
        return subscriber_id in self._subs and self._busy(subscriber_id, at, exclude="")

    def on_inbound_call(self, subscriber_id: str) -> bool:
        """Is this subscriber on an inbound call right now (their phone is busy)?"""
        sub = self._subs.get(subscriber_id)
        return sub is not None and any(self._calls[c].ended_at is None for c in sub.calls)

    def need_open(self, subscriber_id: str) -> bool:
        sub = self._subs.get(subscriber_id)
        return sub is not None and sub.need_open_since is not None

    def subscriber_for_number(self, number: str) -> str:
        return self._by_number.get(number_key(number), "")

    # ------------------------------------------------------------------ answers

    def inbound(self) -> tuple[InboundRecord, ...]:
        return tuple(sorted(self._calls.values(), key=lambda r: (r.started_at, r.call_id)))

    def callbacks(self) -> tuple[CallbackRecord, ...]:
        return tuple(
            self._finish_concurrency(
                sorted(self._legs.values(), key=lambda r: (r.rang_at, r.leg_id))
            )
        )

    def _finish_concurrency(self, legs: list[CallbackRecord]) -> list[CallbackRecord]:
        # A later call may overlap an earlier one; mark both.
        out = []
        for leg in legs:
            concurrent = leg.concurrent
            if not concurrent and leg.subscriber:
                end = leg.ended_at if leg.ended_at is not None else float("inf")
                sub = self._subs[leg.subscriber]
                for call_id in sub.calls:
                    c = self._calls[call_id]
                    if leg.rang_at < c.started_at < end:
                        concurrent = True
                for other_id in sub.legs:
                    other = self._legs[other_id]
                    if other.leg_id != leg.leg_id and leg.rang_at < other.rang_at < end:
                        concurrent = True
            out.append(replace(leg, concurrent=concurrent) if concurrent != leg.concurrent else leg)
        return out

    def agent_legs(self) -> tuple[AgentLegRecord, ...]:
        return tuple(self._agent_legs)

    def subscribers(self) -> tuple[SubscriberRecord, ...]:
        legs = {cb.leg_id: cb for cb in self.callbacks()}
        out = []
        for sub in self._subs.values():
            out.append(
                SubscriberRecord(
                    id=sub.id,
                    number=sub.number,
                    kind=sub.kind,
                    intent=sub.intent,
                    calls=tuple(self._calls[c] for c in sub.calls),
                    callbacks=tuple(legs[leg] for leg in sub.legs),
                    first_missed_at=sub.first_missed_at,
                    served_at=sub.served_at,
                    served_by=sub.served_by,
                )
            )
        return tuple(out)

    def subscriber(self, subscriber_id: str) -> SubscriberRecord:
        for record in self.subscribers():
            if record.id == subscriber_id:
                return record
        raise KeyError(subscriber_id)

    def callbacks_to_served(self) -> tuple[CallbackRecord, ...]:
        """Callbacks that reached someone whose need was already met (must be none)."""
        return tuple(cb for cb in self.callbacks() if cb.need != "open")

    def concurrent_calls(self) -> tuple[CallbackRecord, ...]:
        """Callbacks that overlapped another call of the same subscriber (must be none)."""
        return tuple(cb for cb in self.callbacks() if cb.concurrent)

    def summary(self) -> dict[str, float]:
        calls = self.inbound()
        external = [c for c in calls if not c.internal]
        subs = [s for s in self.subscribers() if s.kind == "external"]
        missed_subs = [s for s in subs if s.missed]
        return {
            "calls": len(calls),
            "external_calls": len(external),
            "unanswered_calls": sum(1 for c in external if c.missed),
            "subscribers": len(subs),
            "subscribers_missed": len(missed_subs),
            "served_after_miss": sum(1 for s in missed_subs if s.served_at is not None),
            "served_by_callback": sum(1 for s in missed_subs if s.served_by == "callback"),
            "callbacks": len(self._legs),
            "callbacks_to_served": len(self.callbacks_to_served()),
            "concurrent_calls": len(self.concurrent_calls()),
            "agent_seconds_on_callbacks": sum(leg.agent_seconds for leg in self._agent_legs),
        }
