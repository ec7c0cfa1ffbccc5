"""An inbound call through the dialplan of ../shared/ami-captures/asterisk/extensions.conf.

``[ivr-in]`` answers, sets CALLBACK_CATEGORY=unknown and waits 6 s for a key: 1 new_connection
-> Queue(sales), 2 support and 3 billing -> Queue(support), nothing -> ``t``: other ->
Queue(support), 7 -> sales for 4 s then support. When Queue() gives up (timeout),
``[after-queue]`` raises ``UserEvent: CallbackRequested`` with ``Reason: TIMEOUT`` while the
caller is still on the line, waits 1 s and hangs up; ``*`` pressed in a queue leaves through
``[queue-exit]`` with ``Reason: KEYPRESS``. A caller who hangs up produces the captures'
abandon sequence; a served caller is hung up when the agent hangs up (Queue() without ``c``).

Every event sequence below is the captures' (abandon_in_queue, answered_by_agent,
hangup_in_ivr, keypress_callback, queue_timeout, busy_hour), in their order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from callback_dialer.ami.asterisk import (
    CATEGORY_VAR,
    ChannelState,
    DeviceState,
    DialProgress,
    DialStatus,
    HangupCause,
)

from . import wire
from .channels import Bridge, Channel
from .legs import AgentLeg, _secs
from .model import CallerScript, IvrOption
from .observe import CallbackAsked, CallChose, CallConnected, CallEnded, CallQueued, CallStarted
from .pbx import Member, QueueEntry
from .scheduler import Timer

if TYPE_CHECKING:
    from .pbx import SimPbx


class InboundCall:
    def __init__(
        self,
        pbx: SimPbx,
        number: str,
        script: CallerScript,
        *,
        tag: str = "",
        internal: bool = False,
    ) -> None:
        self.pbx = pbx
        self.number = number
        self.script = script
        self.tag = tag
        self.internal = internal
        self.phase = "new"  # ivr | queue | talk | goodbye | done
        self.channel: Channel
        self.option: IvrOption | None = None
        self.key = ""
        self.step = 0
        self.entry: QueueEntry | None = None
        self.first_join: float | None = None
        self.connection: MemberRing | None = None
        self.outcome = ""
        self._timers: list[Timer] = []

    @property
    def call_id(self) -> str:
        return self.channel.uniqueid

    def owns(self, ch: Channel) -> bool:
        if ch is self.channel:
            return True
        ring = self.connection or (self.entry.ring if self.entry else None)
        return ring is not None and ch in ring.leg.channels()

    def _later(self, delay: float, fn: Callable[..., object], *args: object) -> None:
        # The caller's own timers: all cancelled when the call ends.
        self._timers.append(self.pbx.scheduler.call_later(delay, fn, *args))

    # ------------------------------------------------------------------ the IVR

    def start(self) -> None:
        p, s = self.pbx, self.script
        ivr = p.spec.ivr
        if self.internal:
            now = p.clock.now()
            uid = p.ids.uniqueid(now)
            name = f"PJSIP/{self.number}-{p.ids.local_suffix()}"
            ch = p.new_channel(
                name,
                uid,
                uid,
                p.spec.internal_context,
                p.spec.ivr_extension,
                state=ChannelState.RING,
                tech="PJSIP",
            )
        else:
            ch = p.trunk_channel("", outbound=False)
        self.channel = ch
        ch.caller_num, ch.caller_name = self.number, s.name
        ch.dnid = p.spec.ivr_extension
        p.calls[ch.uniqueid] = self
        p.emit(wire.newchannel(ch))
        if self.internal:
            p.emit(wire.newexten(ch, "Goto", f"{ivr.context},s,1"))
            ch.at(ivr.context, "s", 1)
        p.emit(wire.newexten(ch, "NoOp", f"inbound from {self.number}"))
        ch.priority = 2
        p.emit(wire.newexten(ch, "Answer", ""))
        ch.state = ChannelState.UP
        p.emit(wire.newstate(ch))
        self._device(DeviceState.INUSE)
        self.phase = "ivr"
        p.notify(
            CallStarted(
                call_id=ch.uniqueid,
                number=self.number,
                tag=self.tag,
                internal=self.internal,
                at=p.clock.now(),
            )
        )
        self._later(ivr.prompt_delay, self._menu)

    def _device(self, state: DeviceState) -> None:
        if self.internal:
            self.pbx.emit(wire.device_state_change(f"PJSIP/{self.number}", state))
        else:
            self.pbx.trunk_state()

    def _set_var(self, name: str, value: str) -> None:
        self.channel.variables[name] = value
        self.pbx.emit(wire.varset(self.channel, name, value))

    def _menu(self) -> None:
        if self.phase != "ivr":
            return
        p, ch, s, ivr = self.pbx, self.channel, self.script, self.pbx.spec.ivr
        ch.priority = 3
        p.emit(wire.newexten(ch, "Set", f"{CATEGORY_VAR}=unknown"))
        self._set_var(CATEGORY_VAR, "unknown")
        ch.priority = 4
        p.emit(wire.newexten(ch, "WaitExten", _secs(ivr.wait_exten)))
        if s.choice == "hangup":
            self._later(s.choice_after, self.hangup_requested, ch, HangupCause.NORMAL_CLEARING)
        elif s.choice is not None and s.choice_after < ivr.wait_exten:
            self._later(s.choice_after, self._choose, s.choice)
        else:
            self._later(ivr.wait_exten, self._choose, "t")

    def _choose(self, key: str) -> None:
        if self.phase != "ivr":
            return
        p, ch = self.pbx, self.channel
        options = p.spec.ivr.options
        if key not in options:
            ch.at(exten="i", priority=1)
            p.emit(wire.newexten(ch, "Goto", "t,1"))
            key = "t"
        option = options[key]
        self.key, self.option = key, option
        ch.at(exten=key, priority=1)
        p.emit(wire.newexten(ch, "Set", f"{CATEGORY_VAR}={option.category}"))
        self._set_var(CATEGORY_VAR, option.category)
        p.notify(
            CallChose(call_id=ch.uniqueid, choice=key, category=option.category, at=p.clock.now())
        )
        self.step = 0
        self._enter_queue()

    # ------------------------------------------------------------------ the queues

    def _queue_args(self) -> tuple[str, float]:
        assert self.option is not None
        name, timeout = self.option.queues[self.step]
        return name, timeout if timeout is not None else self.pbx.spec.ivr.queue_timeout

    def _enter_queue(self) -> None:
        p, ch, s = self.pbx, self.channel, self.script
        name, timeout = self._queue_args()
        ch.priority = 2 + self.step
        p.emit(wire.newexten(ch, "Queue", f"{name},,,,{_secs(timeout)}"))
        for var in (
            "ANSWEREDTIME",
            "ANSWEREDTIME_MS",
            "DIALEDTIME",
            "DIALEDTIME_MS",
            "QUEUEWAIT",
            "QUEUEWAIT_MS",
        ):
            self._set_var(var, "")
        queue = p.queues[name]
        now = p.clock.now()
        entry = QueueEntry(self, queue, now, len(queue.entries) + 1)
        queue.entries.append(entry)
        self.entry = entry
        self.phase = "queue"
        p.queue_changed(queue)
        p.emit(wire.queue_caller_join(ch, name, len(queue.entries), len(queue.entries)))
        p.notify(CallQueued(call_id=ch.uniqueid, queue=name, at=now))
        entry.timeout = p.scheduler.call_later(timeout, self._queue_timeout, entry)
        if self.first_join is None:
            self.first_join = now
            if s.patience is not None:
                self._later(s.patience, self._patience_over)
            if s.star_after is not None:
                self._later(s.star_after, self._press_star)
        p.poll(entry)

    def _waited(self, entry: QueueEntry) -> int:
        return int(self.pbx.clock.now()) - int(entry.joined_at)

    def _wait_vars(self, entry: QueueEntry) -> None:
        waited = self._waited(entry)
        dialed = self.pbx.clock.now() - self.channel.created_at
        self._set_var("QUEUEWAIT", str(waited))
        self._set_var("QUEUEWAIT_MS", str(waited * 1000))
        self._set_var("DIALEDTIME", str(int(dialed)))
        self._set_var("DIALEDTIME_MS", str(int(dialed * 1000)))
        self._set_var("ANSWEREDTIME", "0")
        self._set_var("ANSWEREDTIME_MS", "0")

    def _leave_queue(self, entry: QueueEntry) -> None:
        p, queue = self.pbx, entry.queue
        position = queue.position(entry)
        queue.entries.remove(entry)
        entry.left = True
        entry.stop_timers()
        p.queue_changed(queue)
        p.emit(wire.queue_caller_leave(self.channel, queue.name, position, len(queue.entries)))
        self._set_var("QUEUEPOSITION", str(position))
        self.entry = None

    def _abandon_event(self, entry: QueueEntry) -> None:
        queue = entry.queue
        queue.abandoned += 1
        self.pbx.emit(
            wire.queue_caller_abandon(
                self.channel,
                queue.name,
                queue.position(entry),
                entry.original_position,
                self._waited(entry),
            )
        )

    def _queue_timeout(self, entry: QueueEntry) -> None:
        if self.phase != "queue" or self.entry is not entry:
            return
        if entry.ring is not None:
            entry.ring.cancel()
        self._set_var("ABANDONED", "TRUE")
        self._abandon_event(entry)
        self._wait_vars(entry)
        self._leave_queue(entry)
        self._set_var("QUEUESTATUS", "TIMEOUT")
        assert self.option is not None
        if self.step + 1 < len(self.option.queues):
            self.step += 1
            self._enter_queue()
            return
        p, ch = self.pbx, self.channel
        ch.priority = 2 + len(self.option.queues)
        p.emit(wire.newexten(ch, "Goto", "after-queue,s,1"))
        ch.at("after-queue", "s", 1)
        p.emit(wire.newexten(ch, "NoOp", "queue status TIMEOUT"))
        self._request_callback("TIMEOUT")

    def _press_star(self) -> None:
        entry = self.entry
        if self.phase != "queue" or entry is None:
            return
        if entry.ring is not None:
            entry.ring.cancel()
        p, ch = self.pbx, self.channel
        _, timeout = self._queue_args()
        self._wait_vars(entry)
        ch.at("queue-exit", "*", 0)
        p.emit(wire.newexten(ch, "Queue", f"{entry.queue.name},,,,{_secs(timeout)}"))
        self._leave_queue(entry)
        self._request_callback("KEYPRESS")

    def _request_callback(self, reason: str) -> None:
        """after-queue / queue-exit: UserEvent, Wait(1), Hangup()."""
        p, ch = self.pbx, self.channel
        category = ch.variables.get(CATEGORY_VAR, "")
        ch.priority += 1
        p.emit(
            wire.newexten(
                ch, "UserEvent", f"CallbackRequested,Reason: {reason},Category: {category}"
            )
        )
        p.emit(
            wire.user_event(ch, "CallbackRequested", [("Reason", reason), ("Category", category)])
        )
        p.notify(CallbackAsked(call_id=ch.uniqueid, reason=reason, at=p.clock.now()))
        ch.priority += 1
        goodbye = p.spec.goodbye_seconds
        p.emit(wire.newexten(ch, "Wait", _secs(goodbye)))
        self.phase = "goodbye"
        self.outcome = "callback_requested"
        self._later(goodbye, self._goodbye)

    def _goodbye(self) -> None:
        if self.phase != "goodbye":
            return
        p, ch = self.pbx, self.channel
        ch.priority += 1
        p.emit(wire.newexten(ch, "Hangup", ""))
        p.emit(wire.soft_hangup_request(ch, HangupCause.NORMAL_CLEARING))
        p.emit(wire.hangup_request(ch, HangupCause.NORMAL_CLEARING))
        self._hangup_caller(HangupCause.NORMAL_CLEARING, by="pbx")

    def _patience_over(self) -> None:
        if self.phase == "queue":
            self.hangup_requested(self.channel, HangupCause.NORMAL_CLEARING)

    # ------------------------------------------------------------------ ending

    def hangup_requested(self, ch: Channel, cause: int = HangupCause.NORMAL_CLEARING) -> None:
        """Somebody hangs up ``ch`` (the caller, or the Hangup action)."""
        if self.phase == "done":
            return
        if ch is not self.channel:
            if self.connection is not None and ch in self.connection.leg.channels():
                self.connection.agent_hangs_up()
            elif self.entry is not None and self.entry.ring is not None:
                self.entry.ring.ring_no_answer()
            return
        p = self.pbx
        if self.phase == "ivr":
            p.emit(wire.hangup_request(ch, cause))
            p.emit(wire.soft_hangup_request(ch, cause))
            p.emit(wire.hangup_request(ch, cause))
            self.outcome = "ivr_hangup"
            self._hangup_caller(cause, by="caller")
        elif self.phase == "queue":
            self._abandon(cause)
        elif self.phase == "talk" and self.connection is not None:
            self.connection.caller_hangs_up()
        elif self.phase == "goodbye":
            p.emit(wire.hangup_request(ch, cause))
            p.emit(wire.soft_hangup_request(ch, cause))
            self._hangup_caller(cause, by="caller")
        elif self.phase == "new":
            self._hangup_caller(cause, by="caller")

    def _abandon(self, cause: int) -> None:
        entry = self.entry
        assert entry is not None
        p, ch = self.pbx, self.channel
        p.emit(wire.hangup_request(ch, cause))
        if entry.ring is not None:
            entry.ring.cancel()
        self._wait_vars(entry)
        self._set_var("ABANDONED", "TRUE")
        self._abandon_event(entry)
        self._leave_queue(entry)
        p.emit(wire.soft_hangup_request(ch, cause))
        p.emit(wire.hangup_request(ch, cause))
        self.outcome = "abandoned"
        self._hangup_caller(cause, by="caller")

    def _hangup_caller(self, cause: int, *, by: str) -> None:
        p, ch = self.pbx, self.channel
        p.emit(wire.hangup(ch, cause))
        p.gone(ch)
        self._device(DeviceState.NOT_INUSE)
        self._finish(by)

    def _finish(self, by: str) -> None:
        p = self.pbx
        self.phase = "done"
        for timer in self._timers:
            timer.cancel()
        p.calls.pop(self.channel.uniqueid, None)
        p.notify(
            CallEnded(
                call_id=self.channel.uniqueid,
                outcome=self.outcome or "abandoned",
                hung_up_by=by,
                at=p.clock.now(),
            )
        )


class MemberRing:
    """A queue ringing one member for one waiting caller, and the talk if they answer."""

    def __init__(self, pbx: SimPbx, entry: QueueEntry, member: Member) -> None:
        self.pbx = pbx
        self.entry = entry
        self.member = member
        self.agent = member.agent
        self.call = entry.call
        self.leg: AgentLeg
        self.timer: Timer | None = None
        self.bridge: Bridge | None = None
        self.hold = 0
        self.ring_seconds = 0.0
        self.active = True

    def start(self) -> None:
        p, agent, caller = self.pbx, self.agent, self.call.channel
        self.leg = AgentLeg(p, agent, caller.linkedid)
        agent.leg = self.leg
        self.entry.ring = self
        self.leg.create_for_queue(caller)
        queue = self.entry.queue.name
        p.emit(wire.agent_called(caller, self.leg.one, queue, agent.interface, agent.name))
        p.emit(wire.dial_begin(caller, self.leg.one, self.leg.dial_string(queue=True)))
        delay = agent.behaviour.answer_delay(agent.rng, callback=False)
        timeout = self.entry.queue.spec.timeout
        if delay is None or delay >= timeout:
            self._show_ringing()
            self.timer = p.scheduler.call_later(timeout, self.ring_no_answer)
        elif delay > 0:
            self._show_ringing()
            self.timer = p.scheduler.call_later(delay, self.answer)
        else:
            self.timer = p.scheduler.call_later(0, self.answer)

    def _show_ringing(self) -> None:
        p, leg = self.pbx, self.leg
        leg.show_ringing()
        p.emit(wire.dial_state(self.call.channel, leg.one, DialProgress.RINGING))
        p.device(self.agent, DeviceState.INUSE)
        leg.ringing_shown = True
        p.set_status(self.agent, DeviceState.INUSE)

    # ------------------------------------------------------------------ no answer

    def _drop_leg(self, status: DialStatus) -> None:
        """The member's phone stops ringing (rang out, or the caller left)."""
        p, leg, agent = self.pbx, self.leg, self.agent
        self.active = False
        if self.timer is not None:
            self.timer.cancel()
        p.emit(wire.dial_end(self.call.channel, leg.one, status))
        for ch in reversed(leg.channels()):
            p.emit(wire.hangup_request(ch, HangupCause.NORMAL_CLEARING))
            p.emit(wire.hangup(ch, HangupCause.NORMAL_CLEARING))
        p.gone(*leg.channels())
        self.entry.ring = None
        agent.leg = None
        if leg.ringing_shown:
            p.device(agent, DeviceState.NOT_INUSE, times=2)
            p.set_status(agent, DeviceState.NOT_INUSE)

    def ring_no_answer(self) -> None:
        if not self.active:
            return
        p, entry = self.pbx, self.entry
        ring_ms = int((p.clock.now() - self.leg.ring_started_at) * 1000)
        p.emit(
            wire.agent_ring_no_answer(
                self.call.channel,
                self.leg.one,
                entry.queue.name,
                self.agent.interface,
                self.agent.name,
                ring_ms,
            )
        )
        retry = entry.queue.spec.retry
        # Try the other members before this one again.
        entry.skip[self.agent.interface] = p.clock.now() + retry + entry.queue.spec.timeout
        self._drop_leg(DialStatus.NOANSWER)
        entry.poll_timer = p.scheduler.call_later(retry, p.poll, entry)

    def cancel(self) -> None:
        """The caller left the queue while this member was ringing."""
        if self.active:
            self._drop_leg(DialStatus.CANCEL)

    # ------------------------------------------------------------------ answer and talk

    def answer(self) -> None:
        if not self.active:
            return
        p, leg, agent, call, entry = self.pbx, self.leg, self.agent, self.call, self.entry
        caller = call.channel
        queue = entry.queue
        now = p.clock.now()
        self.ring_seconds = now - leg.ring_started_at
        leg.answer()
        p.emit(wire.dial_end(caller, leg.one, DialStatus.ANSWER))
        self.hold = call._waited(entry)
        position = queue.position(entry)
        queue.entries.remove(entry)
        entry.left = True
        entry.stop_timers()
        p.queue_changed(queue)
        p.emit(wire.queue_caller_leave(caller, queue.name, position, len(queue.entries)))
        call._set_var("QUEUEPOSITION", str(position))
        call._set_var("QUEUEWAIT", str(self.hold))
        call._set_var("QUEUEWAIT_MS", str(self.hold * 1000))
        call.entry = None
        entry.ring = None
        p.emit(
            wire.agent_connect(
                caller,
                leg.one,
                queue.name,
                agent.interface,
                agent.name,
                self.hold,
                int(self.ring_seconds),
            )
        )
        bridge = self.bridge = p.new_bridge()
        p.bridge_enter(bridge, leg.one)
        p.bridge_enter(bridge, caller)
        p.emit(wire.varset(leg.one, "BRIDGEPEER", caller.name))
        p.emit(wire.varset(caller, "BRIDGEPEER", leg.one.name))
        p.device(agent, DeviceState.INUSE, times=1 if leg.ringing_shown else 2)
        self.member.in_call = True
        p.set_status(agent, DeviceState.INUSE)
        call.phase = "talk"
        call.connection = self
        for timer in call._timers:
            timer.cancel()
        call._timers.clear()
        queue.hold_total += self.hold
        p.notify(
            CallConnected(call_id=caller.uniqueid, queue=queue.name, agent=agent.interface, at=now)
        )
        agent_talk = agent.behaviour.talk_seconds(agent.rng, callback=False)
        leg.start_talk(agent_talk, after=0.015)
        caller_talk = call.script.talk
        if caller_talk is not None and caller_talk < agent_talk:
            self.timer = p.scheduler.call_later(
                caller_talk, call.hangup_requested, caller, HangupCause.NORMAL_CLEARING
            )
        else:
            self.timer = p.scheduler.call_later(agent_talk, self.agent_hangs_up)

    def _talk_time(self) -> int:
        answered = self.leg.answered_at or self.pbx.clock.now()
        return int(self.pbx.clock.now() - answered)

    def _after_talk(self) -> None:
        p, agent = self.pbx, self.agent
        self.member.in_call = False
        agent.status = DeviceState.NOT_INUSE
        p.call_ended_for(agent, queue_call=True)
        queue = self.entry.queue
        queue.completed += 1
        queue.talk_total += self._talk_time()

    def _stop_talking(self) -> float:
        """The start of either end of a talk: no more timers for this call; its talk time."""
        self.active = False
        if self.timer is not None:
            self.timer.cancel()
        return self._talk_time()

    def agent_hangs_up(self) -> None:
        """answered_by_agent: the agent's dialplan reaches Hangup()."""
        if not self.active or self.call.phase != "talk":
            return
        talk = self._stop_talking()
        p, leg, agent, call = self.pbx, self.leg, self.agent, self.call
        caller, bridge = call.channel, self.bridge
        assert bridge is not None
        if leg.two is not None:
            leg.two.priority = 3
            p.emit(wire.newexten(leg.two, "Hangup", ""))
            p.emit(wire.soft_hangup_request(leg.two, HangupCause.NORMAL_CLEARING))
            p.emit(wire.hangup_request(leg.one, HangupCause.NORMAL_CLEARING))
            p.emit(wire.hangup(leg.two, HangupCause.NORMAL_CLEARING))
        else:
            p.emit(wire.hangup_request(leg.one, HangupCause.NORMAL_CLEARING))
        p.device(agent, DeviceState.NOT_INUSE)
        self._after_talk()
        p.member_status(agent)
        p.emit(
            wire.agent_complete(
                caller,
                leg.one,
                self.entry.queue.name,
                agent.interface,
                agent.name,
                self.hold,
                talk,
                "agent",
            )
        )
        p.emit(wire.varset(leg.one, "BRIDGEPEER", ""))
        p.emit(wire.varset(caller, "BRIDGEPEER", ""))
        p.bridge_leave(bridge, leg.one)
        p.emit(wire.hangup(leg.one, HangupCause.NORMAL_CLEARING))
        p.bridge_leave(bridge, caller)
        p.emit(wire.bridge_destroy(bridge.view()))
        self._answered_vars()
        p.emit(wire.soft_hangup_request(caller, HangupCause.NORMAL_CLEARING))
        p.emit(wire.hangup_request(caller, HangupCause.NORMAL_CLEARING))
        p.device(agent, DeviceState.NOT_INUSE)
        p.gone(*leg.channels())
        call.outcome = "served"
        call._hangup_caller(HangupCause.NORMAL_CLEARING, by="agent")

    def _answered_vars(self) -> None:
        call, now = self.call, self.pbx.clock.now()
        answered = self.leg.answered_at or now
        dialed = now - call.channel.created_at
        call._set_var("ANSWEREDTIME", str(int(now - answered)))
        call._set_var("ANSWEREDTIME_MS", str(int((now - answered) * 1000)))
        call._set_var("DIALEDTIME", str(int(dialed)))
        call._set_var("DIALEDTIME_MS", str(int(dialed * 1000)))

    def caller_hangs_up(self) -> None:
        """busy_hour: the caller hangs up while talking to the agent."""
        if not self.active:
            return
        talk = self._stop_talking()
        p, leg, agent, call = self.pbx, self.leg, self.agent, self.call
        caller, bridge = call.channel, self.bridge
        assert bridge is not None
        p.emit(wire.hangup_request(caller, HangupCause.NORMAL_CLEARING))
        p.emit(
            wire.agent_complete(
                caller,
                leg.one,
                self.entry.queue.name,
                agent.interface,
                agent.name,
                self.hold,
                talk,
                "caller",
            )
        )
        p.emit(wire.varset(caller, "BRIDGEPEER", ""))
        p.emit(wire.varset(leg.one, "BRIDGEPEER", ""))
        p.bridge_leave(bridge, caller)
        self._answered_vars()
        p.emit(wire.soft_hangup_request(caller, HangupCause.NORMAL_CLEARING))
        p.emit(wire.hangup_request(caller, HangupCause.NORMAL_CLEARING))
        p.emit(wire.hangup(caller, HangupCause.NORMAL_CLEARING))
        p.gone(caller)
        p.bridge_leave(bridge, leg.one)
        p.emit(wire.bridge_destroy(bridge.view()))
        if leg.two is not None:
            p.emit(wire.hangup_request(leg.two, HangupCause.NORMAL_CLEARING))
        p.emit(wire.hangup(leg.one, HangupCause.NORMAL_CLEARING))
        if leg.two is not None:
            p.emit(wire.soft_hangup_request(leg.two, HangupCause.NORMAL_CLEARING))
            p.emit(wire.hangup(leg.two, HangupCause.NORMAL_CLEARING))
        p.gone(*leg.channels())
        call._device(DeviceState.NOT_INUSE)
        self._after_talk()
        p.member_status(agent)
        p.device(agent, DeviceState.NOT_INUSE, times=2)
        call.outcome = "served"
        call._finish("caller")
