"""Agents, live: who is free to take a callback right now, and for which categories.

Built from ``QueueStatus`` after every (re)connect, then kept current by QueueMemberStatus,
QueueMemberAdded/Removed/Pause and the queue's AgentCalled/Connect/Complete events. One person
in several queues is one agent, keyed by interface (``PJSIP/101``, ``Local/101@agents/n``).

An agent is free for a category when they are a member of a queue that serves it
(``dispatch.queues``), not paused there, their device is not in use (Status 1) and not InCall,
their wrap-up is over (Asterisk's Wrapuptime or our ``wrapup_seconds``, the longer), they are
not resting after a callback that rang out, and no callback is reserved for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..ami.asterisk import BUSY_DEVICE_STATES, DeviceState
from ..ami.frames import AmiMessage
from ..clock import Clock
from ..config import Config


@dataclass(slots=True)
class Membership:
    queue: str
    paused: bool = False
    paused_reason: str = ""
    in_call: bool = False
    wrapuptime: float = 0.0


@dataclass(slots=True)
class _Agent:
    interface: str
    name: str = ""
    memberships: dict[str, Membership] = field(default_factory=dict)
    status: int = DeviceState.NOT_INUSE
    busy: bool = False
    last_call_end: float = 0.0
    cooldown_until: float = 0.0
    reserved_for: str = ""
    since: float = 0.0  # when the current state began (for "free for N minutes")

    def in_call(self) -> bool:
        return any(m.in_call for m in self.memberships.values())

    def wrapup(self, ours: float) -> float:
        return max([ours, *(m.wrapuptime for m in self.memberships.values())])


@dataclass(frozen=True, slots=True)
class AgentView:
    interface: str
    name: str
    state: str  # free | ringing | talking | wrapup | paused | unavailable | cooldown | reserved
    paused_reason: str
    queues: tuple[str, ...]
    categories: tuple[str, ...]
    since: float
    reserved_for: str = ""


@dataclass(slots=True)
class QueueAgents:
    logged_in: int = 0
    free: int = 0
    on_live: int = 0
    on_callbacks: int = 0
    paused: int = 0


def channel_prefix(interface: str) -> str:
    """``PJSIP/101`` -> ``PJSIP/101-``; ``Local/101@agents/n`` -> ``Local/101@agents-``:
    the start of the names of that device's channels."""
    tech, _, rest = interface.partition("/")
    if tech.lower() == "local":
        rest = rest.split("/", 1)[0]
    return f"{tech}/{rest}-"


class AgentBook:
    HANDLERS = {
        "QueueMember": "on_member",
        "QueueMemberStatus": "on_member",
        "QueueMemberAdded": "on_member",
        "QueueMemberPause": "on_member",
        "QueueMemberPaused": "on_member",
        "QueueMemberRemoved": "on_removed",
        "QueueStatusComplete": "on_status_complete",
        "AgentCalled": "on_agent_called",
        "AgentConnect": "on_agent_connect",
        "AgentComplete": "on_agent_complete",
        "AgentRingNoAnswer": "on_agent_ring_no_answer",
    }

    def __init__(
        self,
        config: Config,
        clock: Clock,
        on_change: Callable[[str], None] | None = None,
        on_rest: Callable[[float], None] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.on_change = on_change
        # Told when an agent's wrap-up or cool-down will end, so that the dispatcher wakes then.
        self.on_rest = on_rest
        self.serves = {q: tuple(cats) for q, cats in config.dispatch.queues.items()}
        self.wrapup_seconds = config.dispatch.wrapup_seconds
        self.agents: dict[str, _Agent] = {}
        self._prefixes: dict[str, str] = {}
        self._resync_seen: set[tuple[str, str]] | None = None

    # ------------------------------------------------------------------ events

    def begin_resync(self) -> None:
        """A QueueStatus is on its way: members it does not list have left meanwhile."""
        self._resync_seen = set()

    def on_member(self, message: AmiMessage) -> None:
        fields = message.fields
        interface = fields.get("Interface") or fields.get("Location") or ""
        queue = fields.get("Queue", "")
        if not interface or not queue:
            return
        now = self.clock.now()
        agent = self.agents.get(interface)
        if agent is None:
            agent = self.agents[interface] = _Agent(interface=interface, since=now)
            self._prefixes[interface] = channel_prefix(interface)
        agent.name = fields.get("MemberName") or fields.get("Name") or agent.name
        member = agent.memberships.get(queue)
        # A new membership may make the agent free for categories they could not serve before.
        was_free = member is not None and self._free_somewhere(agent, now)
        if member is None:
            member = agent.memberships[queue] = Membership(queue=queue)
        if "Paused" in fields:
            member.paused = fields["Paused"] == "1"
            member.paused_reason = fields.get("PausedReason", "") if member.paused else ""
        if "InCall" in fields:
            member.in_call = fields["InCall"] == "1"
        wrapup = fields.get("Wrapuptime", "")
        if wrapup.isdigit():
            member.wrapuptime = float(wrapup)
        status_text = fields.get("Status", "")
        if status_text.isdigit():
            self._set_status(agent, int(status_text), now)
        if self._resync_seen is not None:
            # Live events during a resync describe members who exist now, also one added
            # after Asterisk built the list it is sending.
            self._resync_seen.add((interface, queue))
        if fields.get("Event") == "QueueMember":
            last_call = fields.get("LastCall", "")
            if last_call.isdigit() and 0 < int(last_call) <= now + 5:
                agent.last_call_end = max(agent.last_call_end, float(last_call))
        self._changed(agent, was_free, now)

    def on_removed(self, message: AmiMessage) -> None:
        interface = message.fields.get("Interface") or message.fields.get("Location") or ""
        agent = self.agents.get(interface)
        if agent is None:
            return
        agent.memberships.pop(message.fields.get("Queue", ""), None)
        if not agent.memberships and not agent.reserved_for:
            del self.agents[interface]
            self._prefixes.pop(interface, None)

    def on_status_complete(self, message: AmiMessage) -> None:
        seen, self._resync_seen = self._resync_seen, None
        if seen is None:
            return
        for agent in list(self.agents.values()):
            for queue in [q for q in agent.memberships if (agent.interface, q) not in seen]:
                del agent.memberships[queue]
            if not agent.memberships and not agent.reserved_for:
                del self.agents[agent.interface]
                self._prefixes.pop(agent.interface, None)
        now = self.clock.now()
        for agent in self.agents.values():
            self._changed(agent, False, now)

    def on_agent_called(self, message: AmiMessage) -> None:
        agent = self.agents.get(message.fields.get("Interface", ""))
        if agent is not None:
            self._set_status(agent, DeviceState.RINGING, self.clock.now())

    def on_agent_connect(self, message: AmiMessage) -> None:
        agent = self.agents.get(message.fields.get("Interface", ""))
        if agent is not None:
            self._set_status(agent, DeviceState.INUSE, self.clock.now())

    def on_agent_complete(self, message: AmiMessage) -> None:
        agent = self.agents.get(message.fields.get("Interface", ""))
        if agent is not None:
            now = self.clock.now()
            agent.last_call_end = now
            self._changed(agent, False, now)

    def on_agent_ring_no_answer(self, message: AmiMessage) -> None:
        agent = self.agents.get(message.fields.get("Interface", ""))
        if agent is not None:
            now = self.clock.now()
            was_free = self._free_somewhere(agent, now)
            if agent.status in (DeviceState.RINGING, DeviceState.RINGINUSE):
                self._set_status(agent, DeviceState.NOT_INUSE, now)
            self._changed(agent, was_free, now)

    def _set_status(self, agent: _Agent, status: int, now: float) -> None:
        busy = status in BUSY_DEVICE_STATES
        if agent.busy and not busy:
            agent.last_call_end = now  # a call just ended: wrap-up starts now
        if busy != agent.busy or status != agent.status:
            agent.since = now
        agent.busy = busy
        agent.status = status

    def _changed(self, agent: _Agent, was_free: bool, now: float) -> None:
        if self.on_change is not None and not was_free and self._free_somewhere(agent, now):
            self.on_change(agent.interface)
        elif self.on_rest is not None:
            rest_ends = self._rest_ends(agent)
            if rest_ends > now:
                self.on_rest(rest_ends)

    # ------------------------------------------------------------------ questions

    def categories_for(self, interface: str) -> tuple[str, ...]:
        """Categories the agent may call back now (unpaused memberships), in config order."""
        agent = self.agents.get(interface)
        if agent is None:
            return ()
        wanted: set[str] = set()
        for queue, member in agent.memberships.items():
            if not member.paused:
                wanted.update(self.serves.get(queue, ()))
        return tuple(c for c in self.config.category_names() if c in wanted)

    def all_categories_for(self, interface: str) -> tuple[str, ...]:
        agent = self.agents.get(interface)
        if agent is None:
            return ()
        wanted = {c for q in agent.memberships for c in self.serves.get(q, ())}
        return tuple(c for c in self.config.category_names() if c in wanted)

    def answering_queues(self, interface: str) -> tuple[str, ...]:
        """The queues that would ring this agent for a live caller now: every queue they
        are an unpaused member of, whether or not it serves a callback category."""
        agent = self.agents.get(interface)
        if agent is None:
            return ()
        return tuple(sorted(q for q, m in agent.memberships.items() if not m.paused))

    def queue_counts(self) -> dict[str, QueueAgents]:
        """Per queue: members logged in (device not unavailable), free now, on a live call,
        on a callback (reserved for one of our attempts), paused."""
        now = self.clock.now()
        out: dict[str, QueueAgents] = {}
        for agent in self.agents.values():
            unavailable = agent.status in (DeviceState.UNAVAILABLE, DeviceState.INVALID)
            available = self._available(agent, now)
            for queue, member in agent.memberships.items():
                c = out.setdefault(queue, QueueAgents())
                if unavailable:
                    continue
                c.logged_in += 1
                if agent.reserved_for:
                    c.on_callbacks += 1
                elif agent.busy or agent.in_call():
                    c.on_live += 1
                elif member.paused:
                    c.paused += 1
                elif available:
                    c.free += 1
        return out

    def _free_somewhere(self, agent: _Agent, now: float) -> bool:
        return self._available(agent, now) and bool(self.categories_for(agent.interface))

    def _available(self, agent: _Agent, now: float) -> bool:
        return (
            agent.status == DeviceState.NOT_INUSE
            and not agent.busy
            and not agent.in_call()
            and not agent.reserved_for
            and now >= self._rest_ends(agent)
        )

    def _wrapup_ends(self, agent: _Agent) -> float:
        return agent.last_call_end + agent.wrapup(self.wrapup_seconds)

    def _rest_ends(self, agent: _Agent) -> float:
        """When both the wrap-up after the agent's last call and our cool-down are over."""
        return max(agent.cooldown_until, self._wrapup_ends(agent))

    def is_free(self, interface: str, category: str | None = None) -> bool:
        agent = self.agents.get(interface)
        if agent is None or not self._available(agent, self.clock.now()):
            return False
        cats = self.categories_for(interface)
        return bool(cats) if category is None else category in cats

    def still_free_for(self, interface: str, callback_id: str) -> bool:
        """Free, but for the reservation this callback holds on them."""
        agent = self.agents.get(interface)
        if agent is None or agent.reserved_for not in ("", callback_id):
            return False
        reserved, agent.reserved_for = agent.reserved_for, ""
        try:
            return self._available(agent, self.clock.now())
        finally:
            agent.reserved_for = reserved

    def free_agents(self) -> list[str]:
        """Interfaces free for some category now, the longest idle first."""
        now = self.clock.now()
        free = [a for a in self.agents.values() if self._free_somewhere(a, now)]
        free.sort(key=lambda a: (max(a.last_call_end, a.since), a.interface))
        return [a.interface for a in free]

    def next_change_at(self, after: float | None = None) -> float | None:
        """The first moment after ``after`` (default: now) at which an agent's wrap-up or
        cool-down ends: the dispatcher wakes then."""
        since = self.clock.now() if after is None else after
        times = []
        for agent in self.agents.values():
            for t in (agent.cooldown_until, self._wrapup_ends(agent)):
                if t > since:
                    times.append(t)
        return min(times) if times else None

    def is_agent_channel(self, channel: str) -> bool:
        return any(channel.startswith(p) for p in self._prefixes.values())

    # ------------------------------------------------------------------ reservations

    def reserve(self, interface: str, callback_id: str) -> None:
        agent = self.agents.get(interface)
        if agent is not None:
            agent.reserved_for = callback_id

    def unreserve(self, interface: str, *, cooldown: float = 0.0) -> None:
        agent = self.agents.get(interface)
        if agent is None:
            return
        now = self.clock.now()
        agent.reserved_for = ""
        if cooldown:
            agent.cooldown_until = max(agent.cooldown_until, now + cooldown)
        else:
            self._changed(agent, False, now)

    # ------------------------------------------------------------------ the page

    def views(self) -> list[AgentView]:
        now = self.clock.now()
        out = []
        for agent in sorted(self.agents.values(), key=lambda a: a.interface):
            paused = [m for m in agent.memberships.values() if m.paused]
            if agent.reserved_for:
                state = "reserved"
            elif agent.status in (DeviceState.RINGING, DeviceState.RINGINUSE):
                state = "ringing"
            elif agent.busy or agent.in_call():
                state = "talking"
            elif agent.status in (DeviceState.UNAVAILABLE, DeviceState.INVALID):
                state = "unavailable"
            elif paused and len(paused) == len(agent.memberships):
                state = "paused"
            elif now < agent.cooldown_until:
                state = "cooldown"
            elif now < self._wrapup_ends(agent):
                state = "wrapup"
            else:
                state = "free"
            out.append(
                AgentView(
                    interface=agent.interface,
                    name=agent.name,
                    state=state,
                    paused_reason=paused[0].paused_reason if paused else "",
                    queues=tuple(sorted(agent.memberships)),
                    categories=self.all_categories_for(agent.interface),
                    since=agent.since,
                    reserved_for=agent.reserved_for,
                )
            )
        return out
