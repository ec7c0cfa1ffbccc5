"""The state of the simulated PBX: channels, queues, agents, and every AMI event they cause.

``Switch`` is one Asterisk's state: live channels, the queues of queues.conf with their
members, the agents' phones. The call flows (inbound.py: the IVR and the queues; appqueue.py:
a queue ringing its members; originate.py: Originate) drive it; everything they put on the wire
goes through ``emit`` to the listeners (the AMI server, recorders, tests), and what really
happened goes through ``notify`` to the observers (the ledger, the traffic model).

The flows depend on this module, never the other way round: what the switch holds of them (the
calls it hosts, the caller waiting in a queue entry, the member being rung for it, the leg on
an agent's phone) it knows only by the Protocols below, which the flows implement.

Time is the shared clock's; every wait is a Scheduler timer. Nothing here reads the wall clock.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Protocol

import structlog

from callback_dialer.ami.asterisk import ChannelState, DeviceState, HangupCause
from callback_dialer.ami.frames import encode_message

from . import wire
from .astdb import AstDb
from .channels import Bridge, Channel, Identifiers
from .clock import Clock
from .customers import LastDigitCarrier
from .model import AgentSpec, CallerScript, CustomerBehaviour, PbxSpec, QueueSpec
from .observe import Notice, Observer
from .scheduler import Scheduler, Timer

log = structlog.get_logger(__name__)

Listener = Callable[[bytes], None]


# --------------------------------------------------------------------------- what it hosts


class CallFlow(Protocol):
    """A call the PBX hosts (an inbound call, an Originate): the Hangup action finds the flow
    that owns a channel and lets it end its call."""

    def owns(self, ch: Channel) -> bool: ...

    def hangup_requested(self, ch: Channel, cause: int) -> None: ...


class Leg(Protocol):
    """What rings an agent's phone (legs.AgentLeg): the phone is in use while it exists."""

    def channels(self) -> list[Channel]: ...


class QueueRing(Protocol):
    """A queue ringing one member for a waiting caller, then the talk if they answer
    (appqueue.MemberRing), as the caller's call sees it."""

    agent: Agent  # the member's person: whose interface answered (MEMBERINTERFACE)

    def channels(self) -> list[Channel]:
        """The member's channels (the caller's Hangup action may name one of them)."""

    def cancel(self) -> None:
        """The caller left the queue while the member's phone rang."""

    def ring_no_answer(self) -> None:
        """The member's phone stops ringing unanswered."""

    def agent_hangs_up(self) -> None: ...

    def caller_hangs_up(self) -> None: ...


class QueuedCall(CallFlow, Protocol):
    """A caller waiting in a queue (inbound.InboundCall), as app_queue sees it: what it may
    read of the call, and the steps of the call app_queue causes."""

    channel: Channel
    script: CallerScript

    @property
    def talking(self) -> bool:
        """Connected to an agent, and neither has hung up."""

    def leave_answered(self, entry: QueueEntry) -> int:
        """A member answered: the caller leaves ``entry`` (QueueCallerLeave, QUEUEPOSITION,
        QUEUEWAIT); the seconds they waited."""

    def talk_started(self, ring: QueueRing) -> None:
        """The caller talks to the member ``ring`` reached; their own timers stop."""

    def set_answered_vars(self, answered_at: float) -> None:
        """Queue() returns after a talk: ANSWEREDTIME, DIALEDTIME on the caller's channel."""

    def hang_up(self, cause: int, *, outcome: str, by: str) -> None:
        """The dialplan hangs the caller up now: Hangup, the line free, the call over."""

    def line_free(self) -> None:
        """The caller's line (trunk or office phone) shows free, their channel gone."""

    def finish(self, *, outcome: str, by: str) -> None:
        """The call is over (its channels already hung up)."""


# --------------------------------------------------------------------------- state


class Member:
    """One agent in one queue."""

    def __init__(
        self,
        queue: Queue,
        agent: Agent,
        membership: str,
        penalty: int,
        wrapuptime: int,
        login_time: int,
    ) -> None:
        self.queue = queue
        self.agent = agent
        self.membership = membership
        self.penalty = penalty
        self.wrapuptime = wrapuptime
        self.login_time = login_time
        self.paused = False
        self.paused_reason = ""
        self.last_pause = 0
        self.in_call = False

    def view(self) -> wire.MemberView:
        agent = self.agent
        return wire.MemberView(
            queue=self.queue.name,
            name=agent.name,
            interface=agent.interface,
            state_interface=agent.interface,
            membership=self.membership,
            penalty=self.penalty,
            calls_taken=agent.calls_taken,
            last_call=agent.last_call,
            last_pause=self.last_pause,
            login_time=self.login_time,
            in_call=self.in_call,
            status=agent.status,
            paused=self.paused,
            paused_reason=self.paused_reason,
            ringinuse=False,
            wrapuptime=self.wrapuptime,
        )

    def wrapup(self) -> float:
        return float(self.wrapuptime or self.queue.spec.wrapuptime)


class Agent:
    """A phone with a person at it; a queue member when it has memberships."""

    def __init__(self, spec: AgentSpec, rng: random.Random, agent_context: str) -> None:
        self.spec = spec
        self.extension = spec.extension
        self.tech = spec.tech
        self.name = spec.member_name
        if spec.tech == "local":
            self.interface = f"Local/{spec.extension}@{agent_context}/n"
            self.device = f"Local/{spec.extension}@{agent_context}"
        else:
            self.interface = self.device = f"PJSIP/{spec.extension}"
        self.behaviour = spec.behaviour
        self.rng = rng
        self.status = DeviceState.NOT_INUSE
        self.leg: Leg | None = None
        self.calls_taken = 0
        self.last_call = 0
        self.last_call_end = float("-inf")
        self.members: dict[str, Member] = {}

    def free_for_queue(self, member: Member, now: float) -> bool:
        return (
            not member.paused
            and self.leg is None
            and self.status == DeviceState.NOT_INUSE
            and now >= self.last_call_end + member.wrapup()
        )


class QueueEntry:
    """A caller waiting in a queue."""

    def __init__(self, call: QueuedCall, queue: Queue, joined_at: float, position: int) -> None:
        self.call = call
        self.queue = queue
        self.joined_at = joined_at
        self.original_position = position
        self.timeout: Timer | None = None
        self.poll_timer: Timer | None = None
        self.ring: QueueRing | None = None
        self.skip: dict[str, float] = {}  # interface -> until: members that just rang out
        self.left = False

    def stop_timers(self) -> None:
        for timer in (self.timeout, self.poll_timer):
            if timer is not None:
                timer.cancel()


class Queue:
    def __init__(self, spec: QueueSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.members: list[Member] = []
        self.entries: list[QueueEntry] = []
        self.rr_next = 0
        self.completed = 0
        self.abandoned = 0
        self.hold_total = 0.0
        self.talk_total = 0.0
        self.device_state = DeviceState.NOT_INUSE  # Queue:<name>: RINGING while callers wait
        self.avail_state = DeviceState.UNKNOWN  # Queue:<name>_avail, once the members are known

    def position(self, entry: QueueEntry) -> int:
        return self.entries.index(entry) + 1

    def member(self, agent: Agent) -> Member | None:
        return agent.members.get(self.name)


class Switch:
    def __init__(
        self,
        clock: Clock,
        spec: PbxSpec | None = None,
        *,
        customers: CustomerBehaviour | None = None,
    ) -> None:
        self.clock = clock
        self.spec = spec or PbxSpec()
        self.rng = random.Random(self.spec.seed)
        self.ids = Identifiers(random.Random(self.spec.seed + 1))
        self.scheduler = Scheduler(clock)
        self.customers: CustomerBehaviour = customers or LastDigitCarrier()
        self.listeners: list[Listener] = []
        self.observers: list[Observer] = []
        self.channels: dict[str, Channel] = {}  # uniqueid -> live channel
        # Asterisk's queue_log file, line by line: app_queue's own lines and the QueueLog
        # action's ("time|uniqueid|queue|agent|event|data...").
        self.queue_log: list[str] = []
        self.queues: dict[str, Queue] = {q.name: Queue(q) for q in self.spec.queues}
        # Asterisk walks its queue and member containers in reverse order of definition
        # (QueueStatus, QueueMemberStatus in the captures): so do we.
        self.queue_order: list[str] = [q.name for q in reversed(self.spec.queues)]
        self.agents: dict[str, Agent] = {}
        self.calls: dict[str, CallFlow] = {}  # live inbound calls by call id
        self.originates: dict[str, CallFlow] = {}  # live originates by ActionID
        self.events_emitted = 0
        self.astdb = AstDb()  # what the dialplan's hangup handlers write (astdb.py)
        now = int(clock.now())
        for i, spec_ in enumerate(self.spec.agents):
            self._add_agent(spec_, random.Random(self.spec.seed * 1000 + i + 7), now)
        for queue in self.queues.values():
            queue.avail_state = self._avail_state(queue)

    # ------------------------------------------------------------------ set-up

    def _add_agent(self, spec: AgentSpec, rng: random.Random, now: int) -> Agent:
        agent = Agent(spec, rng, self.spec.agent_context)
        self.agents[agent.interface] = agent
        if spec.logged_in:
            for name in spec.queues:
                member = self._make_member(agent, name, spec.membership, now)
                member.paused = spec.paused
                member.paused_reason = spec.paused_reason
                member.last_pause = now if spec.paused else 0
        return agent

    def add_agent(self, spec: AgentSpec) -> Agent:
        """A new phone (and, logged in, its queue memberships: static, no events)."""
        index = len(self.agents)
        return self._add_agent(
            spec, random.Random(self.spec.seed * 1000 + index + 7), int(self.clock.now())
        )

    def _make_member(self, agent: Agent, queue_name: str, membership: str, now: int) -> Member:
        queue = self.queues[queue_name]
        member = Member(queue, agent, membership, agent.spec.penalty, agent.spec.wrapuptime, now)
        queue.members.append(member)
        # Keep the agent's memberships in the order Asterisk reports them.
        members = dict(agent.members)
        members[queue_name] = member
        agent.members = {q: members[q] for q in self.queue_order if q in members}
        return member

    # ------------------------------------------------------------------ output

    def emit(self, pairs: list[tuple[str, str]]) -> None:
        if pairs[0][1] == "Newexten":
            self._running(pairs)
        data = encode_message(pairs)
        self.events_emitted += 1
        for listener in self.listeners:
            try:
                listener(data)
            except Exception:
                log.exception("simulated PBX listener failed")

    def _running(self, pairs: list[tuple[str, str]]) -> None:
        """What a channel is running now (CoreShowChannels, Status), from its Newexten."""
        fields = dict(pairs)
        ch = self.channels.get(fields.get("Uniqueid", ""))
        if ch is not None:
            ch.application = fields.get("Application", "")
            ch.app_data = fields.get("AppData", "")

    def notify(self, event: Notice) -> None:
        for observer in self.observers:
            try:
                observer.notice(event)
            except Exception:
                log.exception("simulated PBX observer failed", notice=type(event).__name__)

    # ------------------------------------------------------------------ channels

    def new_channel(
        self,
        name: str,
        uniqueid: str,
        linkedid: str,
        context: str,
        exten: str,
        *,
        state: ChannelState = ChannelState.DOWN,
        tech: str = "",
    ) -> Channel:
        self.ids.reserve(uniqueid)
        ch = Channel(
            name=name,
            uniqueid=uniqueid,
            linkedid=linkedid,
            context=context,
            exten=exten,
            created_at=self.clock.now(),
            channelvars=self.spec.channelvars,
            state=state,
            tech=tech,
        )
        self.channels[uniqueid] = ch
        return ch

    def gone(self, *channels: Channel | None) -> None:
        """Channels that have sent their Hangup."""
        for ch in channels:
            if ch is not None:
                ch.hung_up = True
                self.channels.pop(ch.uniqueid, None)

    def channel_named(self, name: str) -> Channel | None:
        for ch in self.channels.values():
            if ch.name == name:
                return ch
        return None

    def trunk_channel(self, linkedid: str, *, outbound: bool) -> Channel:
        now = self.clock.now()
        uid = self.ids.uniqueid(now)
        name = f"IAX2/{self.spec.trunk}-{self.ids.trunk_call_number()}"
        if outbound:
            # Dialled with the trunk's dial string: a channel of its technology.
            tech = self.spec.trunk_tech
            name = f"{tech}/{name.partition('/')[2]}"
            return self.new_channel(
                name, uid, linkedid, "default", "s", state=ChannelState.DOWN, tech=tech
            )
        return self.new_channel(
            name, uid, uid, self.spec.ivr.context, "s", state=ChannelState.RING, tech="IAX2"
        )

    def log_queue(self, queue: str, uniqueid: str, agent: str, event: str, data: str) -> None:
        """One queue_log line, as ast_queue_log writes it to the file."""
        self.queue_log.append(
            f"{int(self.clock.now())}|{uniqueid or 'NONE'}|{queue}|{agent}|{event}|{data}"
        )

    def trunk_state(self) -> None:
        """DeviceStateChange of the trunk after one of its channels changed."""
        prefix = f"IAX2/{self.spec.trunk}-"
        states = [c.state for c in self.channels.values() if c.name.startswith(prefix)]
        if any(s == ChannelState.UP for s in states):
            state = DeviceState.INUSE
        elif any(s == ChannelState.RINGING for s in states):
            state = DeviceState.RINGING
        elif states:
            state = DeviceState.INUSE
        else:
            state = DeviceState.UNKNOWN
        self.emit(wire.device_state_change(f"IAX2/{self.spec.trunk}", state))

    def new_bridge(self) -> Bridge:
        bridge = Bridge(self.ids.bridge_id())
        self.emit(wire.bridge_create(bridge.view()))
        return bridge

    def bridge_enter(self, bridge: Bridge, ch: Channel) -> None:
        bridge.members.append(ch)
        ch.bridge = bridge
        self.emit(wire.bridge_enter(bridge.view(), ch))

    def bridge_leave(self, bridge: Bridge, ch: Channel) -> None:
        if ch in bridge.members:
            bridge.members.remove(ch)
        ch.bridge = None
        self.emit(wire.bridge_leave(bridge.view(), ch))

    # ------------------------------------------------------------------ agents

    def agent(self, key: str) -> Agent | None:
        """By interface (``Local/101@agents/n``, ``PJSIP/101``) or extension (``101``)."""
        found = self.agents.get(key)
        if found is not None:
            return found
        for agent in self.agents.values():
            if key in (agent.extension, agent.device):
                return agent
        return None

    def member_status(self, agent: Agent) -> None:
        """QueueMemberStatus for each of the agent's queues, then the queues' availability."""
        for member in agent.members.values():
            self.emit(wire.queue_member_event("QueueMemberStatus", member.view()))
            self._avail_changed(member.queue)

    def set_status(self, agent: Agent, status: DeviceState, *, announce: bool = True) -> None:
        agent.status = status
        if announce:
            self.member_status(agent)

    def device(self, agent: Agent, state: DeviceState, times: int = 1) -> None:
        for _ in range(times):
            self.emit(wire.device_state_change(agent.device, state))

    def _avail_state(self, queue: Queue) -> DeviceState:
        # Follows what the wire already said (device states, pauses), not wrap-up.
        free = any(not m.paused and m.agent.status == DeviceState.NOT_INUSE for m in queue.members)
        return DeviceState.NOT_INUSE if free else DeviceState.INUSE

    def _avail_changed(self, queue: Queue) -> None:
        state = self._avail_state(queue)
        if state != queue.avail_state:
            queue.avail_state = state
            self.emit(wire.device_state_change(f"Queue:{queue.name}_avail", state))

    def call_ended_for(self, agent: Agent, *, queue_call: bool) -> None:
        """An agent's call is over: wrap-up starts; the queues may ring them once it ends."""
        now = self.clock.now()
        agent.leg = None
        if queue_call:
            # Asterisk's wrap-up counts from a member's last queue call only.
            agent.last_call_end = now
            agent.calls_taken += 1
            agent.last_call = int(now)

    def pause(self, key: str, paused: bool, reason: str = "", queue: str | None = None) -> bool:
        """QueuePause: in one queue or all of the agent's queues."""
        agent = self.agent(key)
        if agent is None or not agent.members:
            return False
        now = int(self.clock.now())
        for member in list(agent.members.values()):
            if queue is not None and member.queue.name != queue:
                continue
            device = f"Queue:{member.queue.name}_pause_{agent.interface}"
            self.emit(wire.device_state_change(device, _in_use(paused)))
            if paused:
                member.paused, member.paused_reason, member.last_pause = True, reason, now
            else:
                member.paused = False
                # Asterisk's unpause event still names the reason of the pause it ends.
                member.paused_reason = reason or member.paused_reason
            self._avail_changed(member.queue)
            self.emit(wire.queue_member_event("QueueMemberPause", member.view()))
            if not paused:
                member.paused_reason = ""
        return True

    def add_member(
        self, key: str, queue_name: str, *, paused: bool = False, reason: str = ""
    ) -> bool:
        agent = self.agent(key)
        if agent is None or queue_name not in self.queues or queue_name in agent.members:
            return False
        now = int(self.clock.now())
        member = self._make_member(agent, queue_name, "dynamic", now)
        member.paused, member.paused_reason = paused, reason
        self.emit(
            wire.device_state_change(f"Queue:{queue_name}_pause_{agent.interface}", _in_use(paused))
        )
        self.emit(wire.queue_member_event("QueueMemberAdded", member.view()))
        self._avail_changed(member.queue)
        return True

    def remove_member(self, key: str, queue_name: str) -> bool:
        agent = self.agent(key)
        if agent is None or queue_name not in agent.members:
            return False
        member = agent.members.pop(queue_name)
        member.queue.members.remove(member)
        self.emit(wire.queue_member_event("QueueMemberRemoved", member.view()))
        self._avail_changed(member.queue)
        return True

    # ------------------------------------------------------------------ queues

    def queue_changed(self, queue: Queue) -> None:
        """Queue:<name> is RINGING while callers wait, NOT_INUSE when nobody does."""
        state = DeviceState.RINGING if queue.entries else DeviceState.NOT_INUSE
        if state != queue.device_state:
            queue.device_state = state
            self.emit(wire.device_state_change(f"Queue:{queue.name}", state))

    # ------------------------------------------------------------------ calls

    def hangup_channel(self, ch: Channel, cause: int = HangupCause.NORMAL_CLEARING) -> bool:
        """The Hangup action: whoever owns the channel ends its call."""
        for call in list(self.calls.values()):
            if call.owns(ch):
                self.scheduler.run(call.hangup_requested, ch, cause)
                return True
        for origination in list(self.originates.values()):
            if origination.owns(ch):
                self.scheduler.run(origination.hangup_requested, ch, cause)
                return True
        return False

    async def close(self) -> None:
        await self.scheduler.close()


def _in_use(paused: bool) -> DeviceState:
    """Queue:<queue>_pause_<interface>: in use while the member is paused there."""
    return DeviceState.INUSE if paused else DeviceState.NOT_INUSE
