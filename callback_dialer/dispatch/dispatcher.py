"""Turning the queue into calls: a free agent and the best callback they may serve, at once.

Decisions are event-driven: an agent becoming free, a callback becoming ready, an attempt
ending all ``kick`` the dispatcher, which decides immediately; a slow tick and timers for the
next wrap-up end or due callback are the safety net. For each free agent (longest idle first)
it claims the best ready callback among the categories that agent serves, within the limits
(in progress overall, per trunk), never for a number already on a call with us, and only in
calling hours.

One attempt, agent first (the default):

    claim -> renew (ringing_agent; a callback closed meanwhile is never dialled)
          -> Originate to the agent (Async, pre-assigned ChannelId, once, never re-sent)
          -> OriginateResponse: Reason 4 the agent answered; the dialplan dials the customer
          -> DialBegin/DialEnd from our channel (CALLBACK_ID) to the customer: ANSWER, BUSY, ...
          -> the customer's Hangup: talk time -> done, or a short call -> retry

The agent not answering, a queue call grabbing the agent in the same instant, an Originate that
fails outright: the callback goes straight back, no customer attempt used; the agent who let it
ring out rests; several outright failures in a row pause dispatching with an alarm.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..ami.asterisk import CALLBACK_ID_VAR, UNKNOWN_ID, DialStatus, OriginateReason
from ..ami.client import AmiActionFailed, AmiClient, AmiError, AmiNotConnected, OriginateFateUnknown
from ..ami.frames import AmiMessage
from ..clock import Clock, wait_event
from ..config import Config
from ..detect.agents import AgentBook
from ..detect.tracker import CallTracker
from ..hours import CallingHours
from ..logs import get_logger
from ..metrics import Metrics
from ..phone import NumberPolicy
from ..queue.models import Attempt as AttemptRecord
from ..queue.models import Callback, Claim, DispatchControl, Stage
from ..queue.store import CallbackQueue, QueueUnavailable
from ..tasks import TaskSet
from .origination import OriginateInputError, OriginatePlan, plan_originate
from .outcome import STREAK_NEUTRAL, Outcome, OutcomeKind, Reason

log = get_logger(__name__)

# What a failed dial of the customer (agent first) is called in the attempt log.
CUSTOMER_DIAL_OUTCOMES = {
    DialStatus.BUSY: Reason.BUSY,
    DialStatus.NOANSWER: Reason.NO_ANSWER,
    DialStatus.CANCEL: Reason.NO_ANSWER,
    DialStatus.CONGESTION: Reason.CONGESTION,
    DialStatus.CHANUNAVAIL: Reason.UNAVAILABLE,
}


@dataclass
class InFlight:
    """One callback attempt being made; what the status page shows as 'in progress'."""

    claim: Claim
    agent: str
    number: str
    category: str
    trunk: str
    started_at: float
    plan: OriginatePlan | None = None
    stage: Stage = Stage.CLAIMED
    stage_since: float = 0.0
    action_id: str = ""
    sent_at: float = 0.0  # perf_counter when the Originate was written
    channel_ids: set[str] = field(default_factory=set)
    customer_uid: str = ""
    answered_at: float | None = None
    outcome: Outcome | None = None
    fate_unknown: bool = False  # the link dropped: events of this attempt may be lost
    lost_at: float | None = None
    aborted: str = ""
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[Any] | None = None

    @property
    def callback_id(self) -> str:
        return self.claim.callback.id


class Dispatcher:
    HANDLERS = {
        "OriginateResponse": "on_originate_response",
        "DialBegin": "on_dial_begin",
        "DialEnd": "on_dial_end",
        "Hangup": "on_hangup",
    }

    def __init__(
        self,
        config: Config,
        clock: Clock,
        queue: CallbackQueue,
        agents: AgentBook,
        tracker: CallTracker,
        ami: AmiClient,
        metrics: Metrics | None = None,
        *,
        name: str | None = None,
    ) -> None:
        self.config = config
        self.dispatch = config.dispatch
        self.clock = clock
        self.queue = queue
        self.agents = agents
        self.tracker = tracker
        self.ami = ami
        self.metrics = metrics or Metrics()
        self.hours = CallingHours(config.hours)
        self.numbers = NumberPolicy(config.phone)
        self.name = name or f"dialer@{socket.gethostname()}"
        self.inflight: dict[str, InFlight] = {}
        self._by_action: dict[str, InFlight] = {}
        self._by_channel: dict[str, InFlight] = {}
        self._kick = asyncio.Event()
        self._kicked_at: float | None = None
        self._running = False
        self._accepting = True
        self.paused = not self.dispatch.enabled
        self.paused_by = "config" if self.paused else ""
        self.paused_reason = "dispatch.enabled = false" if self.paused else ""
        self.alarm = ""
        self.failure_streak = 0
        self._attempt_counter = 0
        self._pass_lock = asyncio.Lock()
        self._side_tasks = TaskSet("dispatcher")
        self._attempts = TaskSet("dispatcher")
        # Numbers on a callback call that is not ours (a previous run's, still up in
        # Asterisk): never dialled until that call is gone.
        self.foreign_numbers: frozenset[str] = frozenset()
        # No decisions between a (re)connect and the end of the resync: until Asterisk has
        # told us its agents and calls, "free" may be stale.
        self.synced = False
        self._state_listeners: list[Callable[[], Awaitable[None] | None]] = []
        self.last_error = ""
        self._planned_wake: float | None = None
        self._looked_at = 0.0  # when the last pass listed the free agents

    # ------------------------------------------------------------------ control

    def kick(self, reason: str = "") -> None:
        """Something changed that may allow a callback now: decide at once."""
        if self._kicked_at is None:
            self._kicked_at = time.perf_counter()
        self._kick.set()

    def agent_changed(self, interface: str) -> None:
        self.kick("agent_free")

    def rest_ends_at(self, at: float) -> None:
        """An agent's wrap-up or cool-down began and ends at ``at``. The loop's sleep was
        planned before; without a look now it would notice the agent up to a tick late."""
        if self._planned_wake is None or at < self._planned_wake:
            self._kick.set()  # re-plan only: not a decision to time

    async def load_control(self) -> None:
        """Pausing survives restarts: a supervisor's pause stays until they resume."""
        try:
            control = await self.queue.load_control()
        except QueueUnavailable as exc:  # Redis down at start: keep the config's choice
            log.warning("dispatch control not readable; using config", error=str(exc))
            return
        if control is not None:
            self.paused = control.paused
            self.paused_by = control.by
            self.paused_reason = control.reason
            self.alarm = control.alarm

    async def _save_control(self) -> None:
        await self.queue.save_control(
            DispatchControl(
                paused=self.paused, by=self.paused_by, reason=self.paused_reason, alarm=self.alarm
            )
        )

    async def pause(self, actor: str, reason: str = "") -> None:
        self.paused, self.paused_by, self.paused_reason = True, actor, reason
        await self._save_control()
        log.warning("dispatching paused", by=actor, reason=reason)
        await self._notify()

    async def resume(self, actor: str) -> None:
        self.paused, self.paused_by, self.paused_reason = False, actor, ""
        self.alarm = ""
        self.failure_streak = 0
        await self._save_control()
        log.info("dispatching resumed", by=actor)
        self.kick("resumed")
        await self._notify()

    def on_state_change(self, listener: Callable[[], Awaitable[None] | None]) -> None:
        self._state_listeners.append(listener)

    async def _notify(self) -> None:
        for listener in self._state_listeners:
            result = listener()
            if asyncio.iscoroutine(result):
                await result

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        self._running = True
        tick = self.dispatch.tick_seconds
        last_housekeeping = 0.0
        while self._running:
            wake = self._planned_wake = await self._next_wake(tick)
            await self._wait_kick(wake)
            self._planned_wake = None
            if not self._running:
                break
            self._kick.clear()
            now = self.clock.now()
            if now - last_housekeeping >= 30:
                last_housekeeping = now
                await self._housekeeping()
                if self.foreign_numbers and self.ami.authenticated:
                    await self.refresh_foreign_calls()
            try:
                await self.dispatch_pass()
            except QueueUnavailable as exc:
                self.last_error = str(exc)
                log.warning("queue unavailable; dispatching waits", error=str(exc))
                await self.clock.sleep(min(tick, 2.0))
            except Exception:
                log.exception("dispatch pass failed")
                await self.clock.sleep(min(tick, 2.0))

    async def _next_wake(self, tick: float) -> float:
        now = self.clock.now()
        wake = now + tick
        # From the last look at the agents, not from now: an agent whose rest ended while a
        # pass was busy claiming was not among that pass's free agents and needs a pass now.
        agent_change = self.agents.next_change_at(after=self._looked_at)
        if agent_change is not None:
            wake = min(wake, agent_change)
        # Only a callback falling due later is a reason to wake: one already due is promoted
        # by the next claim, which a free agent's kick brings. Waking for it would spin the
        # loop for as long as every agent is busy or dispatching is paused.
        with contextlib.suppress(QueueUnavailable):
            due = await self.queue.next_due_after(now)
            if due is not None:
                wake = min(wake, due)
        return max(wake, now)

    async def _wait_kick(self, until: float) -> None:
        await wait_event(self._kick, self.clock, until - self.clock.now())

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop taking work, let attempts in flight finish for a while, then settle the rest:
        a customer already talking to an agent counts as called back; anything still ringing
        is hung up and goes back to the queue for later. Leaving claims to expire instead
        would let a restarted dialer call someone who is still on the phone with us."""
        self._accepting = False
        self._running = False
        self._kick.set()
        tasks = [f.task for f in self.inflight.values() if f.task is not None]
        if tasks:
            log.info("waiting for callbacks in progress", count=len(tasks))
            _, pending = await asyncio.wait(tasks, timeout=drain_timeout)
            if pending:
                now = self.clock.now()
                for flight in list(self.inflight.values()):
                    if flight.stage == Stage.TALKING and flight.answered_at is not None:
                        self._finish(flight, Outcome.done(talk=now - flight.answered_at))
                    else:
                        flight.aborted = Reason.DIALER_STOPPED
                        flight.changed.set()
                _, pending = await asyncio.wait(pending, timeout=5)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._side_tasks.cancel_all()

    def can_dispatch(self) -> tuple[bool, str]:
        if self.paused:
            return False, "paused"
        if not self._accepting:
            return False, "stopping"
        if not self.ami.authenticated:
            return False, "ami_down"
        if not self.synced:
            return False, "resyncing"
        if not self.hours.is_open(self.clock.now()):
            return False, "outside_calling_hours"
        return True, ""

    async def dispatch_pass(self) -> int:
        """Claim work for every free agent; returns how many attempts started."""
        self._looked_at = self.clock.now()  # also when nothing may be dialled: no re-look
        ok, _ = self.can_dispatch()
        if not ok:
            self._kicked_at = None
            return 0
        started = 0
        # Category sets a claim in this pass found nothing for. Later agents serving the same
        # or fewer categories would find nothing either (the pass only ever excludes more), so
        # a thousand idle agents cost one claim each per category set, not one each.
        nothing_for: list[frozenset[str]] = []
        async with self._pass_lock:
            for interface in self.agents.free_agents():
                if len(self.inflight) >= self.dispatch.max_concurrent:
                    break
                trunks = self._open_trunks()
                if not trunks:
                    break
                categories = self.agents.categories_for(interface)
                wanted = frozenset(categories)
                if not wanted or any(wanted <= empty for empty in nothing_for):
                    continue
                claim = await self.queue.claim(
                    categories,
                    claimer=self.name,
                    agent=interface,
                    trunks=None if len(trunks) == len(self.dispatch.trunks) else trunks,
                    exclude_numbers=sorted(self._busy_numbers()),
                    held=list(self.inflight),
                )
                if claim is None:
                    nothing_for.append(wanted)
                    continue
                if not self.agents.is_free(interface) or not self.can_dispatch()[0]:
                    # A queue call took the agent while we claimed: give it back unharmed.
                    await self.queue.release(claim, Reason.AGENT_BUSY)
                    continue
                self._start(claim, interface)
                started += 1
        if started == 0:
            self._kicked_at = None
        return started

    def _open_trunks(self) -> list[str]:
        used: dict[str, int] = {}
        for flight in self.inflight.values():
            used[flight.trunk] = used.get(flight.trunk, 0) + 1
        return [t.name for t in self.dispatch.trunks if used.get(t.name, 0) < t.max_calls]

    def _busy_numbers(self) -> set[str]:
        return (
            {f.number for f in self.inflight.values()}
            | set(self.tracker.active_numbers())
            | self.foreign_numbers
        )

    def _start(self, claim: Claim, interface: str) -> None:
        cb = claim.callback
        now = self.clock.now()
        flight = InFlight(
            claim=claim,
            agent=interface,
            number=cb.number,
            category=cb.category,
            trunk=cb.trunk or self.dispatch.trunks[0].name,
            started_at=now,
            stage_since=now,
        )
        self.agents.reserve(interface, cb.id)
        self.inflight[cb.id] = flight
        flight.task = self._attempts.spawn(self._attempt(flight), f"attempt-{cb.id}")

    # ------------------------------------------------------------------ one attempt

    async def _attempt(self, flight: InFlight) -> None:
        log_ = log.bind(callback=flight.callback_id, agent=flight.agent, number=flight.number)
        try:
            outcome = await self._make_call(flight, log_)
            if outcome is not None:
                await self._settle(flight, outcome, log_)
        except QueueUnavailable as exc:
            # Before any call was placed: the lease runs out and the callback comes back.
            log_.error("queue unavailable before the call was placed", error=str(exc))
        except asyncio.CancelledError:
            raise
        except Exception:
            log_.exception("callback attempt failed unexpectedly")
        finally:
            self._forget(flight)
            cooldown = (
                self.dispatch.agent_cooldown
                if (flight.outcome is not None and flight.outcome.cooldown)
                else 0.0
            )
            self.agents.unreserve(flight.agent, cooldown=cooldown)
            self.kick("attempt_done")

    async def _make_call(self, flight: InFlight, log_: Any) -> Outcome | None:
        cb = flight.claim.callback
        try:
            number = self.numbers.parse_e164(cb.number)
        except ValueError:
            return Outcome.fail(Reason.INVALID_NUMBER)
        self._attempt_counter += 1
        try:
            plan = plan_originate(
                self.config,
                callback_id=cb.id,
                category=cb.category,
                number=number,
                interface=flight.agent,
                trunk=flight.trunk,
                attempt_no=cb.attempts + 1,
            )
        except OriginateInputError as exc:
            log_.error("originate refused by our own checks", error=str(exc))
            return Outcome.release(Reason.ORIGINATE_INVALID, streak=True)
        flight.plan = plan
        flight.channel_ids = {plan.channel_id, plan.other_channel_id}
        for channel_id in flight.channel_ids:
            self._by_channel[channel_id] = flight
        self._by_action[plan.action_id] = flight
        self.tracker.mark_ours(*flight.channel_ids)
        first_stage = Stage.RINGING_CUSTOMER if plan.customer_first else Stage.RINGING_AGENT
        # The last check before dialling: a callback closed meanwhile (the customer got
        # through, a supervisor cancelled) is never dialled.
        if not await self.queue.renew(flight.claim, stage=first_stage, agent=flight.agent):
            log_.info("callback closed while being claimed; not dialled")
            return None
        if flight.aborted:
            return None
        if not self.agents.still_free_for(flight.agent, cb.id):
            # A queue call took the agent in this very instant: back, unharmed.
            return Outcome.release(Reason.AGENT_BUSY)
        self._set_stage(flight, first_stage)
        flight.sent_at = time.perf_counter()
        if self._kicked_at is not None:
            self.metrics.decision_latency.observe(flight.sent_at - self._kicked_at)
            self._kicked_at = None
        try:
            flight.action_id = await self.ami.originate(plan.fields)
        except AmiNotConnected:
            return Outcome.release(Reason.AMI_DOWN)
        except AmiActionFailed as exc:
            log_.warning("Asterisk refused the originate", error=str(exc))
            return Outcome.release(Reason.ORIGINATE_REFUSED, streak=True)
        except OriginateFateUnknown:
            flight.fate_unknown = True
            flight.lost_at = flight.lost_at or self.clock.now()
            log_.warning(
                "link lost with an originate unacknowledged; will reconcile, never re-send"
            )
        log_.info("callback dialling", stage=first_stage.value, action=plan.action_id)
        return await self._await_outcome(flight)

    async def _await_outcome(self, flight: InFlight) -> Outcome:
        renew_every = max(1.0, self.config.queue.lease_seconds / 3)
        deadline = self.clock.now() + self.dispatch.originate_timeout
        last_renew = self.clock.now()
        while flight.outcome is None and not flight.aborted:
            flight.changed.clear()
            await wait_event(flight.changed, self.clock, renew_every)
            now = self.clock.now()
            if flight.outcome is not None or flight.aborted:
                break
            if now - last_renew >= renew_every:
                # Renewing every third of the lease leaves room for a renewal lost to a Redis
                # blip; the call itself goes on regardless.
                try:
                    if not await self.queue.renew(flight.claim):
                        flight.aborted = flight.aborted or Reason.CLAIM_LOST
                        break
                    last_renew = now
                except QueueUnavailable as exc:
                    log.warning(
                        "could not renew a claim; will try again",
                        error=str(exc),
                        callback=flight.callback_id,
                    )
            if flight.fate_unknown and self.ami.authenticated:
                outcome = await self._reconcile(flight)
                if outcome is not None:
                    flight.outcome = outcome
                    break
            # Only an attempt still waiting for the agent leg times out; a talking customer
            # keeps the claim for as long as the call lasts.
            if now >= deadline and flight.answered_at is None and not flight.customer_uid:
                flight.outcome = Outcome.release(
                    Reason.NO_OUTCOME, not_before=now + self.config.retry.delay_after(1)
                )
        if flight.aborted:
            await self._hang_up(flight)
            if flight.aborted == Reason.DIALER_STOPPED:
                return Outcome.release(
                    Reason.DIALER_STOPPED,
                    not_before=self.clock.now() + self.config.retry.delay_after(1),
                )
            return Outcome.abort(flight.aborted)
        assert flight.outcome is not None
        return flight.outcome

    async def _reconcile(self, flight: InFlight) -> Outcome | None:
        """After a reconnect: does a channel of this attempt exist? Never guess by dialling."""
        try:
            channels = await self._channels_up()
        except AmiError:
            return None
        alive = any(
            m.get("Uniqueid") in flight.channel_ids
            or m.get("Uniqueid") == flight.customer_uid
            or f"{CALLBACK_ID_VAR}={flight.callback_id}" in m.getall("Variable")
            for m in channels
        )
        if alive:
            flight.fate_unknown = False  # it exists: its events will tell the rest
            return None
        lost_at = flight.lost_at or self.clock.now()
        if flight.answered_at is not None and (
            lost_at - flight.answered_at >= self.dispatch.min_talk_seconds
        ):
            # They talked long enough before we lost sight of the call.
            return Outcome.done(talk=lost_at - flight.answered_at)
        # Gone, or never created: we cannot know if the customer was reached. Wait before
        # trying again, so a call that did happen is not repeated at once.
        return Outcome.release(
            Reason.OUTCOME_UNKNOWN,
            not_before=self.clock.now() + self.config.retry.delay_after(1),
        )

    def on_ami_lost(self) -> None:
        """Events of calls in progress may be lost while the link is down."""
        self.synced = False
        now = self.clock.now()
        for flight in self.inflight.values():
            if flight.action_id or flight.fate_unknown:
                flight.fate_unknown = True
                flight.lost_at = flight.lost_at or now

    async def on_ami_ready(self) -> None:
        """After a (re)connect: settle or keep following every attempt in flight, and learn
        which callback calls are up that no attempt of ours knows (a previous run's)."""
        for flight in list(self.inflight.values()):
            if flight.fate_unknown:
                flight.changed.set()
        await self.refresh_foreign_calls()
        self.synced = True
        self.kick("ami_ready")

    async def _channels_up(self) -> list[AmiMessage]:
        """Asterisk's channels now, each with its CALLBACK_ID variable (AMI ``Status``)."""
        items = await self.ami.send_list({"Action": "Status", "Variables": CALLBACK_ID_VAR})
        return [m for m in items if m.event == "Status"]

    async def refresh_foreign_calls(self) -> None:
        try:
            channels = await self._channels_up()
        except AmiError as exc:
            log.warning("could not list callback calls in progress", error=str(exc))
            return
        ids: set[str] = set()
        for item in channels:
            for value in item.getall("Variable"):
                name, _, callback_id = str(value).partition("=")
                if name == CALLBACK_ID_VAR and callback_id:
                    ids.add(callback_id)
        ids -= set(self.inflight)
        try:
            numbers = frozenset(cb.number for cb in await self.queue.get_many(sorted(ids)))
        except QueueUnavailable:
            return
        if numbers != self.foreign_numbers:
            log.info("callback calls up that this dialer did not start", count=len(numbers))
        self.foreign_numbers = numbers

    async def _settle(self, flight: InFlight, outcome: Outcome, log_: Any) -> None:
        if outcome.kind is OutcomeKind.ABORT:
            log_.info("callback attempt abandoned", reason=outcome.reason)
            return
        now = self.clock.now()
        attempt = AttemptRecord(
            at=now,
            agent=flight.agent,
            outcome=outcome.reason,
            talk_seconds=outcome.talk,
            counted=outcome.kind.uses_attempt,
        )
        self.metrics.outcomes.inc(outcome.reason)
        if outcome.streak:
            self.failure_streak += 1
        elif outcome.reason not in STREAK_NEUTRAL:
            self.failure_streak = 0
        result = await self._store_outcome(flight, outcome, attempt, log_)
        log_.info(
            "callback attempt finished",
            outcome=outcome.reason,
            kind=outcome.kind,
            talk_seconds=round(outcome.talk, 1),
            state=result.state.value if result else "closed_meanwhile",
        )
        if self.failure_streak >= self.dispatch.max_consecutive_failures and not self.paused:
            self.alarm = (
                f"{self.failure_streak} originates in a row failed outright "
                f"(last: {outcome.reason}); dispatching paused"
            )
            log.error(
                "ALARM: originates keep failing; dispatching paused",
                streak=self.failure_streak,
                last_reason=outcome.reason,
            )
            await self.pause("system", "originate_failures")

    async def _store_outcome(
        self, flight: InFlight, outcome: Outcome, attempt: AttemptRecord, log_: Any
    ) -> Callback | None:
        """Write the outcome, waiting out a Redis outage. Giving up would let the lease lapse
        and the callback come back as if never made: a customer already talked to would be
        called again. The flight stays in flight meanwhile, so our own upkeep leaves its
        claim alone."""
        delay = 0.5
        while True:
            try:
                match outcome.kind:
                    case OutcomeKind.DONE:
                        return await self.queue.complete(flight.claim, attempt)
                    case OutcomeKind.RETRY:
                        return await self.queue.retry(flight.claim, attempt)
                    case OutcomeKind.FAIL:
                        return await self.queue.fail(flight.claim, outcome.reason, attempt)
                    case OutcomeKind.RELEASE:
                        return await self.queue.release(
                            flight.claim,
                            outcome.reason,
                            attempt=attempt,
                            not_before=outcome.not_before,
                        )
                raise ValueError(f"an outcome of kind {outcome.kind} is never stored")
            except QueueUnavailable as exc:
                log_.warning(
                    "queue unavailable; the outcome waits to be stored",
                    outcome=outcome.reason,
                    error=str(exc),
                    retry_in=delay,
                )
                self.last_error = str(exc)
                try:
                    await self.clock.sleep(delay)
                except asyncio.CancelledError:
                    log_.error(
                        "stopped before Redis came back: this outcome is not stored "
                        "and the callback will be offered again when its lease ends",
                        outcome=outcome.reason,
                    )
                    raise
                delay = min(delay * 2, 10.0)

    def _forget(self, flight: InFlight) -> None:
        self.inflight.pop(flight.callback_id, None)
        if flight.plan is not None:
            self._by_action.pop(flight.plan.action_id, None)
        for channel_id in (*flight.channel_ids, flight.customer_uid):
            self._by_channel.pop(channel_id, None)

    def _set_stage(self, flight: InFlight, stage: Stage) -> None:
        if flight.stage != stage:
            flight.stage = stage
            flight.stage_since = self.clock.now()

    def _finish(self, flight: InFlight, outcome: Outcome) -> None:
        if flight.outcome is None:
            flight.outcome = outcome
            flight.changed.set()

    async def _hang_up(self, flight: InFlight) -> None:
        for channel_id in sorted(flight.channel_ids):
            with contextlib.suppress(AmiError):
                await self.ami.send_action({"Action": "Hangup", "Channel": channel_id}, timeout=2)

    def abort(self, callback_id: str, reason: str) -> bool:
        """The callback was closed elsewhere (served, cancelled): stop its attempt."""
        flight = self.inflight.get(callback_id)
        if flight is None:
            return False
        flight.aborted = reason
        flight.changed.set()
        return True

    # ------------------------------------------------------------------ AMI events

    def _flight_for(self, message: AmiMessage) -> InFlight | None:
        fields = message.fields
        for key in ("Uniqueid", "DestUniqueid"):
            flight = self._by_channel.get(fields.get(key, ""))
            if flight is not None:
                return flight
        if "ChanVariable" in fields:
            callback_id = message.chanvars().get(CALLBACK_ID_VAR)
            if callback_id:
                return self.inflight.get(callback_id)
        return None

    def on_originate_response(self, message: AmiMessage) -> None:
        flight = self._by_action.get(message.get("ActionID"))
        if flight is None:
            return
        reason = _originate_reason(message.get("Reason", ""))
        flight.fate_unknown = False
        customer_first = flight.plan is not None and flight.plan.customer_first
        if reason is OriginateReason.ANSWERED:
            self.failure_streak = 0
            self.metrics.originate_to_answer.observe(time.perf_counter() - flight.sent_at)
            uid = message.get("Uniqueid")
            if uid and uid != UNKNOWN_ID:
                flight.channel_ids.add(uid)
                self._by_channel[uid] = flight
            if customer_first:
                flight.answered_at = self.clock.now()  # the customer is on the line
                self._set_stage(flight, Stage.RINGING_AGENT)
            flight.changed.set()
            return
        if customer_first:
            outcome = {
                OriginateReason.BUSY: Reason.BUSY,
                OriginateReason.CONGESTION: Reason.CONGESTION,
                OriginateReason.HANGUP: Reason.NO_ANSWER,
                OriginateReason.NO_ANSWER: Reason.NO_ANSWER,
            }.get(reason, Reason.UNAVAILABLE)
            self._finish(flight, Outcome.retry(outcome))
        elif reason is OriginateReason.NO_ANSWER:
            self._finish(flight, Outcome.release(Reason.AGENT_NO_ANSWER, cooldown=True))
        elif reason is OriginateReason.BUSY:
            self._finish(flight, Outcome.release(Reason.AGENT_BUSY))
        elif reason is OriginateReason.HANGUP:
            self._finish(flight, Outcome.release(Reason.AGENT_REJECTED, cooldown=True))
        elif reason is OriginateReason.CONGESTION:
            self._finish(
                flight, Outcome.release(Reason.AGENT_CONGESTION, cooldown=True, streak=True)
            )
        else:
            # The agent's channel could not be created (phone unregistered?): that agent
            # rests so others are tried; failures across agents raise the alarm.
            self._finish(
                flight, Outcome.release(Reason.ORIGINATE_FAILED, cooldown=True, streak=True)
            )

    def _second_leg(self, message: AmiMessage) -> InFlight | None:
        """The attempt whose second leg (agent first: the customer) this dial is about.

        Only a dial made from the callback context counts: with Local channels as agents the
        ;2 half dialling the agent's phone is ours too, but it is the agent, not the customer.
        """
        if "Channel" not in message.fields:
            return None  # Asterisk's own dial of the first leg (the Originate's)
        flight = self._flight_for(message)
        if flight is None:
            return None
        context = message.fields.get("Context")
        expected = (
            self.dispatch.agent_context
            if flight.plan and flight.plan.customer_first
            else self.dispatch.context
        )
        if context is not None and context != expected:
            return None
        return flight

    def on_dial_begin(self, message: AmiMessage) -> None:
        flight = self._second_leg(message)
        if flight is None:
            return
        dest = message.get("DestUniqueid")
        customer_first = flight.plan is not None and flight.plan.customer_first
        if dest:
            self._by_channel[dest] = flight
            if not customer_first:
                flight.customer_uid = dest
        self._set_stage(flight, Stage.RINGING_AGENT if customer_first else Stage.RINGING_CUSTOMER)
        self._spawn_renew(flight)

    def on_dial_end(self, message: AmiMessage) -> None:
        flight = self._second_leg(message)
        if flight is None:
            return
        status = message.get("DialStatus")
        customer_first = flight.plan is not None and flight.plan.customer_first
        if status == DialStatus.ANSWER:
            flight.answered_at = self.clock.now()  # talk time counts from here
            self._set_stage(flight, Stage.TALKING)
            self._spawn_renew(flight)
            return
        if customer_first:
            # The customer answered but the reserved agent did not: not the customer's fault.
            self._finish(flight, Outcome.release(Reason.AGENT_NO_ANSWER, cooldown=True))
        else:
            self._finish(
                flight, Outcome.retry(CUSTOMER_DIAL_OUTCOMES.get(status, Reason.FAILED_DIAL))
            )

    def on_hangup(self, message: AmiMessage) -> None:
        uid = message.get("Uniqueid")
        flight = self._by_channel.get(uid)
        if flight is None or flight.outcome is not None:
            return
        customer_first = flight.plan is not None and flight.plan.customer_first
        talking = flight.stage == Stage.TALKING
        if talking and flight.answered_at is not None:
            talk = self.clock.now() - flight.answered_at
            if talk >= self.dispatch.min_talk_seconds:
                self._finish(flight, Outcome.done(talk=talk))
            else:
                self._finish(flight, Outcome.retry(Reason.SHORT_CALL, talk=talk))
            return
        if customer_first:
            if flight.answered_at is not None:
                self._finish(flight, Outcome.release(Reason.CUSTOMER_HUNG_UP_WAITING))
            return
        first_leg = flight.plan.channel_id if flight.plan else ""
        if (
            uid == first_leg
            and not flight.customer_uid
            and flight.action_id
            and flight.stage in (Stage.RINGING_AGENT, Stage.CLAIMED)
        ):
            # The agent leg ended before any customer dial: wait for the OriginateResponse
            # when it is still to come; if the agent answered and hung up, release.
            self._spawn_agent_hangup_check(flight)

    def _spawn(self, coro: Any, name: str) -> None:
        self._side_tasks.spawn(coro, name)

    def _spawn_agent_hangup_check(self, flight: InFlight) -> None:
        async def check() -> None:
            await self.clock.sleep(1.0)
            if flight.outcome is None and not flight.customer_uid:
                self._finish(flight, Outcome.release(Reason.AGENT_HUNG_UP))

        self._spawn(check(), f"agent-hangup-{flight.callback_id}")

    def _spawn_renew(self, flight: InFlight) -> None:
        stage = flight.stage

        async def renew() -> None:
            with contextlib.suppress(QueueUnavailable):
                if not await self.queue.renew(flight.claim, stage=stage, agent=flight.agent):
                    flight.aborted = flight.aborted or Reason.CLAIM_LOST
                    flight.changed.set()

        self._spawn(renew(), f"renew-{flight.callback_id}")

    # ------------------------------------------------------------------ upkeep

    async def _housekeeping(self) -> None:
        try:
            result = await self.queue.housekeeping(held=list(self.inflight))
            if result.get("expired"):
                log.info("callbacks expired", count=result["expired"])
        except QueueUnavailable as exc:
            log.warning("housekeeping skipped: queue unavailable", error=str(exc))

    def in_progress(self) -> list[dict[str, Any]]:
        now = self.clock.now()
        return [
            {
                "id": f.callback_id,
                "agent": f.agent,
                "number": f.number,
                "category": f.category,
                "stage": f.stage.value,
                "since": f.stage_since,
                "started_at": f.started_at,
                "duration": now - f.started_at,
            }
            for f in sorted(self.inflight.values(), key=lambda f: f.started_at)
        ]


def _originate_reason(text: str) -> OriginateReason | None:
    """The ``Reason`` of an OriginateResponse; None for a value we do not know (failed)."""
    try:
        return OriginateReason(int(text)) if text.isdigit() else OriginateReason.FAILED
    except ValueError:
        return None
