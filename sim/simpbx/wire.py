"""AMI messages exactly as Asterisk 22 writes them: header names, order and privileges.

Every builder returns ``(name, value)`` pairs in wire order; ``encode_message`` turns them into
bytes. The order was read off ``../shared/ami-captures`` (tests/test_sim_wire.py holds each
builder against the captured messages of the same type); where the captures show no example
(AgentRingNoAnswer, CoreShowChannel, Status, QueueEntry) the order is Asterisk 22's documented
one.

The standard channel block comes first in every channel event::

    Channel ChannelState ChannelStateDesc CallerIDNum CallerIDName ConnectedLineNum
    ConnectedLineName Language AccountCode Context Exten Priority Uniqueid Linkedid
    ChanVariable: NAME=value   (once per manager.conf channelvars entry, in that order)

and the same block prefixed (``Dest``, ``LocalOne``, ``LocalTwo``) for the other party.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from callback_dialer.ami.asterisk import (
    CAUSE_TEXT,
    CHANNEL_STATE_DESC,
    UNKNOWN_ID,
    ChannelState,
    DeviceState,
    DialProgress,
    DialStatus,
    HangupCause,
    OriginateReason,
    escape_c,
)

Pairs = list[tuple[str, str]]

CALL = "call,all"
DIALPLAN = "dialplan,all"
AGENT = "agent,all"
USER = "user,all"
SYSTEM = "system,all"


class ChannelView(Protocol):
    """What a channel event needs to know about a channel."""

    name: str
    state: int
    caller_num: str
    caller_name: str
    connected_num: str
    connected_name: str
    language: str
    accountcode: str
    context: str
    exten: str
    priority: int
    uniqueid: str
    linkedid: str

    def chanvars(self) -> list[tuple[str, str]]: ...


@dataclass(frozen=True, slots=True)
class BridgeView:
    uniqueid: str
    num_channels: int
    type: str = "basic"
    technology: str = "simple_bridge"
    creator: str = UNKNOWN_ID
    name: str = UNKNOWN_ID
    video_source_mode: str = "none"


@dataclass(frozen=True, slots=True)
class MemberView:
    """One agent's membership of one queue, as the QueueMember* events show it."""

    queue: str
    name: str
    interface: str
    state_interface: str
    membership: str
    penalty: int
    calls_taken: int
    last_call: int
    last_pause: int
    login_time: int
    in_call: bool
    status: int  # a DeviceState
    paused: bool
    paused_reason: str
    ringinuse: bool
    wrapuptime: int


# --------------------------------------------------------------------------- blocks


def channel_block(ch: ChannelView, prefix: str = "") -> Pairs:
    pairs: Pairs = [
        (prefix + "Channel", ch.name),
        (prefix + "ChannelState", str(ch.state)),
        (prefix + "ChannelStateDesc", _state_desc(ch.state)),
        (prefix + "CallerIDNum", ch.caller_num),
        # A channel snapshot's texts go out C-escaped, as Asterisk's ast_escape_c writes them.
        (prefix + "CallerIDName", escape_c(ch.caller_name)),
        (prefix + "ConnectedLineNum", ch.connected_num),
        (prefix + "ConnectedLineName", escape_c(ch.connected_name)),
        (prefix + "Language", ch.language),
        (prefix + "AccountCode", ch.accountcode),
        (prefix + "Context", ch.context),
        (prefix + "Exten", ch.exten),
        (prefix + "Priority", str(ch.priority)),
        (prefix + "Uniqueid", ch.uniqueid),
        (prefix + "Linkedid", ch.linkedid),
    ]
    pairs.extend((prefix + "ChanVariable", f"{k}={escape_c(v)}") for k, v in ch.chanvars())
    return pairs


def _state_desc(state: int) -> str:
    return CHANNEL_STATE_DESC.get(state, CHANNEL_STATE_DESC[ChannelState.UNKNOWN])


def bridge_block(bridge: BridgeView) -> Pairs:
    return [
        ("BridgeUniqueid", bridge.uniqueid),
        ("BridgeType", bridge.type),
        ("BridgeTechnology", bridge.technology),
        ("BridgeCreator", bridge.creator),
        ("BridgeName", bridge.name),
        ("BridgeNumChannels", str(bridge.num_channels)),
        ("BridgeVideoSourceMode", bridge.video_source_mode),
    ]


def _event(name: str, privilege: str, *parts: Iterable[tuple[str, str]]) -> Pairs:
    pairs: Pairs = [("Event", name), ("Privilege", privilege)]
    for part in parts:
        pairs.extend(part)
    return pairs


def _channel_event(name: str, privilege: str, ch: ChannelView, *extra: tuple[str, str]) -> Pairs:
    return _event(name, privilege, channel_block(ch), extra)


# --------------------------------------------------------------------------- channel life


def newchannel(ch: ChannelView) -> Pairs:
    return _channel_event("Newchannel", CALL, ch)


def newstate(ch: ChannelView) -> Pairs:
    return _channel_event("Newstate", CALL, ch)


def newcallerid(ch: ChannelView) -> Pairs:
    return _channel_event(
        "NewCallerid", CALL, ch, ("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")
    )


def newconnectedline(ch: ChannelView) -> Pairs:
    return _channel_event("NewConnectedLine", CALL, ch)


def newexten(ch: ChannelView, application: str, app_data: str = "") -> Pairs:
    return _channel_event(
        "Newexten",
        DIALPLAN,
        ch,
        ("Extension", ch.exten),
        ("Application", application),
        ("AppData", app_data),
    )


def varset(ch: ChannelView, variable: str, value: str) -> Pairs:
    return _channel_event("VarSet", DIALPLAN, ch, ("Variable", variable), ("Value", value))


def global_varset(variable: str, value: str) -> Pairs:
    """A global variable set (``Set(GLOBAL(...))``): Asterisk writes ``none`` as channel."""
    return _event(
        "VarSet",
        DIALPLAN,
        [("Channel", "none"), ("Uniqueid", "none"), ("Variable", variable), ("Value", value)],
    )


def hangup_request(ch: ChannelView, cause: int | None) -> Pairs:
    """``cause`` None: a request with no Cause header (app_dial hanging up a channel it rang
    until its timeout, in the customer_first capture)."""
    if cause is None:
        return _channel_event("HangupRequest", CALL, ch)
    return _channel_event("HangupRequest", CALL, ch, ("Cause", str(cause)))


def soft_hangup_request(ch: ChannelView, cause: int) -> Pairs:
    return _channel_event("SoftHangupRequest", CALL, ch, ("Cause", str(cause)))


def hangup(ch: ChannelView, cause: int) -> Pairs:
    return _channel_event(
        "Hangup",
        CALL,
        ch,
        ("Cause", str(cause)),
        ("Cause-txt", CAUSE_TEXT.get(cause, CAUSE_TEXT[HangupCause.UNKNOWN])),
    )


def device_state_change(device: str, state: DeviceState) -> Pairs:
    # Asterisk writes a device state as its AST_DEVICE_ name (ast_devstate_str).
    return _event("DeviceStateChange", CALL, [("Device", device), ("State", state.name)])


def user_event(ch: ChannelView | None, name: str, headers: Pairs) -> Pairs:
    # From the dialplan, with the channel; from an AMI UserEvent action, without one.
    channel_part = channel_block(ch) if ch is not None else []
    return _event("UserEvent", USER, channel_part, [("UserEvent", name)], headers)


# --------------------------------------------------------------------------- dialing


def _dial(name: str, caller: ChannelView | None, dest: ChannelView, tail: Pairs) -> Pairs:
    # An Originate's first leg is dialled by nobody: its Dial* events have no caller block.
    caller_part = channel_block(caller) if caller is not None else []
    return _event(name, CALL, caller_part, channel_block(dest, "Dest"), tail)


def dial_begin(caller: ChannelView | None, dest: ChannelView, dial_string: str) -> Pairs:
    return _dial("DialBegin", caller, dest, [("DialString", dial_string)])


def dial_state(caller: ChannelView | None, dest: ChannelView, status: DialProgress) -> Pairs:
    return _dial("DialState", caller, dest, [("DialStatus", status)])


def dial_end(caller: ChannelView | None, dest: ChannelView, status: DialStatus) -> Pairs:
    return _dial("DialEnd", caller, dest, [("DialStatus", status)])


def local_bridge(
    one: ChannelView, two: ChannelView, context: str, exten: str, optimization: bool
) -> Pairs:
    return _event(
        "LocalBridge",
        CALL,
        channel_block(one, "LocalOne"),
        channel_block(two, "LocalTwo"),
        [
            ("Context", context),
            ("Exten", exten),
            ("LocalOptimization", "Yes" if optimization else "No"),
        ],
    )


def bridge_create(bridge: BridgeView) -> Pairs:
    return _event("BridgeCreate", CALL, bridge_block(bridge))


def bridge_destroy(bridge: BridgeView) -> Pairs:
    return _event("BridgeDestroy", CALL, bridge_block(bridge))


def bridge_enter(bridge: BridgeView, ch: ChannelView) -> Pairs:
    return _event("BridgeEnter", CALL, bridge_block(bridge), channel_block(ch))


def bridge_leave(bridge: BridgeView, ch: ChannelView) -> Pairs:
    return _event("BridgeLeave", CALL, bridge_block(bridge), channel_block(ch))


def originate_response(
    *,
    action_id: str,
    response: str,
    channel: str,
    context: str,
    exten: str,
    reason: OriginateReason,
    uniqueid: str,
    caller_num: str,
    caller_name: str,
    chanvars: list[tuple[str, str]] | None = None,
    chanvar_channel: str = "",
) -> Pairs:
    """``chanvars`` only when a channel answered: they are written as
    ``ChanVariable(<channel>): NAME=value``."""
    pairs = _event(
        "OriginateResponse",
        CALL,
        [
            ("ActionID", action_id),
            ("Response", response),
            ("Channel", channel),
            ("Context", context),
            ("Exten", exten),
            ("Reason", str(reason)),
            ("Uniqueid", uniqueid),
            ("CallerIDNum", caller_num),
            ("CallerIDName", caller_name),
        ],
    )
    for name, value in chanvars or ():
        pairs.append((f"ChanVariable({chanvar_channel})", f"{name}={value}"))
    return pairs


# --------------------------------------------------------------------------- queues


def queue_caller_join(ch: ChannelView, queue: str, position: int, count: int) -> Pairs:
    return _channel_event(
        "QueueCallerJoin",
        AGENT,
        ch,
        ("Queue", queue),
        ("Position", str(position)),
        ("Count", str(count)),
    )


def queue_caller_leave(ch: ChannelView, queue: str, position: int, count: int) -> Pairs:
    return _channel_event(
        "QueueCallerLeave",
        AGENT,
        ch,
        ("Queue", queue),
        ("Position", str(position)),
        ("Count", str(count)),
    )


def queue_caller_abandon(
    ch: ChannelView, queue: str, position: int, original_position: int, hold_time: int
) -> Pairs:
    return _channel_event(
        "QueueCallerAbandon",
        AGENT,
        ch,
        ("Queue", queue),
        ("Position", str(position)),
        ("OriginalPosition", str(original_position)),
        ("HoldTime", str(hold_time)),
    )


def _agent(name: str, caller: ChannelView | None, dest: ChannelView | None, tail: Pairs) -> Pairs:
    # AgentComplete may come after the member's channel is gone: then without a Dest block;
    # and now and then after both are gone, with no channel block at all (Asterisk 22.9.0,
    # in the busy hour and the offer recordings of the dialer's tests/fixtures).
    caller_part = channel_block(caller) if caller is not None else []
    dest_part = channel_block(dest, "Dest") if dest is not None else []
    return _event(name, AGENT, caller_part, dest_part, tail)


def agent_called(
    caller: ChannelView, dest: ChannelView, queue: str, interface: str, member_name: str
) -> Pairs:
    return _agent(
        "AgentCalled",
        caller,
        dest,
        [("Queue", queue), ("Interface", interface), ("MemberName", member_name)],
    )


def agent_connect(
    caller: ChannelView,
    dest: ChannelView,
    queue: str,
    interface: str,
    member_name: str,
    hold_time: int,
    ring_time: int,
) -> Pairs:
    return _agent(
        "AgentConnect",
        caller,
        dest,
        [
            ("Queue", queue),
            ("Interface", interface),
            ("MemberName", member_name),
            ("HoldTime", str(hold_time)),
            ("RingTime", str(ring_time)),
        ],
    )


def agent_complete(
    caller: ChannelView | None,
    dest: ChannelView | None,
    queue: str,
    interface: str,
    member_name: str,
    hold_time: int,
    talk_time: int,
    reason: str,
) -> Pairs:
    return _agent(
        "AgentComplete",
        caller,
        dest,
        [
            ("Queue", queue),
            ("Interface", interface),
            ("MemberName", member_name),
            ("HoldTime", str(hold_time)),
            ("TalkTime", str(talk_time)),
            ("Reason", reason),
        ],
    )


def agent_ring_no_answer(
    caller: ChannelView,
    dest: ChannelView,
    queue: str,
    interface: str,
    member_name: str,
    ring_time_ms: int,
) -> Pairs:
    return _agent(
        "AgentRingNoAnswer",
        caller,
        dest,
        [
            ("Queue", queue),
            ("Interface", interface),
            ("MemberName", member_name),
            ("RingTime", str(ring_time_ms)),
        ],
    )


def _member_fields(m: MemberView) -> Pairs:
    return [
        ("Queue", m.queue),
        ("MemberName", m.name),
        ("Interface", m.interface),
        ("StateInterface", m.state_interface),
        ("Membership", m.membership),
        ("Penalty", str(m.penalty)),
        ("CallsTaken", str(m.calls_taken)),
        ("LastCall", str(m.last_call)),
        ("LastPause", str(m.last_pause)),
        ("LoginTime", str(m.login_time)),
        ("InCall", "1" if m.in_call else "0"),
        ("Status", str(m.status)),
        ("Paused", "1" if m.paused else "0"),
        ("PausedReason", m.paused_reason),
        ("Ringinuse", "1" if m.ringinuse else "0"),
        ("Wrapuptime", str(m.wrapuptime)),
    ]


def queue_member_event(kind: str, member: MemberView) -> Pairs:
    """QueueMemberStatus, QueueMemberPause, QueueMemberAdded or QueueMemberRemoved."""
    return _event(kind, AGENT, _member_fields(member))


# --------------------------------------------------------------------------- list items
# List items carry no Privilege. AmiServer.list_response appends the ActionID, which is where
# Asterisk writes it for the queue lists; CoreShowChannel has it right after Event.


def queue_params(
    *,
    queue: str,
    max_callers: int,
    strategy: str,
    calls: int,
    holdtime: int,
    talktime: int,
    completed: int,
    abandoned: int,
    service_level: int,
    service_level_perf: float,
    service_level_perf2: float,
    weight: int,
) -> Pairs:
    return [
        ("Event", "QueueParams"),
        ("Queue", queue),
        ("Max", str(max_callers)),
        ("Strategy", strategy),
        ("Calls", str(calls)),
        ("Holdtime", str(holdtime)),
        ("TalkTime", str(talktime)),
        ("Completed", str(completed)),
        ("Abandoned", str(abandoned)),
        ("ServiceLevel", str(service_level)),
        ("ServicelevelPerf", f"{service_level_perf:.1f}"),
        ("ServicelevelPerf2", f"{service_level_perf2:.1f}"),
        ("Weight", str(weight)),
    ]


def queue_member_item(m: MemberView) -> Pairs:
    return [
        ("Event", "QueueMember"),
        ("Queue", m.queue),
        ("Name", m.name),
        ("Location", m.interface),
        ("StateInterface", m.state_interface),
        ("Membership", m.membership),
        ("Penalty", str(m.penalty)),
        ("CallsTaken", str(m.calls_taken)),
        ("LastCall", str(m.last_call)),
        ("LastPause", str(m.last_pause)),
        ("LoginTime", str(m.login_time)),
        ("InCall", "1" if m.in_call else "0"),
        ("Status", str(m.status)),
        ("Paused", "1" if m.paused else "0"),
        ("PausedReason", m.paused_reason),
        ("Wrapuptime", str(m.wrapuptime)),
    ]


def queue_entry_item(ch: ChannelView, queue: str, position: int, wait: int) -> Pairs:
    return [
        ("Event", "QueueEntry"),
        ("Queue", queue),
        ("Position", str(position)),
        ("Channel", ch.name),
        ("Uniqueid", ch.uniqueid),
        ("CallerIDNum", ch.caller_num),
        ("CallerIDName", ch.caller_name),
        ("ConnectedLineNum", ch.connected_num),
        ("ConnectedLineName", ch.connected_name),
        ("Wait", str(wait)),
        ("Priority", "0"),
    ]


def queue_summary_item(
    *,
    queue: str,
    logged_in: int,
    available: int,
    callers: int,
    hold_time: int,
    talk_time: int,
    longest_hold_time: int,
) -> Pairs:
    return [
        ("Event", "QueueSummary"),
        ("Queue", queue),
        ("LoggedIn", str(logged_in)),
        ("Available", str(available)),
        ("Callers", str(callers)),
        ("HoldTime", str(hold_time)),
        ("TalkTime", str(talk_time)),
        ("LongestHoldTime", str(longest_hold_time)),
    ]


def core_show_channel(
    ch: ChannelView, action_id: str, bridge_id: str, application: str, app_data: str, duration: str
) -> Pairs:
    pairs: Pairs = [("Event", "CoreShowChannel")]
    if action_id:
        pairs.append(("ActionID", action_id))
    pairs.extend(channel_block(ch))
    # Asterisk 22's order (main/manager.c, action_coreshowchannels): BridgeId last.
    pairs += [
        ("Application", application),
        ("ApplicationData", app_data),
        ("Duration", duration),
        ("BridgeId", bridge_id),
    ]
    return pairs


def status_item(
    ch: ChannelView,
    *,
    channel_type: str,
    dnid: str,
    bridge_id: str,
    application: str,
    data: str,
    seconds: int,
    variables: list[tuple[str, str]],
) -> Pairs:
    """Status list item without its ActionID (appended last, as Asterisk does)."""
    pairs: Pairs = [("Event", "Status"), ("Privilege", "Call")]
    pairs.extend(channel_block(ch))
    pairs += [
        ("Type", channel_type),
        ("DNID", dnid),
        ("EffectiveConnectedLineNum", ch.connected_num),
        ("EffectiveConnectedLineName", ch.connected_name),
        ("TimeToHangup", "0"),
        ("BridgeID", bridge_id),
        ("Application", application),
        ("Data", data),
        ("Nativeformats", "(ulaw)"),
        ("Readformat", "ulaw"),
        ("Readtrans", ""),
        ("Writeformat", "ulaw"),
        ("Writetrans", ""),
        ("Callgroup", "0"),
        ("Pickupgroup", "0"),
        ("Seconds", str(seconds)),
    ]
    pairs.extend(("Variable", f"{k}={v}") for k, v in variables)
    return pairs


def hms(seconds: float) -> str:
    """A channel's age as CoreShowChannel writes it: ``HH:MM:SS``."""
    total = max(0, int(seconds))
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def app_seconds(seconds: float) -> str:
    """Seconds in a dialplan application's data, as the dialplan writes them: ``6``, ``0.5``."""
    return str(round(seconds)) if abs(seconds - round(seconds)) < 1e-6 else f"{seconds:.1f}"
