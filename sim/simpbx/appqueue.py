"""app_queue's side of a queue call: a waiting caller's turn, the member rung, the talk.

``poll`` is one caller's look at the queue (autofill, rrmemory, wrap-up, members that just
rang out); ``MemberRing`` rings the member it picked and, if they answer, bridges them with the
caller and plays the talk to its end. The caller's own call (inbound.py) is known here only
by its ``QueuedCall`` interface: app_queue moves it through its steps, never its state.

Every event sequence below is the captures' (answered_by_agent, busy_hour), in their order.
"""

from __future__ import annotations

from callback_dialer.ami.asterisk import DeviceState, DialProgress, DialStatus, HangupCause

from . import wire
from .channels import Bridge, Channel
from .legs import AgentLeg
from .observe import CallConnected
from .scheduler import Timer
from .switch import Member, Queue, QueueEntry, Switch

# app_queue.c: ``#define RECHECK 1`` -- a caller whose turn has not come (wait_our_turn)
# looks again every second; after ringing a member who did not answer it waits ``retry``
# (wait_a_bit).
RECHECK = 1.0


def poll(pbx: Switch, entry: QueueEntry) -> None:
    """A waiting caller's turn at the queue, as app_queue does it: when enough members are
    free for everyone ahead (autofill, is_our_turn), ring the next one in rrmemory order
    (never a member whose phone is in use, paused or in wrap-up); otherwise look again after
    RECHECK. A member who becomes free or is unpaused is only noticed at a caller's next
    look: up to a second later on a real Asterisk 22, which is the window in which a dialer
    reacting in milliseconds takes the agent first."""
    queue = entry.queue
    if entry.ring is not None or entry.left:
        return
    now = pbx.clock.now()
    ahead = 0
    for other in queue.entries:
        if other is entry:
            break
        if other.ring is None:
            ahead += 1
    member = _next_member(queue, entry, now, ahead)
    if member is None:
        entry.poll_timer = pbx.scheduler.call_later(RECHECK, poll, pbx, entry)
        return
    MemberRing(pbx, entry, member).start()


def _next_member(queue: Queue, entry: QueueEntry, now: float, ahead: int) -> Member | None:
    """The first free member after the last one rung, if more members are free than
    callers are waiting ahead of this one (one pass over the members)."""
    members = queue.members
    count = len(members)
    chosen: tuple[int, Member] | None = None
    free = 0
    for step in range(count):
        index = (queue.rr_next + step) % count
        member = members[index]
        if (
            member.agent.free_for_queue(member, now)
            and entry.skip.get(member.agent.interface, 0.0) <= now
        ):
            free += 1
            if chosen is None:
                chosen = (index, member)
            if free > ahead:
                break
    if chosen is None or free <= ahead:
        return None
    queue.rr_next = (chosen[0] + 1) % count
    return chosen[1]


class MemberRing:
    """A queue ringing one member for one waiting caller, and the talk if they answer."""

    def __init__(self, pbx: Switch, entry: QueueEntry, member: Member) -> None:
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

    def channels(self) -> list[Channel]:
        return self.leg.channels()

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
        entry.poll_timer = p.scheduler.call_later(retry, poll, p, entry)

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
        self.hold = call.leave_answered(entry)
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
        call.talk_started(self)
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
        if not self.active or not self.call.talking:
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
        call.set_answered_vars(leg.answered_at or p.clock.now())
        p.emit(wire.soft_hangup_request(caller, HangupCause.NORMAL_CLEARING))
        p.emit(wire.hangup_request(caller, HangupCause.NORMAL_CLEARING))
        p.device(agent, DeviceState.NOT_INUSE)
        p.gone(*leg.channels())
        call.hang_up(HangupCause.NORMAL_CLEARING, outcome="served", by="agent")

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
        call.set_answered_vars(leg.answered_at or p.clock.now())
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
        call.line_free()
        self._after_talk()
        p.member_status(agent)
        p.device(agent, DeviceState.NOT_INUSE, times=2)
        call.finish(outcome="served", by="caller")
