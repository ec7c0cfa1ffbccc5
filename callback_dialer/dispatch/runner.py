"""One attempt's call, from the last check before dialling to its outcome.

The dispatcher claims and settles; this places the call and follows it. The order matters:

    plan the Originate (validated values only) -> renew the claim into the first stage (a
    callback closed meanwhile is never dialled) -> the agent still ours -> Originate, once:
    an Originate whose answer was lost with the link is reconciled with Asterisk's channels
    after the reconnect, never sent again -> wait for the attempt's decision, renewing the
    claim every third of its lease -> hang the call up if the attempt was abandoned.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from ..ami.asterisk import CALLBACK_ID_VAR
from ..ami.client import AmiActionFailed, AmiClient, AmiError, AmiNotConnected, OriginateFateUnknown
from ..ami.frames import AmiMessage
from ..clock import Clock
from ..config import Config
from ..detect.agents import AgentBook
from ..detect.tracker import CallTracker
from ..logs import get_logger
from ..phone import NumberPolicy
from ..queue.store import CallbackQueue, NotLeader, QueueUnavailable
from .adoption import live_calls
from .attempt import Attempt
from .origination import OriginateInputError, plan_originate
from .outcome import Outcome, Reason
from .strategies import Strategy
from .whisper import whisper_facts

log = get_logger(__name__)


class AttemptRunner:
    def __init__(
        self,
        config: Config,
        clock: Clock,
        queue: CallbackQueue,
        agents: AgentBook,
        tracker: CallTracker,
        ami: AmiClient,
        strategy: Strategy,
        *,
        on_dialling: Callable[[Attempt], None],
        may_dial: Callable[[], bool] = lambda: True,
    ) -> None:
        self.config = config
        self.dispatch = config.dispatch
        self.clock = clock
        self.queue = queue
        self.agents = agents
        self.tracker = tracker
        self.ami = ami
        self.strategy = strategy
        self.numbers = NumberPolicy(config.phone)
        # Told the moment the Originate is written (the dispatcher times its decisions).
        self.on_dialling = on_dialling
        # Asked the instant before the Originate: do we surely still hold the leader lease?
        self.may_dial = may_dial

    async def call(self, attempt: Attempt, log_: Any) -> Outcome | None:
        """Place the call and follow it: its outcome, or None when the callback was closed
        before anything was dialled (nothing to store). Raises QueueUnavailable only before
        the Originate: then the lease runs out and the callback comes back."""
        cb = attempt.claim.callback
        try:
            number = self.numbers.parse_e164(cb.number)
        except ValueError:
            return _decide(attempt, Outcome.fail(Reason.INVALID_NUMBER))
        try:
            plan = plan_originate(
                self.config,
                self.strategy,
                callback_id=cb.id,
                category=cb.category,
                number=number,
                interface=attempt.agent,
                trunk=attempt.trunk,
                attempt_no=cb.attempts + 1,
                whisper=whisper_facts(
                    self.config.whisper, self.strategy.name, cb, attempt.agent, self.clock.now()
                ),
                claim=attempt.claim.token,
            )
        except OriginateInputError as exc:
            log_.error("originate refused by our own checks", error=str(exc))
            return _decide(attempt, Outcome.release(Reason.ORIGINATE_INVALID, streak=True))
        attempt.planned(plan)
        self.tracker.mark_ours(*attempt.channel_ids)
        first_stage = self.strategy.first_stage
        # The last check before dialling: a callback closed meanwhile (the customer got
        # through, a supervisor cancelled) is never dialled.
        try:
            renewed = await self.queue.renew(attempt.claim, stage=first_stage, agent=attempt.agent)
        except NotLeader:
            log_.info("another dialer leads now; not dialled")
            attempt.hand_over()
            return None
        if not renewed:
            log_.info("callback closed while being claimed; not dialled")
            return None
        if attempt.aborted:
            return None
        if not self.agents.still_free_for(attempt.agent, cb.id):
            # A queue call took the agent in this very instant: back, unharmed.
            return _decide(attempt, Outcome.release(Reason.AGENT_BUSY))
        if not self.may_dial():
            # The leader lease may have run out while we waited for that renewal (a frozen
            # process, a slow Redis): another dialer may be dispatching by now. Read fresh,
            # with nothing awaited between this and writing the Originate.
            log_.warning("leader lease not surely ours any more; not dialled")
            attempt.hand_over()
            return None
        attempt.dialling(first_stage)
        self.on_dialling(attempt)
        try:
            attempt.originated(await self.ami.originate(plan.fields))
        except AmiNotConnected:
            return _decide(attempt, Outcome.release(Reason.AMI_DOWN))
        except AmiActionFailed as exc:
            log_.warning("Asterisk refused the originate", error=str(exc))
            return _decide(attempt, Outcome.release(Reason.ORIGINATE_REFUSED, streak=True))
        except OriginateFateUnknown:
            attempt.originate_unacknowledged()
            log_.warning(
                "link lost with an originate unacknowledged; will reconcile, never re-send"
            )
        log_.info("callback dialling", stage=first_stage.value, action=plan.action_id)
        return await self._await_outcome(attempt)

    async def follow(self, attempt: Attempt) -> Outcome:
        """An adopted call (placed by a previous run or another dialer, found up in
        Asterisk): follow it to its end exactly as one this dialer placed."""
        return await self._await_outcome(attempt)

    async def _await_outcome(self, attempt: Attempt) -> Outcome:
        renew_every = max(1.0, self.config.queue.lease_seconds / 3)
        deadline = self.clock.now() + self.dispatch.originate_timeout
        last_renew = self.clock.now()
        while not attempt.decided:
            await attempt.wait_for_change(renew_every)
            now = self.clock.now()
            if attempt.decided:
                break
            if now - last_renew >= renew_every:
                # Renewing every third of the lease leaves room for a renewal lost to a Redis
                # blip; the call itself goes on regardless.
                try:
                    if not await self.queue.renew(attempt.claim):
                        attempt.abort(Reason.CLAIM_LOST)
                        break
                    last_renew = now
                except NotLeader:
                    attempt.hand_over()  # the new leader follows this call now
                    break
                except QueueUnavailable as exc:
                    log.warning(
                        "could not renew a claim; will try again",
                        error=str(exc),
                        callback=attempt.callback_id,
                    )
            if attempt.fate_unknown and self.ami.authenticated:
                outcome = await self._reconcile(attempt)
                if outcome is not None:
                    attempt.finish(outcome)
                    break
            if now >= deadline and attempt.first_leg_pending:
                attempt.finish(
                    Outcome.release(
                        Reason.NO_OUTCOME, not_before=now + self.config.retry.delay_after(1)
                    )
                )
        if attempt.aborted:
            if not attempt.handed_over:
                await self._hang_up(attempt)
            if attempt.aborted == Reason.DIALER_STOPPED:
                return Outcome.release(
                    Reason.DIALER_STOPPED,
                    not_before=self.clock.now() + self.config.retry.delay_after(1),
                )
            return Outcome.abort(attempt.aborted)
        assert attempt.outcome is not None
        return attempt.outcome

    async def _reconcile(self, attempt: Attempt) -> Outcome | None:
        """After a reconnect: does a channel of this attempt exist? Never guess by dialling."""
        try:
            channels = await self.channels_up()
        except AmiError:
            return None
        known = attempt.known_channels()
        alive = any(
            m.get("Uniqueid") in known
            or f"{CALLBACK_ID_VAR}={attempt.callback_id}" in m.getall("Variable")
            for m in channels
        )
        if alive:
            call = live_calls(channels).get(attempt.callback_id)
            if call is not None and self.strategy.catch_up(
                attempt, call, attempt.lost_at or self.clock.now()
            ):
                log.warning(
                    "the call moved on while the link was down",
                    callback=attempt.callback_id,
                    stage=attempt.stage.value,
                )
            attempt.still_up()
            return None
        lost_at = attempt.lost_at or self.clock.now()
        answered_at = attempt.answered_at
        if answered_at is not None and lost_at - answered_at >= self.dispatch.min_talk_seconds:
            # They talked long enough before we lost sight of the call.
            return Outcome.done(talk=lost_at - answered_at)
        # Gone, or never created: we cannot know if the customer was reached. Wait before
        # trying again, so a call that did happen is not repeated at once.
        return Outcome.release(
            Reason.OUTCOME_UNKNOWN,
            not_before=self.clock.now() + self.config.retry.delay_after(1),
        )

    async def _hang_up(self, attempt: Attempt) -> None:
        for channel_id in sorted(attempt.channel_ids):
            with contextlib.suppress(AmiError):
                await self.ami.send_action({"Action": "Hangup", "Channel": channel_id}, timeout=2)

    async def channels_up(self) -> list[AmiMessage]:
        """Asterisk's channels now, each with its CALLBACK_ID variable (AMI ``Status``)."""
        items = await self.ami.send_list({"Action": "Status", "Variables": CALLBACK_ID_VAR})
        return [m for m in items if m.event == "Status"]


def _decide(attempt: Attempt, outcome: Outcome) -> Outcome:
    """An outcome reached before any event of the call: recorded on the attempt too."""
    attempt.finish(outcome)
    return outcome
