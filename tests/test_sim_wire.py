"""The simulator's message builders against real Asterisk 22 traffic: every captured message of
a type the simulator sends is rebuilt from its own values, and must come out byte for byte."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from simpbx import wire
from simpbx.ami import PbxAmi
from simpbx.amiserver import GREETING
from simpbx.channels import Channel
from simpbx.model import AgentSpec, PbxSpec
from simpbx.pbx import SimPbx
from simpbx.scenarios import CAPTURE_EPOCH, SCENARIOS, play

from callback_dialer.ami.asterisk import (
    ChannelState,
    DeviceState,
    DialProgress,
    DialStatus,
    HangupCause,
    OriginateReason,
)
from callback_dialer.ami.frames import AmiMessage, FrameDecoder, encode_message
from callback_dialer.clock import ManualClock

from .conftest import CAPTURE_SOURCES
from .helpers.compare import header_orders, read_messages

pytestmark = pytest.mark.captures


def channel_from(m: AmiMessage, prefix: str = "") -> Channel:
    f = m.fields
    chanvars = [v.partition("=") for v in m.getall(prefix + "ChanVariable")]
    ch = Channel(
        name=f[prefix + "Channel"],
        uniqueid=f[prefix + "Uniqueid"],
        linkedid=f[prefix + "Linkedid"],
        context=f[prefix + "Context"],
        exten=f[prefix + "Exten"],
        created_at=0.0,
        channelvars=tuple(name for name, _, _ in chanvars),
        priority=int(f[prefix + "Priority"]),
        state=ChannelState(int(f[prefix + "ChannelState"])),
        caller_num=f[prefix + "CallerIDNum"],
        caller_name=f[prefix + "CallerIDName"],
        connected_num=f[prefix + "ConnectedLineNum"],
        connected_name=f[prefix + "ConnectedLineName"],
        language=f[prefix + "Language"],
        accountcode=f[prefix + "AccountCode"],
    )
    ch.variables = {name: value for name, _, value in chanvars}
    return ch


def bridge_from(m: AmiMessage) -> wire.BridgeView:
    f = m.fields
    return wire.BridgeView(
        uniqueid=f["BridgeUniqueid"],
        num_channels=int(f["BridgeNumChannels"]),
        type=f["BridgeType"],
        technology=f["BridgeTechnology"],
        creator=f["BridgeCreator"],
        name=f["BridgeName"],
        video_source_mode=f["BridgeVideoSourceMode"],
    )


def member_from(m: AmiMessage) -> wire.MemberView:
    f = m.fields
    return wire.MemberView(
        queue=f["Queue"],
        name=f.get("MemberName") or f["Name"],
        interface=f.get("Interface") or f["Location"],
        state_interface=f["StateInterface"],
        membership=f["Membership"],
        penalty=int(f["Penalty"]),
        calls_taken=int(f["CallsTaken"]),
        last_call=int(f["LastCall"]),
        last_pause=int(f["LastPause"]),
        login_time=int(f["LoginTime"]),
        in_call=f["InCall"] == "1",
        status=DeviceState(int(f["Status"])),
        paused=f["Paused"] == "1",
        paused_reason=f["PausedReason"],
        ringinuse=f.get("Ringinuse") == "1",
        wrapuptime=int(f["Wrapuptime"]),
    )


def caller(m: AmiMessage) -> Channel | None:
    return channel_from(m) if "Channel" in m.fields else None


def f(m: AmiMessage, key: str) -> str:
    return m.fields[key]


def cause(m: AmiMessage) -> HangupCause:
    return HangupCause(int(f(m, "Cause")))


def listed(m: AmiMessage, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A list item as AmiServer.list_response sends it: its ActionID last."""
    return [*pairs, ("ActionID", f(m, "ActionID"))]


REBUILD: dict[str, Callable[[AmiMessage], list[tuple[str, str]]]] = {
    "Newchannel": lambda m: wire.newchannel(channel_from(m)),
    "Newstate": lambda m: wire.newstate(channel_from(m)),
    "NewCallerid": lambda m: wire.newcallerid(channel_from(m)),
    "NewConnectedLine": lambda m: wire.newconnectedline(channel_from(m)),
    "Newexten": lambda m: wire.newexten(channel_from(m), f(m, "Application"), f(m, "AppData")),
    "VarSet": lambda m: (
        wire.varset(channel_from(m), f(m, "Variable"), f(m, "Value"))
        if "Linkedid" in m.fields
        else wire.global_varset(f(m, "Variable"), f(m, "Value"))
    ),
    "HangupRequest": lambda m: wire.hangup_request(
        channel_from(m), cause(m) if "Cause" in m.fields else None
    ),
    # Its Cause is an AST_SOFTHANGUP_* flag (32 explicit, 4 shutdown), not a Q.931 cause.
    "SoftHangupRequest": lambda m: wire.soft_hangup_request(channel_from(m), int(f(m, "Cause"))),
    "Hangup": lambda m: wire.hangup(channel_from(m), cause(m)),
    "DeviceStateChange": lambda m: wire.device_state_change(
        f(m, "Device"), DeviceState[f(m, "State")]
    ),
    "UserEvent": lambda m: wire.user_event(
        channel_from(m) if "Channel" in m.fields else None,
        f(m, "UserEvent"),
        # The dialplan's own headers, in its order (Reason, Category; the generated
        # dialplan's Number after the offer; an outage's Action, Id, ...): all after UserEvent.
        list(m.fields.items())[list(m.fields).index("UserEvent") + 1 :],
    ),
    "DialBegin": lambda m: wire.dial_begin(caller(m), channel_from(m, "Dest"), f(m, "DialString")),
    "DialState": lambda m: wire.dial_state(
        caller(m), channel_from(m, "Dest"), DialProgress(f(m, "DialStatus"))
    ),
    "DialEnd": lambda m: wire.dial_end(
        caller(m), channel_from(m, "Dest"), DialStatus(f(m, "DialStatus"))
    ),
    "LocalBridge": lambda m: wire.local_bridge(
        channel_from(m, "LocalOne"),
        channel_from(m, "LocalTwo"),
        f(m, "Context"),
        f(m, "Exten"),
        f(m, "LocalOptimization") == "Yes",
    ),
    "BridgeCreate": lambda m: wire.bridge_create(bridge_from(m)),
    "BridgeDestroy": lambda m: wire.bridge_destroy(bridge_from(m)),
    "BridgeEnter": lambda m: wire.bridge_enter(bridge_from(m), channel_from(m)),
    "BridgeLeave": lambda m: wire.bridge_leave(bridge_from(m), channel_from(m)),
    "QueueCallerJoin": lambda m: wire.queue_caller_join(
        channel_from(m), f(m, "Queue"), int(f(m, "Position")), int(f(m, "Count"))
    ),
    "QueueCallerLeave": lambda m: wire.queue_caller_leave(
        channel_from(m), f(m, "Queue"), int(f(m, "Position")), int(f(m, "Count"))
    ),
    "QueueCallerAbandon": lambda m: wire.queue_caller_abandon(
        channel_from(m),
        f(m, "Queue"),
        int(f(m, "Position")),
        int(f(m, "OriginalPosition")),
        int(f(m, "HoldTime")),
    ),
    "AgentCalled": lambda m: wire.agent_called(
        channel_from(m),
        channel_from(m, "Dest"),
        f(m, "Queue"),
        f(m, "Interface"),
        f(m, "MemberName"),
    ),
    "AgentConnect": lambda m: wire.agent_connect(
        channel_from(m),
        channel_from(m, "Dest"),
        f(m, "Queue"),
        f(m, "Interface"),
        f(m, "MemberName"),
        int(f(m, "HoldTime")),
        int(f(m, "RingTime")),
    ),
    "AgentComplete": lambda m: wire.agent_complete(
        channel_from(m) if "Channel" in m.fields else None,
        channel_from(m, "Dest") if "DestChannel" in m.fields else None,
        f(m, "Queue"),
        f(m, "Interface"),
        f(m, "MemberName"),
        int(f(m, "HoldTime")),
        int(f(m, "TalkTime")),
        f(m, "Reason"),
    ),
    "QueueMemberStatus": lambda m: wire.queue_member_event("QueueMemberStatus", member_from(m)),
    "QueueMemberPause": lambda m: wire.queue_member_event("QueueMemberPause", member_from(m)),
    "QueueMemberAdded": lambda m: wire.queue_member_event("QueueMemberAdded", member_from(m)),
    "QueueMemberRemoved": lambda m: wire.queue_member_event("QueueMemberRemoved", member_from(m)),
    "OriginateResponse": lambda m: wire.originate_response(
        action_id=f(m, "ActionID"),
        response=f(m, "Response"),
        channel=f(m, "Channel"),
        context=f(m, "Context"),
        exten=f(m, "Exten"),
        reason=OriginateReason(int(f(m, "Reason"))),
        uniqueid=f(m, "Uniqueid"),
        caller_num=f(m, "CallerIDNum"),
        caller_name=f(m, "CallerIDName"),
        chanvars=[
            tuple(v.partition("=")[::2])
            for k in m.fields
            if k.startswith("ChanVariable(")
            for v in m.getall(k)
        ],
        chanvar_channel=f(m, "Channel"),
    ),
    "QueueParams": lambda m: listed(
        m,
        wire.queue_params(
            queue=f(m, "Queue"),
            max_callers=int(f(m, "Max")),
            strategy=f(m, "Strategy"),
            calls=int(f(m, "Calls")),
            holdtime=int(f(m, "Holdtime")),
            talktime=int(f(m, "TalkTime")),
            completed=int(f(m, "Completed")),
            abandoned=int(f(m, "Abandoned")),
            service_level=int(f(m, "ServiceLevel")),
            service_level_perf=float(f(m, "ServicelevelPerf")),
            service_level_perf2=float(f(m, "ServicelevelPerf2")),
            weight=int(f(m, "Weight")),
        ),
    ),
    "QueueMember": lambda m: listed(m, wire.queue_member_item(member_from(m))),
    "QueueEntry": lambda m: listed(
        m,
        wire.queue_entry_item(
            SimpleNamespace(
                name=f(m, "Channel"),
                uniqueid=f(m, "Uniqueid"),
                caller_num=f(m, "CallerIDNum"),
                caller_name=f(m, "CallerIDName"),
                connected_num=f(m, "ConnectedLineNum"),
                connected_name=f(m, "ConnectedLineName"),
            ),
            f(m, "Queue"),
            int(f(m, "Position")),
            int(f(m, "Wait")),
        ),
    ),
    "CoreShowChannel": lambda m: wire.core_show_channel(
        channel_from(m),
        f(m, "ActionID"),
        f(m, "BridgeId"),
        f(m, "Application"),
        f(m, "ApplicationData"),
        f(m, "Duration"),
    ),
    "QueueSummary": lambda m: listed(
        m,
        wire.queue_summary_item(
            queue=f(m, "Queue"),
            logged_in=int(f(m, "LoggedIn")),
            available=int(f(m, "Available")),
            callers=int(f(m, "Callers")),
            hold_time=int(f(m, "HoldTime")),
            talk_time=int(f(m, "TalkTime")),
            longest_hold_time=int(f(m, "LongestHoldTime")),
        ),
    ),
}


def _driver_only(message: AmiMessage) -> bool:
    """Traffic of the lab's test driver, not of any PBX the simulator stands for: an Originate
    into an application (the outage recording declares one through a Local channel)."""
    return message.event == "OriginateResponse" and "Application" in message.fields


def captured_raw(captures: Path) -> list[str]:
    raws = []
    for path in sorted(captures.glob("*.jsonl")):
        for line in path.read_text("utf-8").splitlines():
            record = json.loads(line)
            if record["dir"] == "in" and record["raw"].startswith("Event:"):
                raws.append(record["raw"])
    return raws


def test_every_captured_event_the_simulator_sends_is_rebuilt_byte_for_byte(captures) -> None:
    rebuilt: dict[str, int] = {}
    for raw in captured_raw(captures):
        message = FrameDecoder().feed(raw.encode())[0]
        build = REBUILD.get(message.event)
        if build is None or _driver_only(message):
            continue
        assert encode_message(build(message)).decode() == raw, message.event
        rebuilt[message.event] = rebuilt.get(message.event, 0) + 1
    captured_types = {FrameDecoder().feed(r.encode())[0].event for r in captured_raw(captures)}
    # Only the greeting's FullyBooted, the list completions (AmiServer's) and Asterisk's own
    # Shutdown (recorded at a `core restart now`; the simulator's PBX restart drops the link)
    # are not ours.
    assert captured_types - set(rebuilt) <= {
        "FullyBooted",
        "QueueStatusComplete",
        "QueueSummaryComplete",
        "CoreShowChannelsComplete",
        "Shutdown",
    }
    assert sum(rebuilt.values()) > 2000


async def test_simulated_scenarios_use_only_the_captured_header_orders() -> None:
    # Against every recording on this machine: customer first is only in the repo's.
    captured: dict[str, set[tuple[str, ...]]] = {}
    for path in (p for source in CAPTURE_SOURCES.values() for p in source.glob("*.jsonl")):
        for event, orders in header_orders(read_messages(path)).items():
            captured.setdefault(event, set()).update(orders)
    produced: dict[str, set[tuple[str, ...]]] = {}
    for name in SCENARIOS:
        recording = await play(name)
        for event, orders in header_orders(read_messages(recording.events())).items():
            produced.setdefault(event, set()).update(orders)
    for event, orders in produced.items():
        assert orders <= captured[event], event
    # The scenarios exercise every kind of event the captures' calls show.
    assert {
        "LocalBridge",
        "AgentComplete",
        "OriginateResponse",
        "DialState",
        "UserEvent",
        "QueueCallerAbandon",
        "QueueMemberAdded",
        "QueueMemberRemoved",
    } <= set(produced)


# --------------------------------------------------------------------------- over the socket


async def _session(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _read_until(
    reader: asyncio.StreamReader,
    decoder: FrameDecoder,
    last_event: str,
) -> list[AmiMessage]:
    got: list[AmiMessage] = []
    while not got or got[-1].event != last_event:
        got.extend(decoder.feed(await asyncio.wait_for(reader.read(65536), 5)))
    return got


@pytest.fixture
async def served_pbx():
    clock = ManualClock(start=CAPTURE_EPOCH)
    pbx = SimPbx(
        clock,
        PbxSpec(
            agents=(
                AgentSpec("101", ("sales",)),
                AgentSpec("102", ("sales", "support")),
                AgentSpec("103", ("support",)),
            )
        ),
    )
    ami = await PbxAmi.serve(pbx, secret="s3cret")
    yield pbx, ami
    await ami.stop()
    await pbx.close()


async def test_greeting_and_login_are_the_captured_bytes(captures, served_pbx) -> None:
    _, ami = served_pbx
    reader, writer = await _session(ami.port)
    assert await reader.readline() == GREETING.encode()
    writer.write(
        b"Action: Login\r\nActionID: dialer-1\r\nUsername: dialer\r\n"
        b"Secret: s3cret\r\nEvents: on\r\n\r\n"
    )
    decoder = FrameDecoder()
    got = await _read_until(reader, decoder, "FullyBooted")
    captured = read_messages(captures / "agent_states.jsonl")[:2]
    assert [m.pairs() for m in got] == [
        captured[0].pairs(),
        [
            *captured[1].pairs()[:2],
            ("Uptime", got[1]["Uptime"]),
            ("LastReload", got[1]["LastReload"]),
            ("Status", "Fully Booted"),
        ],
    ]
    writer.close()


async def test_queue_status_and_summary_list_like_the_capture(captures, served_pbx) -> None:
    _, ami = served_pbx
    reader, writer = await _session(ami.port)
    await reader.readline()
    writer.write(
        b"Action: Login\r\nActionID: dialer-1\r\nUsername: dialer\r\n"
        b"Secret: s3cret\r\nEvents: on\r\n\r\n"
    )
    decoder = FrameDecoder()
    await _read_until(reader, decoder, "FullyBooted")
    writer.write(b"Action: QueueStatus\r\nActionID: dialer-2\r\n\r\n")
    status = await _read_until(reader, decoder, "QueueStatusComplete")
    writer.write(b"Action: QueueSummary\r\nActionID: dialer-3\r\n\r\n")
    summary = await _read_until(reader, decoder, "QueueSummaryComplete")
    recorded = [
        m
        for m in read_messages(captures / "agent_states.jsonl")
        if m.get("ActionID") in ("dialer-2", "dialer-3")
    ]

    def outline(messages: list[AmiMessage]) -> list[tuple]:
        return [
            (
                tuple(k for k, _ in m.pairs()),
                m.get("Queue"),
                m.get("Name"),
                m.get("ListItems"),
                m.get("EventList"),
            )
            for m in messages
        ]

    assert outline(status + summary) == outline(recorded)
    writer.close()
