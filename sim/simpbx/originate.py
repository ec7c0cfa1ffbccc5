"""Originate, handled the way the ``callbacks`` capture shows Asterisk 22 handling it.

Agent first (the dialer's default): ``Channel`` rings the agent (``Local/101@agents[/n]`` or
``PJSIP/101``); when the agent answers, OriginateResponse ``Reason: 4`` and the agent's channel
enters ``callback-outbound``, which dials the customer over the trunk (DialBegin/DialEnd from
the agent's channel, carrying ``ChanVariable: CALLBACK_ID=...``). An agent who never answers
gives ``Reason: 3`` (``Response: Failure``, ``Uniqueid: <unknown>``) only when ``Timeout`` runs
out; a busy agent ``Reason: 5``; a channel that cannot be created ``Reason: 0``.

Customer first (the ``customer_first`` capture): ``Channel: Local/<number>@callback-customer/n``
dials the customer; once they answer, OriginateResponse ``Reason: 4`` and ``callback-agent``
dials ``${CALLBACK_AGENT}``. A customer who is busy, congested or does not answer gives
``Response: Failure``, ``Reason: 0`` and our ChannelId as ``Uniqueid``, whatever happened: the
DialEnd of the first channel tells which.

``ChannelId``/``OtherChannelId`` become the Uniqueids of the first channel and of its Local
``;2``; every channel of one origination shares the first channel's Linkedid.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from callback_dialer.ami.asterisk import (
    CALLBACK_AGENT_VAR,
    CALLBACK_CLAIM_VAR,
    CALLBACK_ID_VAR,
    DIAL_STATUS_CAUSE,
    UNKNOWN_ID,
    ChannelState,
    DeviceState,
    DialProgress,
    DialStatus,
    HangupCause,
    OriginateReason,
)
from callback_dialer.ami.frames import AmiMessage

from . import wire
from .astdb import ms
from .channels import Bridge, Channel
from .legs import AgentLeg, split_local
from .observe import CustomerLegEnded, CustomerRinging, OriginateDone
from .scheduler import Timer
from .switch import Agent, Switch

Reply = Callable[[list[tuple[str, str]]], None]

# What app_dial clears on the dialling channel when a Dial() starts.
DIAL_VARS = (
    "DIALSTATUS",
    "DIALEDPEERNUMBER",
    "DIALEDPEERNAME",
    "ANSWEREDTIME",
    "ANSWEREDTIME_MS",
    "DIALEDTIME",
    "DIALEDTIME_MS",
    "RINGTIME",
    "RINGTIME_MS",
    "PROGRESSTIME",
    "PROGRESSTIME_MS",
)
# The agents dialplan of a phone nobody picks up: Ringing(), Wait(60).
AGENT_RINGS_SECONDS = 60.0


def parse_callerid(text: str) -> tuple[str, str]:
    """``"Callback support" <79161230002>`` -> (number, name), as ast_callerid_parse."""
    text = text.strip()
    match = re.fullmatch(r'(?:"?([^"<]*?)"?\s*)?<([^>]*)>', text)
    if match:
        return match.group(2) or UNKNOWN_ID, (match.group(1) or "").strip() or UNKNOWN_ID
    if text:
        return text, UNKNOWN_ID
    return UNKNOWN_ID, UNKNOWN_ID


@dataclass
class OriginateRequest:
    action_id: str
    channel: str
    context: str = ""
    exten: str = ""
    priority: str = "1"
    caller_num: str = UNKNOWN_ID
    caller_name: str = UNKNOWN_ID
    variables: list[tuple[str, str]] = field(default_factory=list)
    channel_id: str = ""
    other_channel_id: str = ""
    timeout: float = 30.0
    is_async: bool = True

    @classmethod
    def from_message(cls, message: AmiMessage) -> OriginateRequest:
        variables: list[tuple[str, str]] = []
        for item in message.getall("Variable"):
            # Asterisk splits one header's value on commas: Variable: A=1,B=2
            for part in item.split(","):
                name, sep, value = part.partition("=")
                if sep and name.strip():
                    variables.append((name.strip(), value))
        num, name = parse_callerid(message.get("CallerID"))
        timeout_ms = message.get("Timeout", "30000")
        try:
            timeout = max(0.0, float(timeout_ms) / 1000.0)
        except ValueError:
            timeout = 30.0
        return cls(
            action_id=message.get("ActionID"),
            channel=message.get("Channel"),
            context=message.get("Context"),
            exten=message.get("Exten"),
            priority=message.get("Priority", "1"),
            caller_num=num,
            caller_name=name,
            variables=variables,
            channel_id=message.get("ChannelId"),
            other_channel_id=message.get("OtherChannelId"),
            timeout=timeout,
            is_async=message.get("Async", "false").lower() in ("true", "yes", "1", "on"),
        )

    def var(self, name: str) -> str:
        for key, value in self.variables:
            if key == name:
                return value
        return ""


class CustomerLeg:
    """The trunk channel that dials a customer on behalf of ``dialer`` (the agent's ;1 when
    agent first, the customer Local ;2 when customer first)."""

    def __init__(
        self, origination: Origination, dialer: Channel, exten: str, dial_timeout: float
    ) -> None:
        self.o = origination
        self.pbx = origination.pbx
        self.dialer = dialer
        self.exten = exten
        self.dial_timeout = dial_timeout
        self.channel: Channel
        self.status: DialStatus | str = ""  # how the dial ended ("" while it rings)
        self.rang_at = 0.0
        self.answered_at: float | None = None
        self.bridge: Bridge | None = None
        self.timers: list[Timer] = []
        self.done = False

    def start(self) -> None:
        p, dialer, exten = self.pbx, self.dialer, self.exten
        peer = p.spec.dialed_peer(exten)
        for var in DIAL_VARS:
            self.o.set_var(dialer, var, "")
        ch = self.channel = p.trunk_channel(dialer.linkedid, outbound=True)
        p.emit(wire.newchannel(ch))
        ch.context = ""
        p.emit(wire.varset(ch, "DIALEDPEERNUMBER", peer))
        ch.exten = exten
        ch.caller_num, ch.caller_name = dialer.caller_num, dialer.caller_name
        ch.connected_num, ch.connected_name = dialer.caller_num, dialer.caller_name
        p.emit(wire.newexten(ch, "AppDial", "(Outgoing Line)"))
        p.emit(wire.newcallerid(ch))
        p.emit(wire.newconnectedline(ch))
        response = p.customers.respond(exten, p.clock.now())
        ch.state = ChannelState.RINGING
        ch.context = p.spec.ivr.context  # the trunk peer's context shows once it rings
        p.emit(wire.newstate(ch))
        p.emit(wire.newexten(ch, "AppDial", "(Outgoing Line)"))
        p.emit(wire.dial_begin(dialer, ch, peer))
        p.trunk_state()
        self.rang_at = p.clock.now()
        p.notify(
            CustomerRinging(
                leg_id=ch.uniqueid,
                number=exten,
                callback_id=self.o.callback_id,
                agent=self.o.agent_name(),
                at=self.rang_at,
            )
        )
        ring = max(0.0, response.ring)
        if response.status == DialStatus.NOANSWER or ring > 0:
            self.o.set_var(dialer, "RINGTIME", "0")
            self.o.set_var(dialer, "RINGTIME_MS", "3")
            p.emit(wire.dial_state(dialer, ch, DialProgress.RINGING))
            self.o.customer_phone_rings()
        sched = p.scheduler.call_later
        if response.status == DialStatus.NOANSWER or ring >= self.dial_timeout:
            self.timers.append(sched(self.dial_timeout, self.fail, DialStatus.NOANSWER))
        elif response.status == DialStatus.ANSWER:
            self.timers.append(sched(ring, self.answer, response.talk))
        else:
            self.timers.append(sched(ring, self.fail, response.status))

    # ------------------------------------------------------------------ outcomes

    def answer(self, talk: float) -> None:
        if self.done:
            return
        p, ch, dialer = self.pbx, self.channel, self.dialer
        self.answered_at = p.clock.now()
        self.status = DialStatus.ANSWER
        ch.state = ChannelState.UP
        p.emit(wire.newstate(ch))
        self.o.set_var(dialer, "DIALSTATUS", DialStatus.ANSWER)
        self.o.set_var(dialer, "DIALEDPEERNAME", ch.name)
        self.o.set_var(dialer, "DIALEDPEERNUMBER", p.spec.dialed_peer(self.exten))
        p.emit(wire.dial_end(dialer, ch, DialStatus.ANSWER))
        if dialer.state != ChannelState.UP:  # customer first: ;2 is up once they answer
            dialer.state = ChannelState.UP
            p.emit(wire.newstate(dialer))
        bridge = self.bridge = p.new_bridge()
        ch.exten = ""
        p.emit(wire.newexten(ch, "AppDial", "(Outgoing Line)"))
        p.bridge_enter(bridge, ch)
        p.bridge_enter(bridge, dialer)
        p.emit(wire.varset(ch, "BRIDGEPEER", dialer.name))
        p.emit(wire.varset(dialer, "BRIDGEPEER", ch.name))
        p.trunk_state()
        self.timers.append(p.scheduler.call_later(talk, self.customer_hangs_up))
        self.o.customer_answered(self)

    def fail(self, status: DialStatus) -> None:
        """Busy, congestion, unreachable, no answer within the Dial timeout."""
        if self.done:
            return
        p, ch, dialer = self.pbx, self.channel, self.dialer
        self.status = status
        cause = DIAL_STATUS_CAUSE[status]
        p.emit(wire.dial_end(dialer, ch, status))
        if status == DialStatus.NOANSWER:
            # The Dial's own timeout: app_dial hangs the ringing channel up with no cause
            # (customer_first capture: HangupRequest without Cause, Hangup Cause 0), and
            # the dialling side ends normally.
            p.emit(wire.hangup_request(ch, None))
            p.emit(wire.hangup(ch, HangupCause.UNKNOWN))
            if self.o.local_one is not None:
                cause = HangupCause.NORMAL_CLEARING
        else:
            p.emit(wire.hangup_request(ch, cause))
            p.emit(wire.hangup(ch, cause))
        self._over()
        self.o.set_var(dialer, "DIALSTATUS", status)
        p.trunk_state()
        self.o.customer_failed(self, status, cause)

    def cancel(self) -> None:
        """The dialling side hung up while the customer's phone rang."""
        if self.done:
            return
        p, ch, dialer = self.pbx, self.channel, self.dialer
        self.status = DialStatus.CANCEL
        p.emit(wire.dial_end(dialer, ch, DialStatus.CANCEL))
        p.emit(wire.hangup_request(ch, HangupCause.NORMAL_CLEARING))
        p.emit(wire.hangup(ch, HangupCause.NORMAL_CLEARING))
        self._over()
        self.o.set_var(dialer, "DIALSTATUS", DialStatus.CANCEL)

    def customer_hangs_up(self) -> None:
        if self.done:
            return
        p, ch, dialer, bridge = self.pbx, self.channel, self.dialer, self.bridge
        assert bridge is not None
        p.emit(wire.hangup_request(ch, HangupCause.NORMAL_CLEARING))
        p.emit(wire.varset(ch, "BRIDGEPEER", ""))
        p.emit(wire.varset(dialer, "BRIDGEPEER", ""))
        p.bridge_leave(bridge, ch)
        p.emit(wire.hangup_request(ch, HangupCause.NORMAL_CLEARING))
        p.bridge_leave(bridge, dialer)
        p.emit(wire.hangup(ch, HangupCause.NORMAL_CLEARING))
        self._over()
        self.o.answered_vars(dialer, self)
        self.o.customer_left(self)
        p.emit(wire.bridge_destroy(bridge.view()))
        p.trunk_state()

    def dialer_hangs_up(self, then: Callable[[], None] | None = None) -> None:
        """The dialling side ends a call the customer answered (customer_first capture, the
        agent who never answered): the dialler leaves the bridge, then the customer, whose
        channel is hung up last. ``then``: what the dialler does in between (hang up)."""
        if self.done:
            return
        p, ch, dialer, bridge = self.pbx, self.channel, self.dialer, self.bridge
        assert bridge is not None
        p.emit(wire.varset(dialer, "BRIDGEPEER", ""))
        p.emit(wire.varset(ch, "BRIDGEPEER", ""))
        p.bridge_leave(bridge, dialer)
        self.o.answered_vars(dialer, self)
        if then is not None:
            then()
        p.bridge_leave(bridge, ch)
        p.emit(wire.bridge_destroy(bridge.view()))
        p.emit(wire.hangup_request(ch, HangupCause.NORMAL_CLEARING))
        p.emit(wire.hangup(ch, HangupCause.NORMAL_CLEARING))
        self._over()
        p.trunk_state()

    def _over(self) -> None:
        self.done = True
        for timer in self.timers:
            timer.cancel()
        self.pbx.gone(self.channel)
        self.pbx.notify(
            CustomerLegEnded(
                leg_id=self.channel.uniqueid,
                number=self.exten,
                callback_id=self.o.callback_id,
                agent=self.o.agent_name(),
                status=self.status,
                rang_at=self.rang_at,
                answered_at=self.answered_at,
                ended_at=self.pbx.clock.now(),
            )
        )


class Origination:
    def __init__(self, pbx: Switch, req: OriginateRequest, reply: Reply | None = None) -> None:
        self.pbx = pbx
        self.req = req
        self.reply = reply  # a synchronous Originate is answered at its outcome
        self.callback_id = req.var(CALLBACK_ID_VAR)
        self.agent: Agent | None = None
        self.leg: AgentLeg | None = None  # the agent's phone
        self.customer: CustomerLeg | None = None
        self.local_one: Channel | None = None  # customer first: Local/<n>@callback-customer
        self.local_two: Channel | None = None
        self.responded = False
        self.finished = False
        self.answered_at: float | None = None
        self.timers: list[Timer] = []
        self.agent_busy_on_wire = False

    # ------------------------------------------------------------------ helpers

    def agent_name(self) -> str:
        return self.agent.interface if self.agent is not None else ""

    def owns(self, ch: Channel) -> bool:
        chans: list[Channel | None] = [self.local_one, self.local_two]
        if self.leg is not None:
            chans += self.leg.channels()
        if self.customer is not None and not self.customer.done:
            chans.append(self.customer.channel)
        return any(ch is c for c in chans)

    def set_var(self, ch: Channel, name: str, value: str) -> None:
        ch.variables[name] = value
        self.pbx.emit(wire.varset(ch, name, value))

    def answered_vars(self, dialer: Channel, leg: CustomerLeg) -> None:
        now = self.pbx.clock.now()
        answered = leg.answered_at or now
        dialed = now - leg.rang_at
        self.set_var(dialer, "ANSWEREDTIME", str(int(now - answered)))
        self.set_var(dialer, "ANSWEREDTIME_MS", str(int((now - answered) * 1000)))
        self.set_var(dialer, "DIALEDTIME", str(int(dialed)))
        self.set_var(dialer, "DIALEDTIME_MS", str(int(dialed * 1000)))
        self.set_var(dialer, "DIALSTATUS", DialStatus.ANSWER)

    def _later(self, delay: float, fn: Callable[..., object], *args: object) -> None:
        self.timers.append(self.pbx.scheduler.call_later(delay, fn, *args))

    def respond(
        self, reason: OriginateReason, *, channel: Channel | None, uniqueid: str = UNKNOWN_ID
    ) -> None:
        """OriginateResponse; ``channel`` is the answered first channel (None on failure, then
        ``uniqueid`` is the created first channel's, or <unknown> when none was made)."""
        if self.responded:
            return
        self.responded = True
        req, p = self.req, self.pbx
        if channel is not None:
            pairs = wire.originate_response(
                action_id=req.action_id,
                response="Success",
                channel=channel.name,
                context=req.context,
                exten=req.exten,
                reason=reason,
                uniqueid=channel.uniqueid,
                caller_num=req.caller_num,
                caller_name=req.caller_name,
                chanvars=channel.chanvars(),
                chanvar_channel=channel.name,
            )
        else:
            pairs = wire.originate_response(
                action_id=req.action_id,
                response="Failure",
                channel=req.channel,
                context=req.context,
                exten=req.exten,
                reason=reason,
                uniqueid=uniqueid,
                caller_num=req.caller_num,
                caller_name=req.caller_name,
            )
        p.emit(pairs)
        if self.reply is not None:
            ok = channel is not None
            self.reply(wire_response(req.action_id, ok))

    def _finish(self, reason: OriginateReason) -> None:
        if self.finished:
            return
        self.finished = True
        for timer in self.timers:
            timer.cancel()
        p = self.pbx
        p.originates.pop(self.req.action_id, None)
        self._record_fate()
        p.notify(
            OriginateDone(
                action_id=self.req.action_id,
                callback_id=self.callback_id,
                channel=self.req.channel,
                reason=reason,
                answered_at=self.answered_at,
                ended_at=p.clock.now(),
            )
        )

    def _record_fate(self) -> None:
        """callback-record-fate, the hangup handler the shipped dialplan pushes where the
        customer is dialled: how that dial ended, under the claim the Originate carried."""
        spec, customer = self.pbx.spec, self.customer
        if not spec.records_family or customer is None or not self.callback_id:
            return
        now = self.pbx.clock.now()
        answered = customer.answered_at
        self.pbx.astdb.record_fate(
            spec.records_family,
            self.callback_id,
            {
                "claim": self.req.var(CALLBACK_CLAIM_VAR),
                "dial": str(customer.status or DialStatus.CANCEL),
                "answered": "" if answered is None else str(int((now - answered) * 1000)),
                "agent": self.agent_name() or customer.dialer.name,
                "end": ms(now),
            },
            spec.records_index,
        )

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        p, req = self.pbx, self.req
        p.originates[req.action_id] = self
        target = req.channel
        tech = target.split("/", 1)[0].lower() if "/" in target else ""
        if tech == "local":
            exten, context, optimize = split_local(target)
            if context == p.spec.customer_context:
                self._customer_first(exten, optimize)
                return
            agent = p.agent(exten) if context == p.spec.agent_context else None
            if agent is None or agent.tech != "local":
                self._no_such_local(exten, context)
                return
            self._agent_first(agent, optimize)
            return
        agent = p.agent(target) if tech == "pjsip" else None
        if agent is None or agent.tech != "pjsip":
            # Nothing could be requested: no channel at all, only the failure.
            self.respond(OriginateReason.FAILED, channel=None)
            self._finish(OriginateReason.FAILED)
            return
        self._agent_first(agent, True)

    def _no_such_local(self, exten: str, context: str) -> None:
        """callbacks capture, ``Local/nosuch@nowhere``: the pair is made and dies at once."""
        p, req = self.pbx, self.req
        now = p.clock.now()
        uid1 = req.channel_id or p.ids.uniqueid(now)
        uid2 = req.other_channel_id or p.ids.uniqueid(now)
        base = f"Local/{exten}@{context}-{p.ids.local_suffix()}"
        one = p.new_channel(
            base + ";1", uid1, uid1, context, exten, state=ChannelState.DOWN, tech="Local"
        )
        two = p.new_channel(
            base + ";2", uid2, uid1, context, exten, state=ChannelState.RING, tech="Local"
        )
        p.emit(wire.newchannel(one))
        self.respond(OriginateReason.FAILED, channel=None)
        p.emit(wire.newchannel(two))
        p.emit(wire.newexten(one, "AppDial2", "(Outgoing Line)"))
        for name, value in reversed(req.variables):
            one.variables[name] = value
            p.emit(wire.varset(one, name, value))
        for name, value in req.variables:
            p.emit(wire.varset(two, name, value))
        two.variables.update(dict(req.variables))
        p.emit(wire.hangup(two, HangupCause.UNKNOWN))
        p.emit(wire.hangup(one, HangupCause.UNKNOWN))
        p.gone(one, two)
        device = f"Local/{exten}@{context}"
        p.emit(wire.device_state_change(device, DeviceState.INVALID))
        p.emit(wire.device_state_change(device, DeviceState.INVALID))
        self._finish(OriginateReason.FAILED)

    # ------------------------------------------------------------------ agent first

    def _agent_first(self, agent: Agent, optimize: bool) -> None:
        p, req = self.pbx, self.req
        self.agent = agent
        busy = agent.leg is not None
        leg = self.leg = AgentLeg(p, agent, None, req.channel_id, req.other_channel_id)
        if not busy:
            agent.leg = leg
        leg.create_for_originate(req.caller_num, req.caller_name, req.variables, optimize)
        p.emit(wire.dial_begin(None, leg.one, leg.dial_string(queue=False)))
        if busy:
            self._later(0.05, self._agent_busy)
            return
        delay = agent.behaviour.answer_delay(agent.rng, callback=True)
        if delay is None or delay >= req.timeout:
            self._agent_ringing()
            self._later(req.timeout, self._agent_no_answer)
        elif delay > 0:
            self._agent_ringing()
            self._later(delay, self._agent_answers)
        else:
            self._later(0, self._agent_answers)

    def _agent_ringing(self) -> None:
        p, leg = self.pbx, self.leg
        assert leg is not None and self.agent is not None
        leg.show_ringing()
        if leg.two is not None:
            leg.two.priority = 2
            p.emit(wire.newexten(leg.two, "Wait", wire.app_seconds(self.req.timeout)))
        p.emit(wire.dial_state(None, leg.one, DialProgress.RINGING))
        p.device(self.agent, DeviceState.INUSE)
        leg.ringing_shown = True
        if self.agent.members:
            p.set_status(self.agent, DeviceState.INUSE)

    def _drop_agent_leg(self, cause: int, reason: OriginateReason) -> None:
        """A first leg that was never answered (no answer, busy): Reason 3 or 5."""
        p, leg, agent = self.pbx, self.leg, self.agent
        assert leg is not None and agent is not None
        if leg.two is not None:
            p.emit(wire.hangup_request(leg.two, cause))
        self.respond(reason, channel=None)
        if leg.two is not None:
            p.emit(wire.soft_hangup_request(leg.two, HangupCause.NORMAL_CLEARING))
            p.emit(wire.hangup(leg.two, cause))
        p.emit(wire.hangup(leg.one, cause))
        p.gone(*leg.channels())
        if agent.leg is leg:
            agent.leg = None
            p.device(agent, DeviceState.NOT_INUSE, times=2)
            if leg.ringing_shown and agent.members:
                p.set_status(agent, DeviceState.NOT_INUSE)
        self._finish(reason)

    def _agent_no_answer(self) -> None:
        self._drop_agent_leg(HangupCause.NO_ANSWER, OriginateReason.NO_ANSWER)

    def _agent_busy(self) -> None:
        self._drop_agent_leg(HangupCause.USER_BUSY, OriginateReason.BUSY)

    def _agent_answers(self) -> None:
        p, req, leg, agent = self.pbx, self.req, self.leg, self.agent
        assert leg is not None and agent is not None
        self.answered_at = p.clock.now()
        leg.answer()
        p.emit(wire.dial_end(None, leg.one, DialStatus.ANSWER))
        p.device(agent, DeviceState.INUSE, times=1 if leg.ringing_shown else 2)
        if agent.members and agent.status != DeviceState.INUSE:
            p.set_status(agent, DeviceState.INUSE)
        else:
            agent.status = DeviceState.INUSE
        self.respond(OriginateReason.ANSWERED, channel=leg.one)
        one = leg.one
        if req.context != p.spec.callback_context:
            # A context the simulated dialplan does not have: the channel hangs up.
            self._agent_leg_ends(HangupCause.NORMAL_CLEARING, status="")
            return
        one.at(req.context, req.exten, 1)
        p.emit(wire.newexten(one, "NoOp", f"callback {self.callback_id} to {req.exten}"))
        one.priority = 2
        if req.var("CALLBACK_WHISPER") == "1":
            # callback-whisper on the agent's channel: the customer is dialled once it is said.
            self._whisper(one)
            self._later(p.spec.whisper_seconds, self._dial_customer)
            return
        self._dial_customer()

    def _whisper_args(self, sep: str = ",") -> str:
        return sep.join(
            self.req.var(name)
            for name in (
                "CALLBACK_CATEGORY",
                "CALLBACK_WAITED",
                "CALLBACK_WAITED_HOURS",
                "CALLBACK_CALLS",
                "CALLBACK_LANG",
            )
        )

    def _whisper(self, channel: Channel, *, gosub: bool = True) -> None:
        """callback-whisper of the generated dialplan on ``channel``, as Newexten events:
        from a Gosub (agent first) or from Dial's U option (customer first, no Gosub)."""
        p, req = self.pbx, self.req
        if gosub:
            p.emit(wire.newexten(channel, "Gosub", f"callback-whisper,s,1({self._whisper_args()})"))
        context, exten, priority = channel.context, channel.exten, channel.priority
        channel.at("callback-whisper", "s", 1)
        for prompt in ("callback-whisper", f"callback-category-{req.var('CALLBACK_CATEGORY')}"):
            p.emit(wire.newexten(channel, "Playback", prompt))
            channel.priority += 1
        p.emit(wire.newexten(channel, "SayNumber", req.var("CALLBACK_WAITED")))
        channel.priority += 1
        p.emit(wire.newexten(channel, "SayNumber", req.var("CALLBACK_CALLS")))
        channel.priority += 1
        p.emit(wire.newexten(channel, "Return", ""))
        channel.at(context, exten, priority + 1)

    def _dial_customer(self) -> None:
        p, req, leg, agent = self.pbx, self.req, self.leg, self.agent
        assert leg is not None and agent is not None
        one = leg.one
        if one.uniqueid not in p.channels:
            return  # the agent hung up meanwhile
        dial_timeout = p.spec.callback_dial_timeout
        dial = f"{p.spec.dial_string(req.exten)},{wire.app_seconds(dial_timeout)}"
        p.emit(wire.newexten(one, "Dial", dial))
        forced = req.var("AGENT_TALK")
        if forced:
            # The capture PBX's agents: Wait(${AGENT_TALK}) and hang up, whatever happens.
            talk = _float(forced, 6.0)
            leg.start_talk(talk, after=0.5)
            self._later(talk, self.agent_hangs_up)
        else:
            hold = agent.behaviour.hold_seconds(agent.rng)
            leg.start_talk(hold, after=0.5)
            self._later(hold, self._agent_gives_up)
        self.customer = CustomerLeg(self, one, req.exten, dial_timeout)
        self.customer.start()

    # -- what the customer leg reports (agent first)

    def customer_phone_rings(self) -> None:
        """Customer first: the ringing reaches the Originate's dial of ;1 through the Local
        pair (customer_first capture: Newstate Ringing, DialState RINGING of ;1)."""
        one = self.local_one
        if one is None:
            return
        one.state = ChannelState.RINGING
        self.pbx.emit(wire.newstate(one))
        self.pbx.emit(wire.dial_state(None, one, DialProgress.RINGING))

    def customer_answered(self, leg: CustomerLeg) -> None:
        if self.local_one is not None:
            self._customer_first_answered()
            return
        agent = self.agent
        assert agent is not None
        if not self.req.var("AGENT_TALK"):
            for timer in self.timers:
                timer.cancel()
            talk = agent.behaviour.talk_seconds(agent.rng, callback=True)
            self._later(talk, self.agent_hangs_up)

    def customer_failed(self, leg: CustomerLeg, status: DialStatus, cause: int) -> None:
        if self.local_one is not None:
            self._customer_first_failed(status, cause)
            return
        p, one = self.pbx, leg.dialer
        one.priority = 3
        p.emit(wire.newexten(one, "NoOp", f"customer dial status {status}"))
        one.priority = 4
        p.emit(wire.newexten(one, "Hangup", ""))
        self._agent_leg_ends(cause, status=status)

    def customer_left(self, leg: CustomerLeg) -> None:
        if self.local_one is not None:
            self._customer_first_customer_left()
            return
        self._agent_leg_ends(HangupCause.NORMAL_CLEARING, status=DialStatus.ANSWER)

    def _agent_leg_ends(self, cause: int, *, status: str) -> None:
        """callback-outbound is done (Dial returned or the customer hung up): ;1 hangs up,
        taking the agent's ;2 with it."""
        p, leg, agent = self.pbx, self.leg, self.agent
        assert leg is not None and agent is not None
        one, two = leg.one, leg.two
        p.emit(wire.soft_hangup_request(one, HangupCause.NORMAL_CLEARING))
        if two is not None:
            p.emit(wire.hangup_request(two, cause))
        p.emit(wire.hangup(one, cause))
        p.device(agent, DeviceState.NOT_INUSE)
        if two is not None:
            p.emit(wire.soft_hangup_request(two, HangupCause.NORMAL_CLEARING))
        self._agent_free()
        if two is not None:
            p.emit(wire.hangup(two, cause))
        p.gone(one, two)
        p.device(agent, DeviceState.NOT_INUSE)
        self._finish(OriginateReason.ANSWERED)

    def _agent_free(self) -> None:
        p, agent = self.pbx, self.agent
        assert agent is not None
        agent.status = DeviceState.NOT_INUSE
        if agent.leg is self.leg:
            agent.leg = None
        if agent.members:
            p.member_status(agent)

    def _agent_gives_up(self) -> None:
        """The agent stops waiting for a customer who does not answer (DialStatus CANCEL)."""
        customer = self.customer
        if customer is not None and customer.answered_at is None and not customer.done:
            self.agent_hangs_up()

    def agent_hangs_up(self) -> None:
        """The agent's ;2 reaches Hangup() (or the agent puts the phone down)."""
        if self.finished or self.leg is None or self.agent is None:
            return
        p, leg, agent, customer = self.pbx, self.leg, self.agent, self.customer
        one, two = leg.one, leg.two
        for timer in self.timers:
            timer.cancel()
        if two is not None:
            two.priority = 3
            p.emit(wire.newexten(two, "Hangup", ""))
            p.emit(wire.soft_hangup_request(two, HangupCause.NORMAL_CLEARING))
            p.emit(wire.hangup_request(one, HangupCause.NORMAL_CLEARING))
            p.emit(wire.hangup(two, HangupCause.NORMAL_CLEARING))
        else:
            p.emit(wire.hangup_request(one, HangupCause.NORMAL_CLEARING))
        self._agent_free()
        p.device(agent, DeviceState.NOT_INUSE)
        if customer is not None and not customer.done:
            if customer.answered_at is None:
                customer.cancel()
            else:
                customer.dialer_hangs_up()
        p.emit(wire.soft_hangup_request(one, HangupCause.NORMAL_CLEARING))
        p.emit(wire.hangup(one, HangupCause.NORMAL_CLEARING))
        p.gone(one, two)
        p.trunk_state()
        p.device(agent, DeviceState.NOT_INUSE)
        self._finish(OriginateReason.ANSWERED)

    def hangup_requested(self, ch: Channel, cause: int) -> None:
        """The Hangup action on one of this origination's channels."""
        if self.finished:
            return
        customer = self.customer
        if customer is not None and ch is customer.channel and not customer.done:
            if customer.answered_at is not None:
                customer.customer_hangs_up()
            else:
                customer.fail(DialStatus.CHANUNAVAIL)
            return
        if self.local_one is not None:
            self._customer_first_over(cause)
            return
        if self.leg is not None and not self.responded:
            self._drop_agent_leg(cause, OriginateReason.HANGUP)
            return
        self.agent_hangs_up()

    # ------------------------------------------------------------------ customer first
    # As tests/fixtures/customer_first.jsonl shows Asterisk 22.9.0 doing it for the dialer's
    # Originate (Channel Local/<number>@callback-customer/n, Context callback-agent):
    # callback-customer runs Set(CALLERID(all)=...) and Dial(IAX2/<trunk>/<number>,30) on ;2;
    # once the customer answers, ;1 runs callback-agent: NoOp, Dial(${CALLBACK_AGENT},15),
    # Hangup. A customer who does not answer (busy, congestion, no answer) ends the Local
    # pair with the dial's cause, and the OriginateResponse is Reason 0 with our ChannelId.

    def _customer_first(self, number: str, optimize: bool) -> None:
        p, req = self.pbx, self.req
        now = p.clock.now()
        context = p.spec.customer_context
        uid1 = req.channel_id or p.ids.uniqueid(now)
        uid2 = req.other_channel_id or p.ids.uniqueid(now)
        base = f"Local/{number}@{context}-{p.ids.local_suffix()}"
        one = self.local_one = p.new_channel(
            base + ";1", uid1, uid1, context, number, state=ChannelState.DOWN, tech="Local"
        )
        two = self.local_two = p.new_channel(
            base + ";2", uid2, uid1, context, number, state=ChannelState.RING, tech="Local"
        )
        p.emit(wire.newchannel(one))
        p.emit(wire.newchannel(two))
        p.emit(wire.newexten(one, "AppDial2", "(Outgoing Line)"))
        for name, value in reversed(req.variables):
            self.set_var(one, name, value)
        one.caller_num, one.caller_name = req.caller_num, req.caller_name
        one.connected_num, one.connected_name = req.caller_num, req.caller_name
        p.emit(wire.newcallerid(one))
        p.emit(wire.newconnectedline(one))
        for name, value in req.variables:
            p.emit(wire.varset(two, name, value))
        two.variables.update(dict(req.variables))
        two.caller_num, two.caller_name = req.caller_num, req.caller_name
        two.connected_num, two.connected_name = req.caller_num, req.caller_name
        p.emit(wire.newcallerid(two))
        p.emit(wire.newconnectedline(two))
        p.emit(wire.local_bridge(one, two, context, number, optimize))
        # Asterisk's own dial of the first channel: the Originate's Channel without "Local/".
        p.emit(wire.dial_begin(None, one, req.channel.split("/", 1)[1]))
        p.emit(wire.newexten(two, "Set", f"CALLERID(all)={p.spec.public_callerid}"))
        two.caller_num, two.caller_name = parse_callerid(p.spec.public_callerid)
        p.emit(wire.newcallerid(two))
        two.priority = 2
        dial_timeout = min(p.spec.customer_dial_timeout, req.timeout or 1e9)
        dial = f"{p.spec.dial_string(number)},{wire.app_seconds(dial_timeout)}"
        p.emit(wire.newexten(two, "Dial", dial))
        self.customer = CustomerLeg(self, two, number, dial_timeout)
        self.customer.start()

    def _customer_first_answered(self) -> None:
        """The customer picked up (;2 is bridged with them): the Originate's dial of ;1 is
        answered and ;1 runs callback-agent, which rings the reserved agent."""
        p, req, one = self.pbx, self.req, self.local_one
        assert one is not None
        self.answered_at = p.clock.now()
        self.respond(OriginateReason.ANSWERED, channel=one)
        one.state = ChannelState.UP
        p.emit(wire.newstate(one))
        p.emit(wire.dial_end(None, one, DialStatus.ANSWER))
        target = req.var(CALLBACK_AGENT_VAR) or req.exten
        one.at(req.context, req.exten, 1)
        p.emit(
            wire.newexten(
                one, "NoOp", f"callback {self.callback_id}: customer answered, ringing {target}"
            )
        )
        one.priority = 2
        dial = f"{target},{wire.app_seconds(p.spec.agent_dial_timeout)}"
        if req.var("CALLBACK_WHISPER") == "1":
            # callback-agent's second Dial: the whisper on the agent's channel once answered.
            one.priority = 5
            dial += f",U(callback-whisper^{self._whisper_args('^')})"
        p.emit(wire.newexten(one, "Dial", dial))
        for var in DIAL_VARS:
            self.set_var(one, var, "")
        agent = p.agent(target) or p.agent(req.exten)
        if agent is None or agent.leg is not None:
            # Nobody to ring (or on a call already): callback-agent's Dial fails at once.
            self._customer_first_over(
                HangupCause.USER_BUSY if agent is not None else HangupCause.SUBSCRIBER_ABSENT
            )
            return
        self.agent = agent
        leg = self.leg = AgentLeg(p, agent, one.linkedid)
        agent.leg = leg
        self._agent_dialled_at = p.clock.now()
        leg.create_for_dial(one, optimize=split_local(target)[2] if "/" in target else True)
        p.emit(wire.dial_begin(one, leg.one, leg.dial_string(queue=False)))
        delay = agent.behaviour.answer_delay(agent.rng, callback=True)
        if delay is None or delay >= p.spec.agent_dial_timeout:
            leg.show_ringing()
            leg.start_talk(AGENT_RINGS_SECONDS)  # the agents dialplan: Ringing(), Wait(60)
            self.set_var(one, "RINGTIME", "0")
            self.set_var(one, "RINGTIME_MS", "2")
            p.emit(wire.dial_state(one, leg.one, DialProgress.RINGING))
            p.device(agent, DeviceState.INUSE)
            leg.ringing_shown = True
            if agent.members:
                p.set_status(agent, DeviceState.INUSE)
            self._later(p.spec.agent_dial_timeout, self._customer_first_agent_missed)
        else:
            self._later(delay, self._customer_first_agent_answers)

    def _customer_first_agent_answers(self) -> None:
        p, leg, agent, one = self.pbx, self.leg, self.agent, self.local_one
        assert leg is not None and agent is not None and one is not None
        leg.answer()
        self._agent_answered_at = p.clock.now()
        if self.req.var("CALLBACK_WHISPER") == "1":
            # Dial's U option: the whisper first, and only then DialEnd ANSWER and the bridge
            # (customer_first_whisper recording).
            self._whisper(leg.one, gosub=False)
            self._later(p.spec.whisper_seconds, self._customer_first_connect)
            return
        self._customer_first_connect()

    def _customer_first_connect(self) -> None:
        p, leg, agent, one = self.pbx, self.leg, self.agent, self.local_one
        assert leg is not None and agent is not None and one is not None
        if leg.one.uniqueid not in p.channels:
            return  # gone meanwhile
        self.set_var(one, "DIALSTATUS", DialStatus.ANSWER)
        self.set_var(one, "DIALEDPEERNAME", leg.one.name)
        self.set_var(one, "DIALEDPEERNUMBER", leg.dial_string(queue=False))
        p.emit(wire.dial_end(one, leg.one, DialStatus.ANSWER))
        leg.one.exten = ""
        p.emit(wire.newexten(leg.one, "AppDial", "(Outgoing Line)"))
        bridge = self._agent_bridge = p.new_bridge()
        p.bridge_enter(bridge, leg.one)
        p.bridge_enter(bridge, one)
        p.emit(wire.varset(leg.one, "BRIDGEPEER", one.name))
        p.emit(wire.varset(one, "BRIDGEPEER", leg.one.name))
        p.device(agent, DeviceState.INUSE, times=1 if leg.ringing_shown else 2)
        agent.status = DeviceState.INUSE
        if agent.members:
            p.member_status(agent)
        talk = agent.behaviour.talk_seconds(agent.rng, callback=True)
        leg.start_talk(talk, after=0.5)
        self._later(talk, self._customer_first_over, HangupCause.NORMAL_CLEARING)

    def _customer_first_agent_missed(self) -> None:
        """callback-agent's Dial runs out: the agent's pair goes, then ;1 reaches Hangup() and
        takes ;2 with it, which the customer was bridged to."""
        p, leg, agent, one, two = self.pbx, self.leg, self.agent, self.local_one, self.local_two
        assert leg is not None and agent is not None and one is not None and two is not None
        p.emit(wire.dial_end(one, leg.one, DialStatus.NOANSWER))
        if leg.two is not None:
            p.emit(wire.hangup_request(leg.two, HangupCause.UNKNOWN))
            p.emit(wire.soft_hangup_request(leg.two, HangupCause.NORMAL_CLEARING))
        p.emit(wire.hangup(leg.one, HangupCause.UNKNOWN))
        if leg.two is not None:
            p.emit(wire.hangup(leg.two, HangupCause.UNKNOWN))
        p.gone(*leg.channels())
        self._agent_leg_gone()
        self.set_var(one, "DIALSTATUS", DialStatus.NOANSWER)
        one.priority = 3
        p.emit(wire.newexten(one, "Hangup", ""))
        p.emit(wire.soft_hangup_request(one, HangupCause.NORMAL_CLEARING))
        p.emit(wire.hangup_request(two, HangupCause.NORMAL_CLEARING))
        p.emit(wire.hangup(one, HangupCause.NORMAL_CLEARING))
        p.gone(one)
        customer = self.customer
        if customer is not None and not customer.done:
            customer.dialer_hangs_up(then=self._customer_first_two_ends)
        else:
            self._customer_first_two_ends()
        self._finish(OriginateReason.ANSWERED)

    def _customer_first_two_ends(self) -> None:
        """;2's Dial returned (the customer's bridge is over): it hangs up."""
        p, two = self.pbx, self.local_two
        assert two is not None
        if two.hung_up:
            return
        p.emit(wire.soft_hangup_request(two, HangupCause.NORMAL_CLEARING))
        p.emit(wire.hangup(two, HangupCause.NORMAL_CLEARING))
        p.gone(two)

    def _customer_first_failed(self, status: DialStatus, cause: int) -> None:
        """The customer did not answer (busy, congestion, no answer): callback-customer hangs
        up ;2, which ends ;1 with the dial's cause; the Originate's dial of ;1 fails."""
        p, one, two = self.pbx, self.local_one, self.local_two
        assert one is not None and two is not None
        two.priority = 3
        p.emit(wire.newexten(two, "Hangup", ""))
        p.emit(wire.soft_hangup_request(two, HangupCause.NORMAL_CLEARING))
        self.set_var(one, "CHANLOCALSTATUS", status)
        p.emit(wire.hangup_request(one, cause))
        p.emit(wire.hangup(two, cause))
        p.emit(wire.dial_end(None, one, status))
        self.respond(OriginateReason.FAILED, channel=None, uniqueid=one.uniqueid)
        p.emit(wire.hangup(one, cause))
        p.gone(one, two)
        self._finish(OriginateReason.FAILED)

    def _customer_first_customer_left(self) -> None:
        """The customer hung up a callback they answered: ;2's Dial returns and ;2 hangs up,
        taking ;1 and, through ;1's bridge, the agent's pair with it."""
        p, leg, one, two = self.pbx, self.leg, self.local_one, self.local_two
        assert one is not None and two is not None
        for timer in self.timers:
            timer.cancel()
        p.emit(wire.soft_hangup_request(two, HangupCause.NORMAL_CLEARING))
        self.set_var(one, "CHANLOCALSTATUS", DialStatus.ANSWER)
        p.emit(wire.hangup_request(one, HangupCause.NORMAL_CLEARING))
        p.emit(wire.hangup(two, HangupCause.NORMAL_CLEARING))
        p.gone(two)
        bridge = getattr(self, "_agent_bridge", None)
        if leg is not None and bridge is not None:
            p.emit(wire.varset(one, "BRIDGEPEER", ""))
            p.emit(wire.varset(leg.one, "BRIDGEPEER", ""))
            p.bridge_leave(bridge, one)
            p.bridge_leave(bridge, leg.one)
            p.emit(wire.bridge_destroy(bridge.view()))
            now = p.clock.now()
            answered = now - self._agent_answered_at
            dialled = now - self._agent_dialled_at
            self.set_var(one, "ANSWEREDTIME", str(int(answered)))
            self.set_var(one, "ANSWEREDTIME_MS", str(int(answered * 1000)))
            self.set_var(one, "DIALEDTIME", str(int(dialled)))
            self.set_var(one, "DIALEDTIME_MS", str(int(dialled * 1000)))
            self.set_var(one, "DIALSTATUS", DialStatus.ANSWER)
            p.emit(wire.soft_hangup_request(one, HangupCause.NORMAL_CLEARING))
            p.emit(wire.hangup(one, HangupCause.NORMAL_CLEARING))
            p.gone(one)
            if leg.two is not None:
                p.emit(wire.hangup_request(leg.two, HangupCause.NORMAL_CLEARING))
            p.emit(wire.hangup(leg.one, HangupCause.NORMAL_CLEARING))
            if leg.two is not None:
                p.emit(wire.soft_hangup_request(leg.two, HangupCause.NORMAL_CLEARING))
                p.emit(wire.hangup(leg.two, HangupCause.NORMAL_CLEARING))
            p.gone(*leg.channels())
            self._agent_leg_gone()
            self._finish(OriginateReason.ANSWERED)
            return
        # Gone while the agent was still being rung (not recorded): tear the rest down.
        self._customer_first_over(HangupCause.NORMAL_CLEARING)

    def _agent_leg_gone(self) -> None:
        p, leg, agent = self.pbx, self.leg, self.agent
        if leg is None or agent is None or agent.leg is not leg:
            return
        agent.leg = None
        agent.status = DeviceState.NOT_INUSE
        p.device(agent, DeviceState.NOT_INUSE, times=2)
        if agent.members:
            p.member_status(agent)

    def _customer_first_over(self, cause: int) -> None:
        """Tear everything down (the agent ends the call, a Hangup action, no agent to ring):
        agent leg, customer leg, the Local pair."""
        if self.finished:
            return
        p, leg, agent, customer = self.pbx, self.leg, self.agent, self.customer
        one, two = self.local_one, self.local_two
        assert one is not None and two is not None
        for timer in self.timers:
            timer.cancel()
        if leg is not None and agent is not None:
            bridge = getattr(self, "_agent_bridge", None)
            if bridge is not None:
                p.bridge_leave(bridge, leg.one)
                p.bridge_leave(bridge, one)
                p.emit(wire.bridge_destroy(bridge.view()))
            for ch in reversed(leg.channels()):
                if not ch.hung_up:
                    p.emit(wire.hangup_request(ch, cause))
                    p.emit(wire.hangup(ch, cause))
            p.gone(*leg.channels())
            self._agent_leg_gone()
        if customer is not None and not customer.done:
            if customer.answered_at is None:
                customer.cancel()
            else:
                customer.dialer_hangs_up()
        for ch in (one, two):
            if not ch.hung_up:
                p.emit(wire.hangup_request(ch, cause))
                p.emit(wire.hangup(ch, cause))
        p.gone(one, two)
        if self.answered_at is None:
            self.respond(OriginateReason.FAILED, channel=None, uniqueid=one.uniqueid)
        self._finish(
            OriginateReason.ANSWERED if self.answered_at is not None else OriginateReason.FAILED
        )


def wire_response(action_id: str, ok: bool) -> list[tuple[str, str]]:
    """What a synchronous (``Async: false``) Originate gets once its first leg is decided."""
    if ok:
        return [
            ("Response", "Success"),
            ("ActionID", action_id),
            ("Message", "Originate successfully queued"),
        ]
    return [("Response", "Error"), ("ActionID", action_id), ("Message", "Originate failed")]


def _float(text: str, default: float) -> float:
    try:
        return float(text)
    except ValueError:
        return default
