"""Agent first or customer first: which leg an attempt dials first, and what Asterisk's answers
mean in each mode. Chosen once from ``[dispatch] mode`` (``strategy_for``); the dispatcher
asks the strategy instead of testing the mode.

Agent first (the default): the Originate rings the agent (``agent_channel``); when they
answer, the dialplan in ``context`` dials the customer. An unanswered agent or a failed
Originate costs the customer nothing: the callback goes back and the agent rests. The
customer's DialEnd decides a retry; the customer's Hangup ends the talk.

    OriginateResponse Reason 4 (agent answered) -> DialBegin (customer ringing, ``context``)
    -> DialEnd ANSWER (talking) -> Hangup: talked long enough -> done, else retry

Customer first: the Originate dials the customer (``customer_channel``); when they answer,
the dialplan in ``agent_context`` rings the agent named by CALLBACK_AGENT. A customer who did
not answer uses an attempt; an agent who did not answer does not.

    OriginateResponse Reason 4 (customer answered, waiting) -> DialBegin (agent ringing,
    ``agent_context``) -> DialEnd ANSWER (talking) -> Hangup: done or retry

A customer who did not answer: with a Local ``customer_channel`` Asterisk 22 answers
``Reason: 0`` whether they were busy, congested or let it ring (tests/fixtures/
customer_first.jsonl); how it went is the DialStatus of Asterisk's own dial of the first
channel (a DialEnd without a Channel header), which comes just before or just after that
OriginateResponse. Reason 0 for a channel that was created waits a moment for it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

from ..ami.asterisk import UNKNOWN_ID, DialStatus, OriginateReason
from ..config import DispatchConfig
from ..queue.models import Stage
from .adoption import LiveCall
from .attempt import Attempt
from .outcome import Outcome, Reason


@dataclass(frozen=True, slots=True)
class Recheck:
    """Decide ``outcome`` after ``after`` seconds, unless the attempt was decided or its second
    leg began meanwhile (an event still on its way may tell better)."""

    after: float
    outcome: Outcome


class Strategy(ABC):
    name: str
    first_stage: Stage  # the stage while Asterisk dials the first leg

    def __init__(self, dispatch: DispatchConfig) -> None:
        self.dispatch = dispatch

    @property
    @abstractmethod
    def second_leg_context(self) -> str:
        """The dialplan context whose Dial is the second leg (a dial elsewhere, such as a Local
        agent's ;2 half ringing the phone, is not)."""

    @abstractmethod
    def first_leg(self, values: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
        """The Originate's fields for the leg Asterisk dials first, and variables it adds."""

    @abstractmethod
    def first_leg_answered(self, attempt: Attempt, uid: str) -> None:
        """OriginateResponse Reason 4: the first leg is up (``uid`` its channel)."""

    @abstractmethod
    def first_leg_failed(self, reason: OriginateReason | None, uid: str = "") -> Outcome | Recheck:
        """Any other OriginateResponse (None: a Reason we do not know); ``uid`` its Uniqueid:
        our ChannelId when the first channel was created, ``<unknown>`` when not."""

    def first_leg_dial_ended(self, status: str) -> Outcome | None:
        """Asterisk's own dial of the first channel ended unanswered (DialEnd without a
        Channel header): the outcome that means, or None when the OriginateResponse says."""
        return None

    @abstractmethod
    def second_leg_ringing(self, attempt: Attempt, uid: str) -> None:
        """DialBegin of the second leg (``uid`` the dialled channel)."""

    @abstractmethod
    def second_leg_failed(self, status: str) -> Outcome:
        """DialEnd of the second leg with any DialStatus but ANSWER."""

    def hung_up(self, attempt: Attempt, uid: str, now: float) -> Outcome | Recheck | None:
        """Hangup of a channel of the attempt, which is not decided yet."""
        talk = attempt.talk_time(now)
        if talk is not None:
            if talk >= self.dispatch.min_talk_seconds:
                return Outcome.done(talk=talk)
            return Outcome.retry(Reason.SHORT_CALL, talk=talk)
        return self._hung_up_before_talk(attempt, uid)

    @abstractmethod
    def _hung_up_before_talk(self, attempt: Attempt, uid: str) -> Outcome | Recheck | None: ...

    def pbx_stopped(self, attempt: Attempt, now: float) -> Outcome:
        """Asterisk shut down or restarted (its ``Shutdown`` event) with this attempt's call up:
        the call is cut. Talking long enough is done, as for any hang-up; a shorter talk, or a
        customer dialled but not talked to, was not reached and is retried by the retry policy;
        a call that never dialled the customer costs them nothing."""
        talk = attempt.talk_time(now)
        if talk is not None:
            if talk >= self.dispatch.min_talk_seconds:
                return Outcome.done(talk=talk)
            return Outcome.retry(Reason.SHORT_CALL, talk=talk)
        if self._customer_dialled(attempt):
            return Outcome.retry(Reason.PBX_RESTART)
        return Outcome.release(Reason.PBX_RESTART)

    @abstractmethod
    def _customer_dialled(self, attempt: Attempt) -> bool:
        """Had the customer's phone been dialled (an attempt of theirs used)?"""

    # ---- adopting a call a previous run placed (adoption.py)

    second_stage: Stage  # the stage while the second leg is dialled

    def adopted_stage(self, call: LiveCall) -> Stage:
        """The stage a call found up in Asterisk is at: its first leg ringing, the second leg
        being dialled (the first channel Up, in no bridge), or talking (bridged)."""
        if call.bridged:
            return Stage.TALKING
        return self.second_stage if call.up else self.first_stage

    def adopt(self, attempt: Attempt, call: LiveCall, since: float | None) -> None:
        """Drive a new attempt through the transitions the events of ``call`` would have made,
        up to the stage it is at; ``since``: when that stage began (Redis's record of it),
        None when unknown (then now: a talk is never counted longer than it surely was)."""
        stage = self.adopted_stage(call)
        attempt.adopted(call.plan(), self.first_stage)
        if stage is self.first_stage:
            return
        self._second_leg_adopted(attempt, call, since)
        if stage is Stage.TALKING:
            attempt.talking(at=since)

    def catch_up(self, attempt: Attempt, call: LiveCall, since: float) -> bool:
        """After the link was down: the call is further on than the attempt heard (its
        DialEnd ANSWER, say, was sent while nobody listened). Make the transitions the lost
        events would have made; ``since`` is the earliest they can have happened (when the
        link dropped: a talk is then never counted shorter than it was, so nobody reached is
        called again for a talk that looked too short). True when the attempt moved on."""
        order = (self.first_stage, self.second_stage, Stage.TALKING)
        have = order.index(attempt.stage) if attempt.stage in order else 0
        want = order.index(self.adopted_stage(call))
        if want <= have:
            return False
        if have == 0 or not attempt.second_leg_began:
            self._second_leg_adopted(attempt, call, since)
        if want == 2:
            attempt.talking(at=since)
        return True

    @abstractmethod
    def _second_leg_adopted(self, attempt: Attempt, call: LiveCall, since: float | None) -> None:
        """The first leg is up and the second is being dialled (or talks)."""


# What a failed dial of the customer is called in the attempt log.
CUSTOMER_DIAL_OUTCOMES = {
    DialStatus.BUSY: Reason.BUSY,
    DialStatus.NOANSWER: Reason.NO_ANSWER,
    DialStatus.CANCEL: Reason.NO_ANSWER,
    DialStatus.CONGESTION: Reason.CONGESTION,
    DialStatus.CHANUNAVAIL: Reason.UNAVAILABLE,
}

# What an OriginateResponse dialling the agent first means; any other Reason (0, or one we
# do not know) means the agent's channel could not be created (phone unregistered?): that
# agent rests so others are tried, and failures across agents raise the alarm.
AGENT_LEG_OUTCOMES = {
    OriginateReason.NO_ANSWER: Outcome.release(Reason.AGENT_NO_ANSWER, cooldown=True),
    OriginateReason.BUSY: Outcome.release(Reason.AGENT_BUSY),
    OriginateReason.HANGUP: Outcome.release(Reason.AGENT_REJECTED, cooldown=True),
    OriginateReason.CONGESTION: Outcome.release(
        Reason.AGENT_CONGESTION, cooldown=True, streak=True
    ),
}
AGENT_LEG_FAILED = Outcome.release(Reason.ORIGINATE_FAILED, cooldown=True, streak=True)

# What an OriginateResponse dialling the customer first means; anything else: unavailable,
# unless the dial of the customer's channel says more (CustomerFirst.first_leg_failed).
CUSTOMER_LEG_OUTCOMES = {
    OriginateReason.BUSY: Reason.BUSY,
    OriginateReason.CONGESTION: Reason.CONGESTION,
    OriginateReason.HANGUP: Reason.NO_ANSWER,
    OriginateReason.NO_ANSWER: Reason.NO_ANSWER,
}


class AgentFirst(Strategy):
    name = "agent_first"
    first_stage = Stage.RINGING_AGENT
    second_stage = Stage.RINGING_CUSTOMER

    @property
    def second_leg_context(self) -> str:
        return self.dispatch.context

    def first_leg(self, values: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
        d = self.dispatch
        fields = {
            "Channel": d.agent_channel.format_map(values),
            "Context": d.context,
            "Exten": values["exten"],
            "Priority": str(d.priority),
            "CallerID": d.caller_id.format_map(values),
            "Timeout": str(int(d.agent_ring_seconds * 1000)),
        }
        return fields, []

    def first_leg_answered(self, attempt: Attempt, uid: str) -> None:
        attempt.agent_answered(uid)

    def first_leg_failed(self, reason: OriginateReason | None, uid: str = "") -> Outcome:
        return AGENT_LEG_OUTCOMES.get(reason, AGENT_LEG_FAILED)

    def second_leg_ringing(self, attempt: Attempt, uid: str) -> None:
        attempt.customer_ringing(uid)

    def second_leg_failed(self, status: str) -> Outcome:
        return Outcome.retry(CUSTOMER_DIAL_OUTCOMES.get(status, Reason.FAILED_DIAL))

    def _hung_up_before_talk(self, attempt: Attempt, uid: str) -> Outcome | Recheck | None:
        if (
            attempt.first_leg(uid)
            and not attempt.second_leg_began
            and attempt.action_id
            and attempt.stage in (Stage.RINGING_AGENT, Stage.CLAIMED)
        ):
            # The agent leg ended before any customer dial: wait for the OriginateResponse
            # when it is still to come; if the agent answered and hung up, release.
            return Recheck(after=1.0, outcome=Outcome.release(Reason.AGENT_HUNG_UP))
        return None

    def _customer_dialled(self, attempt: Attempt) -> bool:
        return attempt.second_leg_began  # the customer's leg is the second

    def _second_leg_adopted(self, attempt: Attempt, call: LiveCall, since: float | None) -> None:
        attempt.agent_answered(call.first.uid)
        # The customer: the party bridged with the agent's call, or the one it is dialling.
        customer = call.bridged_with_first() or next(iter(call.others()), None)
        attempt.customer_ringing(customer.uid if customer else "")


class CustomerFirst(Strategy):
    name = "customer_first"
    first_stage = Stage.RINGING_CUSTOMER
    second_stage = Stage.RINGING_AGENT

    @property
    def second_leg_context(self) -> str:
        return self.dispatch.agent_context

    def first_leg(self, values: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
        d = self.dispatch
        fields = {
            "Channel": d.customer_channel.format_map(values),
            "Context": d.agent_context,
            "Exten": values["extension"],
            "Priority": "1",
            "CallerID": d.caller_id.format_map(values),
            "Timeout": str(int(d.customer_ring_seconds * 1000)),
        }
        return fields, [f"CALLBACK_AGENT={values['interface']}"]

    def first_leg_answered(self, attempt: Attempt, uid: str) -> None:
        attempt.customer_answered(uid)

    def first_leg_failed(self, reason: OriginateReason | None, uid: str = "") -> Outcome | Recheck:
        why = CUSTOMER_LEG_OUTCOMES.get(reason)
        if why is not None:
            return Outcome.retry(why)
        unavailable = Outcome.retry(Reason.UNAVAILABLE)
        if uid and uid != UNKNOWN_ID:
            # The customer's channel was created and dialled, so "0" hides busy, congestion or
            # no answer: the first leg's DialEnd tells (first_leg_dial_ended), and may still
            # be on its way. Only if it never comes is the customer "unavailable".
            return Recheck(after=1.0, outcome=unavailable)
        return unavailable

    def first_leg_dial_ended(self, status: str) -> Outcome:
        return Outcome.retry(CUSTOMER_DIAL_OUTCOMES.get(status, Reason.FAILED_DIAL))

    def second_leg_ringing(self, attempt: Attempt, uid: str) -> None:
        attempt.agent_ringing(uid)

    def second_leg_failed(self, status: str) -> Outcome:
        # The customer answered but the reserved agent did not: not the customer's fault.
        return Outcome.release(Reason.AGENT_NO_ANSWER, cooldown=True)

    def _hung_up_before_talk(self, attempt: Attempt, uid: str) -> Outcome | Recheck | None:
        if attempt.answered_at is not None:
            return Outcome.release(Reason.CUSTOMER_HUNG_UP_WAITING)
        return None

    def _customer_dialled(self, attempt: Attempt) -> bool:
        return bool(attempt.action_id) or attempt.fate_unknown  # the first leg is theirs

    def _second_leg_adopted(self, attempt: Attempt, call: LiveCall, since: float | None) -> None:
        attempt.customer_answered(call.first.uid, at=since)
        # The agent: bridged with the customer's call, or being rung by it; not the
        # customer's own trunk channel (bridged with the Local ;2 half).
        ours = call.ours
        our_bridges = {o.bridge for o in call.channels if o.uid in ours and o.bridge}
        ringing = [ch for ch in call.others() if ch.bridge not in our_bridges]
        agent = call.bridged_with_first() or next(iter(ringing), None)
        attempt.agent_ringing(agent.uid if agent else "")


STRATEGIES: dict[str, type[Strategy]] = {s.name: s for s in (AgentFirst, CustomerFirst)}


def strategy_for(dispatch: DispatchConfig) -> Strategy:
    return STRATEGIES[dispatch.mode](dispatch)
