"""One callback attempt: its state and the only code that changes it.

An attempt is born when a claim succeeds and lives until its outcome is stored. Its stage
moves only forward through named transitions, each one what Asterisk told us or what we did:

    claimed -> planned -> dialling(first stage) -> originated
            -> agent_answered | customer_answered      (OriginateResponse Reason 4)
            -> customer_ringing | agent_ringing        (DialBegin of the second leg)
            -> talking                                 (DialEnd ANSWER)
            -> finish(outcome) | abort(reason)         (the first decision stands)

Which of the paired transitions a mode takes is the strategy's business (strategies.py); the
dispatcher routes AMI events here by the attempt's channels and ActionID (``Attempts``), and
the status page's "in progress" list is ``view()`` of each. Nothing outside this module
assigns an attempt's fields.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from typing import Any

from ..ami.asterisk import CALLBACK_ID_VAR, UNKNOWN_ID
from ..ami.frames import AmiMessage
from ..clock import Clock, wait_event
from ..queue.models import Claim, Stage
from .origination import OriginatePlan
from .outcome import Outcome, Reason


class Attempt:
    """One callback attempt being made."""

    def __init__(self, book: Attempts, claim: Claim, agent: str, trunk: str) -> None:
        self._book = book
        self._clock = book.clock
        cb = claim.callback
        self.claim = claim
        self.agent = agent
        self.number = cb.number
        self.category = cb.category
        self.trunk = trunk
        self.started_at = self._clock.now()
        self._stage = Stage.CLAIMED
        self._stage_since = self.started_at
        self._plan: OriginatePlan | None = None
        self._action_id = ""
        self._sent_at = 0.0
        self._channel_ids: set[str] = set()  # ours: the Originate's channels, its answered leg
        self._customer_uid = ""  # agent first: the customer's channel (DialBegin)
        self._agent_uid = ""  # customer first: the agent's channel (DialBegin)
        self._answered_at: float | None = None
        self._outcome: Outcome | None = None
        self._aborted = ""
        self._fate_unknown = False
        self._lost_at: float | None = None
        self._adopted = False
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ reading

    @property
    def callback_id(self) -> str:
        return self.claim.callback.id

    @property
    def stage(self) -> Stage:
        return self._stage

    @property
    def stage_since(self) -> float:
        return self._stage_since

    @property
    def plan(self) -> OriginatePlan | None:
        return self._plan

    @property
    def action_id(self) -> str:
        """The Originate's ActionID once Asterisk acknowledged it ("" before)."""
        return self._action_id

    @property
    def sent_at(self) -> float:
        """``time.perf_counter()`` when the Originate was written."""
        return self._sent_at

    @property
    def channel_ids(self) -> frozenset[str]:
        return frozenset(self._channel_ids)

    @property
    def customer_uid(self) -> str:
        return self._customer_uid

    @property
    def answered_at(self) -> float | None:
        """When the talk (or, customer first, the customer's wait for an agent) began."""
        return self._answered_at

    @property
    def outcome(self) -> Outcome | None:
        return self._outcome

    @property
    def aborted(self) -> str:
        """Why the attempt was abandoned ("" when it was not)."""
        return self._aborted

    @property
    def decided(self) -> bool:
        return self._outcome is not None or bool(self._aborted)

    @property
    def adopted_call(self) -> bool:
        """Placed by a previous run or another dialer; this one took it over."""
        return self._adopted

    @property
    def fate_unknown(self) -> bool:
        """The link dropped while this attempt was out: some of its events may be lost."""
        return self._fate_unknown

    @property
    def lost_at(self) -> float | None:
        return self._lost_at

    @property
    def first_leg_pending(self) -> bool:
        """Still waiting for the first leg: only such an attempt may time out; a talking
        customer keeps the claim for as long as the call lasts."""
        return self._answered_at is None and not self._customer_uid

    @property
    def second_leg_began(self) -> bool:
        return bool(self._customer_uid or self._agent_uid)

    def first_leg(self, uid: str) -> bool:
        """Is ``uid`` the channel the Originate created first?"""
        return self._plan is not None and uid == self._plan.channel_id

    def known_channels(self) -> set[str]:
        """Channels whose existence in Asterisk means this attempt is still under way."""
        return self._channel_ids | ({self._customer_uid} if self._customer_uid else set())

    def talk_time(self, now: float) -> float | None:
        """Seconds talked so far while talking, else None."""
        if self._stage is Stage.TALKING and self._answered_at is not None:
            return now - self._answered_at
        return None

    def view(self, now: float) -> dict[str, Any]:
        """This attempt as the status page shows it under "in progress"."""
        return {
            "id": self.callback_id,
            "agent": self.agent,
            "number": self.number,
            "category": self.category,
            "stage": self._stage.value,
            "since": self._stage_since,
            "started_at": self.started_at,
            "duration": now - self.started_at,
            "adopted": self._adopted,
        }

    async def wait_for_change(self, seconds: float) -> None:
        """Until a transition happens or ``seconds`` of clock time pass."""
        self._changed.clear()
        await wait_event(self._changed, self._clock, seconds)

    # ------------------------------------------------------------------ transitions

    def planned(self, plan: OriginatePlan) -> None:
        """The Originate is built: its channels and ActionID name this attempt from now on."""
        self._plan = plan
        for channel_id in (plan.channel_id, plan.other_channel_id):
            if channel_id:
                self._add_channel(channel_id)
        if plan.action_id:
            self._book._link_action(plan.action_id, self)

    def dialling(self, stage: Stage) -> None:
        """The Originate is being written now; ``stage`` is the mode's first."""
        self._set_stage(stage)
        self._sent_at = time.perf_counter()

    def originated(self, action_id: str) -> None:
        """Asterisk accepted the Originate."""
        self._action_id = action_id

    def originate_unacknowledged(self) -> None:
        """The link died before Asterisk said whether it took the Originate."""
        self._fate_unknown = True
        self._lost_at = self._lost_at or self._clock.now()

    def agent_answered(self, uid: str) -> None:
        """Agent first: the agent picked up; the dialplan dials the customer next."""
        self._leg_up(uid)

    def customer_answered(self, uid: str, *, at: float | None = None) -> None:
        """Customer first: the customer picked up and now waits while an agent is rung
        (``at``: when, if it was before now: an adopted call)."""
        self._leg_up(uid)
        self._answered_at = self._clock.now() if at is None else at
        self._set_stage(Stage.RINGING_AGENT)

    def customer_ringing(self, uid: str) -> None:
        """Agent first: the agent's call dials the customer."""
        if uid:
            self._customer_uid = uid
            self._book._link(uid, self)
        self._set_stage(Stage.RINGING_CUSTOMER)

    def agent_ringing(self, uid: str) -> None:
        """Customer first: the customer's call rings the agent."""
        if uid:
            self._agent_uid = uid
            self._book._link(uid, self)
        self._set_stage(Stage.RINGING_AGENT)

    def talking(self, *, at: float | None = None) -> None:
        """Both legs are up: the talk time counts from now (or from ``at``, when it began
        before this attempt was following the call: an adopted call)."""
        self._answered_at = self._clock.now() if at is None else at
        self._set_stage(Stage.TALKING)

    def adopted(self, plan: OriginatePlan, stage: Stage) -> None:
        """A call a previous run (or another dialer) placed, found up in Asterisk: the
        Originate's channels and ActionID name this attempt from now on, as if it had sent it.
        The strategy then drives the attempt to the stage the call is at."""
        self._adopted = True
        self.planned(plan)
        self._set_stage(stage)
        self._sent_at = time.perf_counter()
        if plan.action_id:
            self.originated(plan.action_id)

    def link_lost(self) -> None:
        """The AMI link dropped: an attempt already out may miss its events meanwhile."""
        if self._action_id or self._fate_unknown:
            self._fate_unknown = True
            self._lost_at = self._lost_at or self._clock.now()

    def reconnected(self) -> None:
        """The link is back: an attempt that lost sight of its call looks at once."""
        if self._fate_unknown:
            self._changed.set()

    def still_up(self) -> None:
        """Asterisk shows a channel of this attempt: its events tell the rest."""
        self._fate_unknown = False

    def finish(self, outcome: Outcome) -> bool:
        """Decide how the attempt ended; False when it was decided already."""
        if self.decided:
            return False
        self._outcome = outcome
        self._changed.set()
        return True

    def abort(self, reason: str) -> bool:
        """Abandon the attempt (the callback closed elsewhere, the claim lost, the dialer
        stopping): its call is hung up. False when it was decided already."""
        if self.decided:
            return False
        self._aborted = reason
        self._changed.set()
        return True

    def hand_over(self) -> bool:
        """Another dialer leads now: let the attempt go without touching its call (the new
        leader adopts it) or its callback (the queue refuses our fence anyway). False when it
        was decided already."""
        return self.abort(Reason.NOT_LEADER)

    @property
    def handed_over(self) -> bool:
        return self._aborted == Reason.NOT_LEADER

    # ------------------------------------------------------------------ internals

    def _leg_up(self, uid: str) -> None:
        self._fate_unknown = False
        if uid and uid != UNKNOWN_ID:
            self._add_channel(uid)
        self._changed.set()

    def _add_channel(self, uid: str) -> None:
        self._channel_ids.add(uid)
        self._book._link(uid, self)

    def _set_stage(self, stage: Stage) -> None:
        if self._stage != stage:
            self._stage = stage
            self._stage_since = self._clock.now()

    def _links(self) -> Iterator[str]:
        yield from self._channel_ids
        for uid in (self._customer_uid, self._agent_uid):
            if uid:
                yield uid


class Attempts(Mapping[str, Attempt]):
    """The attempts in flight, by callback id, and by what AMI events name them."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._by_id: dict[str, Attempt] = {}
        self._by_action: dict[str, Attempt] = {}
        self._by_channel: dict[str, Attempt] = {}

    def open(self, claim: Claim, agent: str, trunk: str) -> Attempt:
        attempt = Attempt(self, claim, agent, trunk)
        self._by_id[attempt.callback_id] = attempt
        return attempt

    def close(self, attempt: Attempt) -> None:
        self._by_id.pop(attempt.callback_id, None)
        if attempt.plan is not None:
            self._by_action.pop(attempt.plan.action_id, None)
        for uid in attempt._links():
            self._by_channel.pop(uid, None)

    def by_action(self, action_id: str) -> Attempt | None:
        return self._by_action.get(action_id)

    def by_channel(self, uid: str) -> Attempt | None:
        return self._by_channel.get(uid)

    def for_message(self, message: AmiMessage) -> Attempt | None:
        """The attempt an event is about: by its channels, else by its CALLBACK_ID."""
        fields = message.fields
        for key in ("Uniqueid", "DestUniqueid"):
            attempt = self._by_channel.get(fields.get(key, ""))
            if attempt is not None:
                return attempt
        if "ChanVariable" in fields:
            callback_id = message.chanvars().get(CALLBACK_ID_VAR)
            if callback_id:
                return self._by_id.get(callback_id)
        return None

    # Called by Attempt's transitions only: an attempt names its channels as it learns them.
    def _link(self, uid: str, attempt: Attempt) -> None:
        self._by_channel[uid] = attempt

    def _link_action(self, action_id: str, attempt: Attempt) -> None:
        self._by_action[action_id] = attempt

    def __getitem__(self, callback_id: str) -> Attempt:
        return self._by_id[callback_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)
