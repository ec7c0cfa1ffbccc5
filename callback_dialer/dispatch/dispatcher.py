"""Turning the queue into calls: a free agent and the best callback they may serve, at once.

Decisions are event-driven: an agent becoming free, a callback becoming ready (the queue
tells its listeners of every such write, whoever made it), an attempt ending all ``kick`` the
dispatcher, which decides immediately; a slow tick and timers for the next wrap-up end or due
callback are the safety net. A callback closed while being dialled (served, cancelled) has
its attempt aborted the same way, by the queue's news. For each free agent (longest idle first)
it claims the best ready callback among the categories that agent serves, within the limits
(in progress overall, per trunk), never for a number already on a call with us, and only in
calling hours.

One attempt (attempt.py holds its state; strategies.py says, for agent first or customer
first, which leg is dialled first and what each answer from Asterisk means):

    claim -> renew (the first stage; a callback closed meanwhile is never dialled)
          -> Originate (Async, pre-assigned ChannelId, once, never re-sent)
          -> OriginateResponse, DialBegin/DialEnd of the second leg, Hangup: an Outcome
          -> the outcome stored on the callback (a Redis outage is waited out)

The agent not answering, a queue call grabbing the agent in the same instant, an Originate that
fails outright: the callback goes straight back, no customer attempt used; the agent who let it
ring out rests; several outright failures in a row pause dispatching with an alarm.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..ami.asterisk import DialStatus, OriginateReason
from ..ami.client import AmiClient, AmiError
from ..ami.frames import AmiMessage
from ..clock import Clock, wait_event
from ..config import Config
from ..detect.agents import AgentBook
from ..detect.livequeue import LiveQueueBook
from ..detect.tracker import CallTracker
from ..hours import CallingHours
from ..logs import get_logger
from ..metrics import Metrics
from ..phone import NumberPolicy
from ..queue.models import (
    Adoption,
    Callback,
    Claim,
    DispatchControl,
    HeldBack,
    QueueChange,
    Stage,
    State,
)
from ..queue.models import Attempt as AttemptRecord
from ..queue.store import CallbackQueue, NotLeader, QueueUnavailable
from ..tasks import TaskSet
from .adoption import LiveCall, live_calls
from .attempt import Attempt, Attempts
from .outcome import STREAK_NEUTRAL, Outcome, OutcomeKind, Reason
from .runner import AttemptRunner
from .strategies import Recheck, strategy_for
from .turns import Hold, Turns

log = get_logger(__name__)


class Dispatcher:
    HANDLERS = {
        "OriginateResponse": "on_originate_response",
        "DialBegin": "on_dial_begin",
        "DialEnd": "on_dial_end",
        "Hangup": "on_hangup",
        "Shutdown": "on_shutdown",
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
        leading: Callable[[], bool] = lambda: True,
        live: LiveQueueBook | None = None,
        settle_recorded: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.config = config
        self.dispatch = config.dispatch
        self.clock = clock
        self.queue = queue
        self.agents = agents
        self.tracker = tracker
        self.ami = ami
        self.metrics = metrics or Metrics()
        # Whose turn a free agent is, a callback's or a live caller's (turns.py). Without a
        # live queue (a test's bare dispatcher) nobody waits live.
        self.live = live or LiveQueueBook(config, clock)
        self.turns = Turns(config, agents, self.live)
        # Agents left to Asterisk's queue by the last pass, and why (the page's notice);
        # each agent counted once per time they were left, not once per pass.
        self.holding: dict[str, Hold] = {}
        self.holding_since: float | None = None
        self.hours = CallingHours(config.hours)
        self.numbers = NumberPolicy(config.phone)
        self.strategy = strategy_for(config.dispatch)  # agent first or customer first
        self.name = name or f"dialer@{socket.gethostname()}"
        # Do we surely hold the leader lease right now (leadership.py)? Read fresh at every
        # decision: only the leader claims and dials; the others detect and stand by.
        self.leading = leading
        # The fates the dialplan recorded for calls that ended while nobody led (fates.py):
        # settled at a take-over before anything is adopted or claimed. After a reconnect the
        # AMI ready sequence settles them itself, just before our hook.
        self._settle_recorded = settle_recorded
        self.inflight = Attempts(clock)
        self._kick = asyncio.Event()
        self._kicked_at: float | None = None
        self._running = False
        self._accepting = True
        self.paused = not self.dispatch.enabled
        self.paused_by = "config" if self.paused else ""
        self.paused_reason = "dispatch.enabled = false" if self.paused else ""
        self.alarm = ""
        self.failure_streak = 0
        self._pass_lock = asyncio.Lock()
        self._side_tasks = TaskSet("dispatcher")
        self._attempts = TaskSet("dispatcher")
        # Numbers on a callback call that is not ours and that we could not adopt (its
        # callback finished already): never dialled until that call is gone.
        self.foreign_numbers: frozenset[str] = frozenset()
        # While an adoption runs, the call events no attempt claimed: the adopted attempts
        # replay them, so a call that ends between the listing and the take-over is seen.
        self._adopting = 0
        self._unclaimed: list[tuple[str, AmiMessage]] = []
        # One adoption at a time: a take-over and an AMI reconnect can both ask for one at
        # once, and two would each take the claim with a token of their own, the second
        # leaving the first one's attempt unable to record anything.
        self._adoption_lock = asyncio.Lock()
        self.adopted = 0  # calls taken over since start (log, tests)
        # No decisions between a (re)connect and the end of the resync: until Asterisk has
        # told us its agents and calls, "free" may be stale.
        self.synced = False
        self._state_listeners: list[Callable[[], Awaitable[None] | None]] = []
        self.last_error = ""
        self._planned_wake: float | None = None
        self._looked_at = 0.0  # when the last pass listed the free agents
        self.runner = AttemptRunner(
            config,
            clock,
            queue,
            agents,
            tracker,
            ami,
            self.strategy,
            on_dialling=self._dialling,
            may_dial=leading,
        )
        queue.on_change(self._queue_changed)

    # ------------------------------------------------------------------ control

    def kick(self, reason: str = "") -> None:
        """Something changed that may allow a callback now: decide at once."""
        if self._kicked_at is None:
            self._kicked_at = time.perf_counter()
        self._kick.set()

    def _dialling(self, attempt: Attempt) -> None:
        """The Originate is being written: the decision the last kick asked for is made."""
        if self._kicked_at is not None:
            self.metrics.decision_latency.observe(attempt.sent_at - self._kicked_at)
            self._kicked_at = None

    def agent_changed(self, interface: str) -> None:
        self.kick("agent_free")

    def rest_ends_at(self, at: float) -> None:
        """An agent's wrap-up or cool-down began and ends at ``at``."""
        self._replan(at)

    def _replan(self, at: float) -> None:
        """Something may become possible at ``at``. The loop's sleep was planned before;
        without a look now it would notice up to a tick late."""
        if self._planned_wake is None or at < self._planned_wake:
            self._kick.set()  # re-plan only: not a decision to time

    def _queue_changed(self, change: QueueChange) -> None:
        """The queue's own news, so that no writer has to remember the dispatcher: a callback
        ready now is a decision to make, one due later may fall before the planned wake, and
        one closed while being dialled (served, cancelled) is a call to hang up."""
        if change.ready:
            self.kick(change.event)
        elif change.due_at is not None:
            self._replan(change.due_at)
        elif change.closed and change.previous_state is State.DIALING:
            self.abort(change.id, change.event)

    def abort(self, callback_id: str, reason: str) -> bool:
        """The callback was closed elsewhere (served, cancelled): stop its attempt."""
        attempt = self.inflight.get(callback_id)
        return attempt is not None and attempt.abort(reason)

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
            if not self.leading():
                continue  # a standby keeps no upkeep: the leader does (on_leadership wakes us)
            # A supervisor may have paused through another instance's page.
            await self.load_control()
            if now - last_housekeeping >= 30:
                last_housekeeping = now
                await self._housekeeping()
                if self.ami.authenticated and self.synced:
                    # A claim a dialer left while its call goes on (a leader replaced while
                    # frozen, whose calls were still being set up at the take-over). Not
                    # before the AMI ready hook's own adoption: that one lists the calls then.
                    await self.adopt_calls(reclaim=False)
            try:
                await self.dispatch_pass()
            except QueueUnavailable as exc:
                self.last_error = str(exc)
                log.warning("queue unavailable; dispatching waits", error=str(exc))
                await self.clock.sleep(min(tick, 2.0))
            except NotLeader:
                log.warning("the queue refused our leader lease; dispatching stops")
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
        tasks = list(self._attempts)
        if tasks:
            log.info("waiting for callbacks in progress", count=len(tasks))
            _, pending = await asyncio.wait(tasks, timeout=drain_timeout)
            if pending:
                now = self.clock.now()
                for attempt in list(self.inflight.values()):
                    talk = attempt.talk_time(now)
                    if talk is not None:
                        attempt.finish(Outcome.done(talk=talk))
                    else:
                        attempt.abort(Reason.DIALER_STOPPED)
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
        if not self.leading():
            return False, "standby"
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
            self.holding, self.holding_since = {}, None  # not dispatching says it all
            return 0
        started = 0
        # Category sets a claim in this pass found nothing for. Later agents serving the same
        # or fewer categories would find nothing either (the pass only ever excludes more), so
        # a thousand idle agents cost one claim each per category set, not one each.
        nothing_for: list[frozenset[str]] = []
        holding: dict[str, Hold] = {}
        async with self._pass_lock:
            counts = self.agents.queue_counts()
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
                hold = self.turns.guard(interface, counts)
                if hold is not None:
                    holding[interface] = hold
                    continue
                bound = self.turns.bound(interface)
                claim = await self.queue.claim(
                    categories,
                    claimer=self.name,
                    agent=interface,
                    trunks=None if len(trunks) == len(self.dispatch.trunks) else trunks,
                    exclude_numbers=sorted(self._busy_numbers()),
                    held=list(self.inflight),
                    below=bound.below if bound is not None else None,
                )
                if isinstance(claim, HeldBack):
                    assert bound is not None
                    holding[interface] = self.turns.held_by_score(interface, bound, claim.score)
                    continue
                if claim is None:
                    nothing_for.append(wanted)
                    continue
                if not self.agents.is_free(interface) or not self.can_dispatch()[0]:
                    # A queue call took the agent while we claimed: give it back unharmed.
                    await self.queue.release(claim, Reason.AGENT_BUSY)
                    continue
                self._start(claim, interface)
                for queue in self.agents.answering_queues(interface):
                    if queue in counts:
                        counts[queue].on_callbacks += 1
                        counts[queue].free -= 1
                started += 1
            self._note_holding(holding)
        if started == 0:
            self._kicked_at = None
        return started

    def _note_holding(self, holding: dict[str, Hold]) -> None:
        """Remember who this pass left to the live queue; count each agent once per time."""
        for interface, hold in holding.items():
            if interface not in self.holding:
                self.metrics.left_to_live.inc(hold.queue, hold.reason.value)
                log.info(
                    "agent left to the live queue",
                    agent=interface,
                    queue=hold.queue,
                    reason=hold.reason.value,
                    waiting=hold.waiting,
                    detail=hold.detail,
                )
        if holding and not self.holding:
            self.holding_since = self.clock.now()
        elif not holding:
            self.holding_since = None
        self.holding = holding

    def holding_off(self) -> list[Hold]:
        """Agents the last pass left to Asterisk's queue for live callers, and why."""
        return sorted(self.holding.values(), key=lambda h: (h.queue, h.agent))

    def live_changed(self, queue: str) -> None:
        """A live caller left a queue: an agent held back for them may take a callback."""
        if self.holding:
            self.kick("live_left")

    def _open_trunks(self) -> list[str]:
        used: dict[str, int] = {}
        for attempt in self.inflight.values():
            used[attempt.trunk] = used.get(attempt.trunk, 0) + 1
        return [t.name for t in self.dispatch.trunks if used.get(t.name, 0) < t.max_calls]

    def _busy_numbers(self) -> set[str]:
        return (
            {a.number for a in self.inflight.values()}
            | set(self.tracker.active_numbers())
            | self.foreign_numbers
        )

    def _start(self, claim: Claim, interface: str) -> None:
        cb = claim.callback
        self.agents.reserve(interface, cb.id)
        attempt = self.inflight.open(claim, interface, cb.trunk or self.dispatch.trunks[0].name)
        self._attempts.spawn(self._attempt(attempt), f"attempt-{cb.id}")

    # ------------------------------------------------------------------ one attempt

    async def _attempt(self, attempt: Attempt) -> None:
        log_ = log.bind(callback=attempt.callback_id, agent=attempt.agent, number=attempt.number)
        try:
            try:
                if attempt.adopted_call:
                    outcome: Outcome | None = await self.runner.follow(attempt)
                else:
                    outcome = await self.runner.call(attempt, log_)
            except NotLeader:
                log_.info("another dialer leads now; this attempt is left to it")
                return
            except QueueUnavailable as exc:
                # Before any call was placed: the lease runs out and the callback comes back.
                log_.error("queue unavailable before the call was placed", error=str(exc))
                return
            if outcome is not None:
                await self._settle(attempt, outcome, log_)
        except asyncio.CancelledError:
            raise
        except Exception:
            log_.exception("callback attempt failed unexpectedly")
        finally:
            self.inflight.close(attempt)
            cooldown = (
                self.dispatch.agent_cooldown
                if (attempt.outcome is not None and attempt.outcome.cooldown)
                else 0.0
            )
            self.agents.unreserve(attempt.agent, cooldown=cooldown)
            self.kick("attempt_done")

    async def _settle(self, attempt: Attempt, outcome: Outcome, log_: Any) -> None:
        if outcome.kind is OutcomeKind.ABORT:
            log_.info("callback attempt abandoned", reason=outcome.reason)
            return
        now = self.clock.now()
        record = AttemptRecord(
            at=now,
            agent=attempt.agent,
            outcome=outcome.reason,
            talk_seconds=outcome.talk,
            counted=outcome.kind.uses_attempt,
        )
        self.metrics.outcomes.inc(outcome.reason)
        if outcome.streak:
            self.failure_streak += 1
        elif outcome.reason not in STREAK_NEUTRAL:
            self.failure_streak = 0
        result = await self._store_outcome(attempt, outcome, record, log_)
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
        self, attempt: Attempt, outcome: Outcome, record: AttemptRecord, log_: Any
    ) -> Callback | None:
        """Write the outcome, waiting out a Redis outage. Giving up would let the lease lapse
        and the callback come back as if never made: a customer already talked to would be
        called again. The attempt stays in flight meanwhile, so our own upkeep leaves its
        claim alone."""
        delay = 0.5
        while True:
            try:
                match outcome.kind:
                    case OutcomeKind.DONE:
                        return await self.queue.complete(attempt.claim, record)
                    case OutcomeKind.RETRY:
                        return await self.queue.retry(attempt.claim, record)
                    case OutcomeKind.FAIL:
                        return await self.queue.fail(attempt.claim, outcome.reason, record)
                    case OutcomeKind.RELEASE:
                        return await self.queue.release(
                            attempt.claim,
                            outcome.reason,
                            attempt=record,
                            not_before=outcome.not_before,
                        )
                raise ValueError(f"an outcome of kind {outcome.kind} is never stored")
            except NotLeader:
                # Another dialer took the lease while we were not looking: it adopts the
                # callback (and its call); what we saw is not ours to record any more.
                log_.warning("outcome not stored: another dialer leads now", outcome=outcome.reason)
                return None
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

    # ------------------------------------------------------------------ the AMI link

    def on_ami_lost(self) -> None:
        """Events of calls in progress may be lost while the link is down."""
        self.synced = False
        for attempt in self.inflight.values():
            attempt.link_lost()

    async def on_ami_ready(self) -> None:
        """After a (re)connect: settle or keep following every attempt in flight, and adopt
        the callback calls up in Asterisk that no attempt of ours follows (a previous run's, a
        replaced leader's). Only the leader adopts: a standby does when it takes over
        (``on_leadership``)."""
        for attempt in list(self.inflight.values()):
            attempt.reconnected()
        if self.leading():
            await self.adopt_calls()
        self.synced = True
        self.kick("ami_ready")

    async def on_leadership(self, gained: bool, superseded: bool = False) -> None:
        """The leader lease was gained or lost (leadership.py).

        Gained: the same reconciliation runs as after an AMI reconnect, so the callback calls
        the previous leader left up are adopted (followed to their end, their numbers and
        agents not dialled) before the first claim; the saved pause is read again before every
        pass anyway. Lost: no claim and no Originate from now on (``can_dispatch`` and the
        runner read the lease themselves); ``superseded`` (another dialer holds it now) also
        lets go of every attempt in flight without hanging up its call: the new leader adopts
        those calls."""
        if gained:
            if self.ami.authenticated:
                # No claim before the reconciliation is done; and it runs beside the lease's
                # loop, so a slow Asterisk cannot hold up the next renewal. Without a link,
                # the AMI ready hook runs it when the link is up.
                self.synced = False
                self._spawn(self._take_over(), "take-over")
            self.kick("leader")
        else:
            if superseded:
                handed = [a.callback_id for a in self.inflight.values() if a.hand_over()]
                if handed:
                    log.warning("attempts left to the new leader", callbacks=handed)
            self.kick("not_leader")
        await self._notify()

    async def _take_over(self) -> None:
        if self._settle_recorded is not None:
            await self._settle_recorded()
        await self.on_ami_ready()

    async def adopt_calls(self, *, reclaim: bool = True) -> int:
        """Take over every callback call up in Asterisk that no attempt of ours follows, and
        follow it to its end as if this dialer had placed it: the claim becomes ours (a new
        token under our leader lease, one script for all), the agent is reserved, and the
        outcome is recorded once, by us (agent, talk time, done or retry).

        ``reclaim``: also take back a callback whose claim had run out (offered again) though
        its call never ended; only right after a (re)connect or a take-over, when no attempt
        of ours can be finishing that same callback. A call whose callback is finished already
        is left alone and its number is not dialled while it is up. Returns how many calls
        were adopted."""
        self._adopting += 1
        try:
            async with self._adoption_lock:
                return await self._adopt_calls(reclaim)
        finally:
            self._adopting -= 1
            if not self._adopting:
                self._replay_unclaimed()

    async def _adopt_calls(self, reclaim: bool) -> int:
        try:
            listing = await self.ami.send_list({"Action": "CoreShowChannels"})
        except AmiError as exc:
            log.warning("could not list the callback calls in progress", error=str(exc))
            return 0
        now = self.clock.now()
        calls = {cid: call for cid, call in live_calls(listing).items() if cid not in self.inflight}
        if not calls:
            self.foreign_numbers = frozenset()
            return 0
        # Redis decides which are ours to follow (one script, no read before it: a thousand
        # callbacks read back first would cost more than taking them over).
        wanted = [
            Adoption(
                callback_id,
                secrets.token_hex(12),
                stage=(stage := self.strategy.adopted_stage(call)).value,
                # Found talking where Redis last saw it ringing (the dialer that placed it
                # died in between): the talk counts from the earliest it can have begun.
                # Redis keeps its own stage_at when it had seen the talk already.
                stage_at=call.talk_began_by(now) if stage is Stage.TALKING else None,
            )
            for callback_id, call in sorted(calls.items())
        ]
        try:
            results = await self.queue.adopt(wanted, claimer=self.name, reclaim=reclaim)
        except (QueueUnavailable, NotLeader) as exc:
            # Not followed yet; the next reconnect, take-over or upkeep looks again. Until
            # then nobody dials a number of those calls: their callbacks are being dialled.
            log.warning("could not take over the calls in progress", error=str(exc))
            return 0
        adopted = 0
        foreign: set[str] = set()
        for result in results:
            if result.claim is None:
                if result.number:
                    foreign.add(result.number)
                continue
            self._follow(result.claim, calls[result.callback_id])
            adopted += 1
        self.foreign_numbers = frozenset(foreign)
        self.adopted += adopted
        if adopted or foreign:
            log.warning(
                "adopted the callback calls a previous run left up in Asterisk",
                adopted=adopted,
                left_alone=len(foreign),
                callbacks=sorted(r.callback_id for r in results if r.claim is not None)[:50],
            )
        return adopted

    def _follow(self, claim: Claim, call: LiveCall) -> None:
        """A new attempt for an adopted call, in the stage Asterisk shows, followed from now."""
        cb = claim.callback
        agent = cb.agent
        since = cb.stage_at if cb.stage != Stage.CLAIMED.value else None
        self.agents.reserve(agent, cb.id)
        attempt = self.inflight.open(claim, agent, cb.trunk or self.dispatch.trunks[0].name)
        self.strategy.adopt(attempt, call, since)
        self.tracker.mark_ours(*call.ours)
        self._attempts.spawn(self._attempt(attempt), f"adopted-{cb.id}")

    def _unclaimed_event(self, handler: str, message: AmiMessage) -> None:
        """A call event no attempt claimed: kept while an adoption runs (bounded)."""
        if self._adopting and len(self._unclaimed) < 50_000:
            self._unclaimed.append((handler, message))

    def _replay_unclaimed(self) -> None:
        events, self._unclaimed = self._unclaimed, []
        for handler, message in events:
            getattr(self, handler)(message)

    # ------------------------------------------------------------------ AMI events

    def on_originate_response(self, message: AmiMessage) -> None:
        attempt = self.inflight.by_action(message.get("ActionID"))
        if attempt is None:
            self._unclaimed_event("on_originate_response", message)
            return
        reason = _originate_reason(message.get("Reason", ""))
        if reason is OriginateReason.ANSWERED:
            self.failure_streak = 0
            self.metrics.originate_to_answer.observe(time.perf_counter() - attempt.sent_at)
            self.strategy.first_leg_answered(attempt, message.get("Uniqueid"))
        else:
            verdict = self.strategy.first_leg_failed(reason, message.get("Uniqueid"))
            if isinstance(verdict, Recheck):
                self._spawn_recheck(attempt, verdict)
            else:
                attempt.finish(verdict)

    def _second_leg(self, message: AmiMessage) -> Attempt | None:
        """The attempt whose second leg this dial is about.

        Only a dial made from the mode's second-leg context counts: with Local channels as
        agents the ;2 half dialling the agent's phone is ours too, but it is not that leg.
        """
        if "Channel" not in message.fields:
            return None  # Asterisk's own dial of the first leg (the Originate's)
        attempt = self.inflight.for_message(message)
        if attempt is None:
            self._unclaimed_event("on_" + _snake(message.event), message)
            return None
        context = message.fields.get("Context")
        if context is not None and context != self.strategy.second_leg_context:
            return None
        return attempt

    def on_dial_begin(self, message: AmiMessage) -> None:
        attempt = self._second_leg(message)
        if attempt is None:
            return
        self.strategy.second_leg_ringing(attempt, message.get("DestUniqueid"))
        self._spawn_renew(attempt)

    def on_dial_end(self, message: AmiMessage) -> None:
        if "Channel" not in message.fields:
            self._first_leg_dial_ended(message)
            return
        attempt = self._second_leg(message)
        if attempt is None:
            return
        status = message.get("DialStatus")
        if status == DialStatus.ANSWER:
            attempt.talking()
            self._spawn_renew(attempt)
        else:
            attempt.finish(self.strategy.second_leg_failed(status))

    def _first_leg_dial_ended(self, message: AmiMessage) -> None:
        """Asterisk's own dial of the Originate's first channel (no channel dialled it, hence
        no Channel header) ended: unanswered, it may say what the OriginateResponse did not."""
        uid = message.get("DestUniqueid")
        attempt = self.inflight.by_channel(uid)
        if attempt is None:
            self._unclaimed_event("on_dial_end", message)
            return
        if not attempt.first_leg(uid) or attempt.decided:
            return
        status = message.get("DialStatus")
        if status == DialStatus.ANSWER:
            return  # the OriginateResponse (Reason 4) follows
        verdict = self.strategy.first_leg_dial_ended(status)
        if verdict is not None:
            attempt.finish(verdict)

    def on_hangup(self, message: AmiMessage) -> None:
        uid = message.get("Uniqueid")
        attempt = self.inflight.by_channel(uid)
        if attempt is None:
            self._unclaimed_event("on_hangup", message)
            return
        if attempt.decided:
            return
        verdict = self.strategy.hung_up(attempt, uid, self.clock.now())
        if isinstance(verdict, Recheck):
            self._spawn_recheck(attempt, verdict)
        elif verdict is not None:
            attempt.finish(verdict)

    def on_shutdown(self, message: AmiMessage) -> None:
        """Asterisk is going down (``core restart now``, ``core stop``, a service restart): it
        hung up every channel just before (tests/fixtures/restart_mid_talk.jsonl) and closes
        the link next. Whatever those hang-ups did not decide is decided now, while the
        moment of the cut is known, instead of guessing after the reconnect."""
        now = self.clock.now()
        cut = [a for a in self.inflight.values() if not a.decided and a.stage is not Stage.CLAIMED]
        for attempt in cut:
            attempt.finish(self.strategy.pbx_stopped(attempt, now))
        log.warning(
            "Asterisk is shutting down; its calls are cut",
            restart=message.get("Restart"),
            attempts_cut=len(cut),
        )

    def _spawn(self, coro: Any, name: str) -> None:
        self._side_tasks.spawn(coro, name)

    def _spawn_recheck(self, attempt: Attempt, recheck: Recheck) -> None:
        async def check() -> None:
            await self.clock.sleep(recheck.after)
            if not attempt.second_leg_began:
                attempt.finish(recheck.outcome)

        self._spawn(check(), f"recheck-{attempt.callback_id}")

    def _spawn_renew(self, attempt: Attempt) -> None:
        stage = attempt.stage

        async def renew() -> None:
            with contextlib.suppress(QueueUnavailable):
                try:
                    if not await self.queue.renew(attempt.claim, stage=stage, agent=attempt.agent):
                        attempt.abort(Reason.CLAIM_LOST)
                except NotLeader:
                    attempt.hand_over()

        self._spawn(renew(), f"renew-{attempt.callback_id}")

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
        return [a.view(now) for a in sorted(self.inflight.values(), key=lambda a: a.started_at)]


def _snake(event: str) -> str:
    """``DialBegin`` -> ``dial_begin``."""
    return "".join("_" + c.lower() if c.isupper() else c for c in event).lstrip("_")


def _originate_reason(text: str) -> OriginateReason | None:
    """The ``Reason`` of an OriginateResponse; None for a value we do not know (failed)."""
    try:
        return OriginateReason(int(text)) if text.isdigit() else OriginateReason.FAILED
    except ValueError:
        return None
