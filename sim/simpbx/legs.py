"""The channels that ring an agent's phone, created the way Asterisk creates them.

An agent reached as ``Local/101@agents/n`` (the captures' members) is a pair of Local channels:
``;1`` faces whoever dials (the queue, an Originate) and ``;2`` runs the ``agents`` dialplan
(Answer, Wait, Hangup). An agent reached as ``PJSIP/101`` is one channel. The flows in
inbound.py and originate.py drive a leg through ring, answer and hangup; this module knows the
names, ids and the creation sequences.
"""

from __future__ import annotations

from callback_dialer.ami.asterisk import UNKNOWN_ID, ChannelState

from . import wire
from .channels import Channel
from .switch import Agent, Switch


def split_local(target: str) -> tuple[str, str, bool]:
    """``Local/101@agents/n`` -> (``101``, ``agents``, optimization allowed)."""
    rest = target.split("/", 1)[1]
    options = ""
    if "/" in rest:
        rest, options = rest.split("/", 1)
    exten, _, context = rest.partition("@")
    return exten, context or "default", "n" not in options


class AgentLeg:
    """One agent's phone being rung: ``one`` is the channel the dialler talks to, ``two`` the
    Local ;2 that runs the agents dialplan (None for a PJSIP phone)."""

    def __init__(
        self, pbx: Switch, agent: Agent, linkedid: str | None, one_uid: str = "", two_uid: str = ""
    ) -> None:
        self.pbx = pbx
        self.agent = agent
        now = pbx.clock.now()
        self.one: Channel
        self.two: Channel | None
        uid1 = one_uid or pbx.ids.uniqueid(now)
        lid = linkedid or uid1
        if agent.tech == "local":
            suffix = pbx.ids.local_suffix()
            base = f"Local/{agent.extension}@{pbx.spec.agent_context}-{suffix}"
            self.one = pbx.new_channel(
                base + ";1",
                uid1,
                lid,
                pbx.spec.agent_context,
                agent.extension,
                state=ChannelState.DOWN,
                tech="Local",
            )
            uid2 = two_uid or pbx.ids.uniqueid(now)
            self.two = pbx.new_channel(
                base + ";2",
                uid2,
                lid,
                pbx.spec.agent_context,
                agent.extension,
                state=ChannelState.RING,
                tech="Local",
            )
        else:
            suffix = pbx.ids.local_suffix()
            self.one = pbx.new_channel(
                f"PJSIP/{agent.extension}-{suffix}",
                uid1,
                lid,
                pbx.spec.pjsip_context,
                "s",
                state=ChannelState.DOWN,
                tech="PJSIP",
            )
            self.two = None
        self.answered_at: float | None = None
        self.ring_started_at = now
        self.ringing_shown = False  # the device's ringing state was put on the wire

    @property
    def local(self) -> bool:
        return self.two is not None

    def channels(self) -> list[Channel]:
        return [c for c in (self.one, self.two) if c is not None]

    # ------------------------------------------------------------------ creation

    def create_for_queue(self, caller: Channel) -> None:
        """Newchannel .. LocalBridge, as app_queue dials a Local member (busy_hour)."""
        p, one, two, agent = self.pbx, self.one, self.two, self.agent
        p.emit(wire.newchannel(one))
        if two is None:
            one.caller_num, one.caller_name = caller.caller_num, caller.caller_name
            one.connected_num, one.connected_name = caller.caller_num, caller.caller_name
            p.emit(wire.newcallerid(one))
            p.emit(wire.newconnectedline(one))
            return
        p.emit(wire.newchannel(two))
        one.caller_num = caller.exten
        p.emit(wire.newexten(one, "AppQueue", "(Outgoing Line)"))
        p.emit(wire.newcallerid(one))
        one.exten = caller.exten
        one.connected_num, one.connected_name = caller.caller_num, caller.caller_name
        p.emit(wire.newexten(one, "AppQueue", "(Outgoing Line)"))
        p.emit(wire.newconnectedline(one))
        peer = f"{agent.extension}@{p.spec.agent_context}/n"
        p.emit(wire.varset(one, "DIALEDPEERNUMBER", peer))
        p.emit(wire.varset(two, "DIALEDPEERNUMBER", peer))
        two.caller_num, two.caller_name = caller.caller_num, caller.caller_name
        two.connected_num, two.connected_name = caller.exten, UNKNOWN_ID
        p.emit(wire.newcallerid(two))
        p.emit(wire.newconnectedline(two))
        p.emit(wire.local_bridge(one, two, p.spec.agent_context, agent.extension, False))

    def create_for_dial(self, dialer: Channel, optimize: bool = True) -> None:
        """Newchannel .. LocalBridge, as Dial(Local/NNN@agents) from a dialplan creates the
        pair (callback-agent in the customer_first capture)."""
        p, one, two, agent = self.pbx, self.one, self.two, self.agent
        p.emit(wire.newchannel(one))
        if two is None:
            one.caller_num, one.caller_name = dialer.caller_num, dialer.caller_name
            one.connected_num, one.connected_name = dialer.caller_num, dialer.caller_name
            p.emit(wire.newcallerid(one))
            p.emit(wire.newconnectedline(one))
            return
        p.emit(wire.newchannel(two))
        peer = self.dial_string(queue=False)
        p.emit(wire.varset(one, "DIALEDPEERNUMBER", peer))
        p.emit(wire.newexten(one, "AppDial", "(Outgoing Line)"))
        one.caller_num, one.caller_name = agent.extension, dialer.caller_name
        p.emit(wire.newcallerid(one))
        one.connected_num, one.connected_name = dialer.caller_num, dialer.caller_name
        p.emit(wire.newconnectedline(one))
        p.emit(wire.varset(two, "DIALEDPEERNUMBER", peer))
        two.caller_num, two.caller_name = dialer.caller_num, dialer.caller_name
        p.emit(wire.newcallerid(two))
        two.connected_num, two.connected_name = agent.extension, dialer.caller_name
        p.emit(wire.newconnectedline(two))
        p.emit(wire.local_bridge(one, two, p.spec.agent_context, agent.extension, optimize))

    def create_for_originate(
        self,
        caller_num: str,
        caller_name: str,
        variables: list[tuple[str, str]],
        optimize: bool = True,
    ) -> None:
        """Newchannel .. LocalBridge, as an Originate to ``Local/NNN@agents`` (callbacks)."""
        p, one, two = self.pbx, self.one, self.two
        p.emit(wire.newchannel(one))
        if two is not None:
            p.emit(wire.newchannel(two))
            p.emit(wire.newexten(one, "AppDial2", "(Outgoing Line)"))
        # Asterisk keeps an Originate's variables in a list it prepends to: ;1 shows them in
        # reverse order, each on the wire as soon as it is set ...
        for name, value in reversed(variables):
            one.variables[name] = value
            p.emit(wire.varset(one, name, value))
        one.caller_num, one.caller_name = caller_num, caller_name
        p.emit(wire.newcallerid(one))
        one.connected_num, one.connected_name = caller_num, caller_name
        p.emit(wire.newconnectedline(one))
        if two is None:
            return
        # ... while ;2 gets them in order, its snapshot updated only afterwards.
        for name, value in variables:
            p.emit(wire.varset(two, name, value))
        for name, value in variables:
            two.variables[name] = value
        two.caller_num, two.caller_name = caller_num, caller_name
        two.connected_num, two.connected_name = caller_num, caller_name
        p.emit(wire.newcallerid(two))
        p.emit(wire.newconnectedline(two))
        p.emit(wire.local_bridge(one, two, p.spec.agent_context, self.agent.extension, optimize))

    # ------------------------------------------------------------------ life

    def answer(self) -> None:
        p, one, two = self.pbx, self.one, self.two
        self.answered_at = p.clock.now()
        if two is not None:
            two.priority = 1
            p.emit(wire.newexten(two, "Answer", ""))
            two.state = ChannelState.UP
            p.emit(wire.newstate(two))
        one.state = ChannelState.UP
        p.emit(wire.newstate(one))

    def show_ringing(self) -> None:
        """The phone rings (the agent does not pick up at once)."""
        p, one, two = self.pbx, self.one, self.two
        if two is not None:
            p.emit(wire.newexten(two, "Ringing", ""))
        one.state = ChannelState.RINGING
        p.emit(wire.newstate(one))

    def start_talk(self, seconds: float, after: float = 0.0) -> None:
        """The agents dialplan reaches Wait() on ;2 ``after`` seconds from now (the captures:
        15 ms after a queue call is bridged, 0.5 s after a callback's agent answered), unless
        the call is over by then."""
        two = self.two
        if two is None:
            return

        def wait() -> None:
            if not two.hung_up:
                two.priority = 2
                self.pbx.emit(wire.newexten(two, "Wait", wire.app_seconds(seconds)))

        self.pbx.scheduler.call_later(after, wait)

    def dial_string(self, queue: bool) -> str:
        agent = self.agent
        if agent.tech != "local":
            return agent.extension if not queue else agent.interface
        if queue:
            return agent.interface
        return f"{agent.extension}@{self.pbx.spec.agent_context}"
