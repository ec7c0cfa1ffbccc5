"""Originate on the simulated PBX: each outcome the callbacks capture shows, with the capture's
event sequence; the dialer's own form (ChannelId, OtherChannelId) over a real socket; customer
first; a busy agent; and the actions a dialer uses around a call (Hangup, Status)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from simpbx.ami import PbxAmi
from simpbx.clock import run_for
from simpbx.customers import PerNumber
from simpbx.model import (
    AgentSpec,
    CallerScript,
    CustomerResponse,
    FixedAgent,
    PbxSpec,
)
from simpbx.observe import CustomerLegEnded, OriginateDone
from simpbx.pbx import SimPbx
from simpbx.recording import Recorder
from simpbx.scenarios import CAPTURE_EPOCH, originate, play

from callback_dialer.ami.asterisk import DialStatus
from callback_dialer.ami.frames import AmiMessage, FrameDecoder
from callback_dialer.clock import ManualClock

from .conftest import FIXTURES
from .helpers.compare import channel_shapes, originate_responses, read_messages

# The callbacks capture's six Originates: (ActionID, agent, number, CALLBACK_ID, category).
CAPTURED = {
    "answered": ("dialer-2", "101", "79161230001", "cb-1", "new_connection"),
    "customer busy": ("dialer-3", "102", "79161230002", "cb-2", "support"),
    "congestion": ("dialer-4", "103", "79161230004", "cb-3", "billing"),
    "agent never answers": ("dialer-5", "109", "79161230001", "cb-4", "support"),
    "customer never answers": ("dialer-6", "101", "79161230003", "cb-5", "support"),
}


class Observed:
    def __init__(self) -> None:
        self.notices: list[object] = []

    def notice(self, event: object) -> None:
        self.notices.append(event)

    def of(self, kind: type) -> list:
        return [n for n in self.notices if isinstance(n, kind)]


@pytest.fixture
async def rig():
    made: list[SimPbx] = []

    def build(spec: PbxSpec | None = None, **kwargs) -> tuple[SimPbx, Recorder, Observed]:
        clock = ManualClock(start=CAPTURE_EPOCH)
        pbx = SimPbx(clock, spec, **kwargs)
        recorder, observed = Recorder(clock), Observed()
        pbx.listeners.append(recorder)
        pbx.observers.append(observed)
        made.append(pbx)
        return pbx, recorder, observed

    yield build
    for pbx in made:
        await pbx.close()


def capture_originate(
    pbx: SimPbx,
    recorder: Recorder,
    action_id: str,
    agent: str,
    number: str,
    callback: str,
    category: str,
) -> None:
    originate(
        pbx,
        {
            "ActionID": action_id,
            "Channel": f"Local/{agent}@agents",
            "Context": "callback-outbound",
            "Exten": number,
            "Priority": "1",
            "CallerID": f'"Callback {category}" <{number}>',
            "Variable": [
                f"CALLBACK_ID={callback}",
                f"CALLBACK_CATEGORY={category}",
                "AGENT_TALK=6",
            ],
            "Async": "true",
            "Timeout": "15000",
        },
        recorder,
    )


@pytest.mark.captures
@pytest.mark.parametrize("outcome", sorted(CAPTURED))
async def test_each_captured_outcome_has_the_captured_sequence(outcome, captures, rig) -> None:
    action_id, agent, number, callback, category = CAPTURED[outcome]
    pbx, recorder, _ = rig()
    capture_originate(pbx, recorder, action_id, agent, number, callback, category)
    await run_for(pbx.clock, 40)
    real = read_messages(captures / "callbacks.jsonl")
    simulated = read_messages(recorder.events())
    assert channel_shapes(simulated)[callback] == channel_shapes(real)[callback]
    assert originate_responses(simulated)[action_id] == originate_responses(real)[action_id]


@pytest.mark.captures
async def test_a_channel_that_cannot_be_created_fails_like_the_capture(captures, rig) -> None:
    pbx, recorder, observed = rig()
    originate(
        pbx,
        {
            "ActionID": "dialer-7",
            "Channel": "Local/nosuch@nowhere",
            "Context": "callback-outbound",
            "Exten": "79161230001",
            "Priority": "1",
            "Variable": "CALLBACK_ID=cb-6",
            "Async": "true",
            "Timeout": "5000",
        },
        recorder,
    )
    await run_for(pbx.clock, 1)
    real = read_messages(captures / "callbacks.jsonl")
    simulated = read_messages(recorder.events())
    assert channel_shapes(simulated)["cb-6"] == channel_shapes(real)["cb-6"]
    assert originate_responses(simulated)["dialer-7"] == ("Failure", "0", False)
    assert [n.reason for n in observed.of(OriginateDone)] == [0]


async def test_an_unknown_endpoint_fails_without_any_channel(rig) -> None:
    pbx, recorder, _ = rig()
    originate(
        pbx,
        {
            "ActionID": "x-1",
            "Channel": "PJSIP/999",
            "Context": "callback-outbound",
            "Exten": "79161230001",
            "Priority": "1",
            "Async": "true",
        },
        recorder,
    )
    await run_for(pbx.clock, 1)
    events = read_messages(recorder.events())
    assert [m.event for m in events] == ["OriginateResponse"]
    assert (events[0]["Response"], events[0]["Reason"], events[0]["Uniqueid"]) == (
        "Failure",
        "0",
        "<unknown>",
    )


# --------------------------------------------------------------------------- the dialer's form


async def _login(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, FrameDecoder]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()
    writer.write(b"Action: Login\r\nActionID: l\r\nUsername: dialer\r\nSecret: s\r\n\r\n")
    decoder = FrameDecoder()
    while not any(m.event == "FullyBooted" for m in decoder.feed(await reader.read(4096))):
        pass
    return reader, writer, decoder


async def _collect(
    reader: asyncio.StreamReader, decoder: FrameDecoder, done, clock: ManualClock, limit: float = 60
) -> list[AmiMessage]:
    got: list[AmiMessage] = []
    waited = 0.0
    while not done(got):
        try:
            data = await asyncio.wait_for(reader.read(65536), 0.05)
            assert data, "the simulated PBX closed the connection"
            got.extend(decoder.feed(data))
        except TimeoutError:
            await clock.advance(1.0)
            waited += 1
            assert waited < limit, [m.event for m in got]
    return got


async def test_the_dialers_originate_over_tcp_uses_its_channel_ids(rig) -> None:
    pbx, _, observed = rig()
    ami = await PbxAmi.serve(pbx, secret="s")
    reader, writer, decoder = await _login(ami.port)
    writer.write(
        b"Action: Originate\r\nActionID: cb-12-1\r\nChannel: Local/101@agents/n\r\n"
        b"Context: callback-outbound\r\nExten: 79161230001\r\nPriority: 1\r\n"
        b'CallerID: "Callback New connection" <79161230001>\r\n'
        b"Variable: CALLBACK_ID=cb-12\r\nVariable: CALLBACK_CATEGORY=new_connection\r\n"
        b"Variable: CALLBACK_TRUNK=default\r\nChannelId: dialer-cb-12-a1\r\n"
        b"OtherChannelId: dialer-cb-12-a1-2\r\nAsync: true\r\nTimeout: 15000\r\n\r\n"
    )
    got = await _collect(
        reader,
        decoder,
        lambda g: any(m.event == "Hangup" and m["Uniqueid"] == "dialer-cb-12-a1" for m in g),
        pbx.clock,
    )
    assert got[0].pairs() == [
        ("Response", "Success"),
        ("ActionID", "cb-12-1"),
        ("Message", "Originate successfully queued"),
    ]
    first = next(m for m in got if m.event == "Newchannel")
    assert (first["Uniqueid"], first["Linkedid"]) == ("dialer-cb-12-a1", "dialer-cb-12-a1")
    assert first["Channel"].startswith("Local/101@agents-") and first["Channel"].endswith(";1")
    second = [m for m in got if m.event == "Newchannel"][1]
    assert (second["Uniqueid"], second["Linkedid"]) == ("dialer-cb-12-a1-2", "dialer-cb-12-a1")
    response = next(m for m in got if m.event == "OriginateResponse")
    assert (
        response["ActionID"],
        response["Response"],
        response["Reason"],
        response["Uniqueid"],
    ) == ("cb-12-1", "Success", "4", "dialer-cb-12-a1")
    customer = next(
        m for m in got if m.event == "Newchannel" and m["Channel"].startswith("IAX2/carrier-")
    )
    assert customer["Linkedid"] == "dialer-cb-12-a1" != customer["Uniqueid"]
    dial_end = next(m for m in got if m.event == "DialEnd" and "Channel" in m)
    assert dial_end.chanvars()["CALLBACK_ID"] == "cb-12"
    assert (dial_end["Uniqueid"], dial_end["DialStatus"]) == ("dialer-cb-12-a1", "ANSWER")
    # The agent is busy on the wire while the callback lasts, and free after it.
    statuses = [m["Status"] for m in got if m.event == "QueueMemberStatus"]
    assert statuses == ["2", "1"]
    legs = observed.of(CustomerLegEnded)
    assert [(leg.callback_id, leg.status, leg.answered_at is not None) for leg in legs] == [
        ("cb-12", "ANSWER", True)
    ]
    writer.close()
    await ami.stop()


async def test_a_customer_who_never_answers_ends_with_noanswer_after_the_dial_timeout(rig) -> None:
    pbx, recorder, observed = rig(
        customers=PerNumber({"79161230009": CustomerResponse(DialStatus.NOANSWER)})
    )
    originate(
        pbx,
        {
            "ActionID": "a",
            "Channel": "Local/101@agents",
            "Context": "callback-outbound",
            "Exten": "79161230009",
            "Variable": "CALLBACK_ID=cb-9",
            "Async": "true",
            "Timeout": "15000",
        },
        recorder,
    )
    await run_for(pbx.clock, 30)
    [leg] = observed.of(CustomerLegEnded)
    assert leg.status == "NOANSWER"
    assert leg.ended_at - leg.rang_at == pytest.approx(pbx.spec.callback_dial_timeout)
    shapes = channel_shapes(read_messages(recorder.events()))["cb-9"]
    assert "DialEnd>NOANSWER" in shapes["local;1"]
    # app_dial hangs up the channel it rang to its timeout with no cause, as the
    # customer_first recording shows: HangupRequest without a Cause header, Hangup Cause 0.
    assert shapes["trunk"][-2:] == ["HangupRequest:", "Hangup:0"]


async def test_an_agent_already_on_a_call_answers_busy(rig) -> None:
    pbx, recorder, observed = rig()
    pbx.place_call("+79161234562", CallerScript(choice="2"))  # 102 takes it
    await run_for(pbx.clock, 2)
    assert pbx.agent("102").leg is not None
    originate(
        pbx,
        {
            "ActionID": "b",
            "Channel": "Local/102@agents",
            "Context": "callback-outbound",
            "Exten": "79161230001",
            "Variable": "CALLBACK_ID=cb-b",
            "Async": "true",
            "Timeout": "15000",
        },
        recorder,
    )
    await run_for(pbx.clock, 1)
    assert originate_responses(read_messages(recorder.events()))["b"] == ("Failure", "5", False)
    assert [n.reason for n in observed.of(OriginateDone)] == [5]
    # The queue call goes on untouched.
    assert pbx.agent("102").leg is not None


async def test_a_channel_id_in_use_is_refused(rig) -> None:
    pbx, _, _ = rig()
    call = pbx.place_call("+79161234561", CallerScript(choice="1"))
    ami = await PbxAmi.serve(pbx, secret="s")
    reader, writer, decoder = await _login(ami.port)
    writer.write(
        b"Action: Originate\r\nActionID: dup\r\nChannel: Local/103@agents\r\n"
        b"Context: callback-outbound\r\nExten: 79161230001\r\n"
        b"ChannelId: " + call.call_id.encode() + b"\r\nAsync: true\r\n\r\n"
    )
    got = await _collect(
        reader, decoder, lambda g: any(m.event == "OriginateResponse" for m in g), pbx.clock
    )
    response = next(m for m in got if m.event == "OriginateResponse")
    assert (response["Response"], response["Reason"]) == ("Failure", "0")
    writer.close()
    await ami.stop()


# --------------------------------------------------------------------------- customer first


# The customer_first recording (ours only: the shared captures have none): its five
# Originates, as the dialer sends them in customer-first mode.
CUSTOMER_FIRST = FIXTURES / "customer_first.jsonl"


async def test_customer_first_has_the_recorded_sequence_for_each_outcome() -> None:
    # customer and agent answer, busy, congestion, agent 109 never answers, no answer
    recording = await play("customer_first")
    real = read_messages(CUSTOMER_FIRST)
    simulated = read_messages(recording.events())
    callbacks = {f"cb-{n}" for n in range(1, 6)}
    assert set(channel_shapes(real)) == callbacks
    for callback in sorted(callbacks):
        assert channel_shapes(simulated)[callback] == channel_shapes(real)[callback], callback
    assert originate_responses(simulated) == originate_responses(real)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (DialStatus.ANSWER, "4"),
        (DialStatus.BUSY, "0"),
        (DialStatus.NOANSWER, "0"),
        (DialStatus.CONGESTION, "0"),
    ],
)
async def test_customer_first_tells_the_customers_dial_only_in_the_first_channels_dial_end(
    status, reason, rig
) -> None:
    pbx, recorder, _ = rig(
        customers=PerNumber({"79161230007": CustomerResponse(status, ring=2.0, talk=30.0)})
    )
    originate(
        pbx,
        {
            "ActionID": "cf",
            "Channel": "Local/79161230007@callback-customer/n",
            "Context": "callback-agent",
            "Exten": "101",
            "Priority": "1",
            "CallerID": '"Callback" <79161230007>',
            "Variable": ["CALLBACK_ID=cb-cf", "CALLBACK_AGENT=Local/101@agents"],
            "ChannelId": "cf-1",
            "OtherChannelId": "cf-2",
            "Async": "true",
            "Timeout": "40000",
        },
        recorder,
    )
    await run_for(pbx.clock, 80)
    events = read_messages(recorder.events())
    response = next(m for m in events if m.event == "OriginateResponse")
    assert response["Reason"] == reason
    # Asterisk's own dial of the first channel (no Channel header) ends with the customer's
    # status: the only place a failed customer-first Originate says what happened.
    [first_dial] = [m for m in events if m.event == "DialEnd" and "Channel" not in m.fields]
    assert (first_dial["DestUniqueid"], first_dial["DialStatus"]) == ("cf-1", status)
    if status == "ANSWER":
        assert (response["Response"], response["Uniqueid"]) == ("Success", "cf-1")
        agent_dial = [
            m
            for m in events
            if m.event == "DialBegin" and m.get("DestChannel", "").startswith("Local/101@agents-")
        ]
        assert agent_dial and agent_dial[0]["Uniqueid"] == "cf-1"
    else:
        # Reason 0 names the channel that was made, unlike a channel that cannot be created.
        assert (response["Response"], response["Uniqueid"]) == ("Failure", "cf-1")
        assert not any(m.get("DestChannel", "").startswith("Local/101@") for m in events)
    # The customer's own dial carries the callback id, whatever happened.
    ends = [
        m for m in events if m.event == "DialEnd" and m.get("DestChannel", "").startswith("IAX2/")
    ]
    assert [(m.chanvars()["CALLBACK_ID"], m["DialStatus"]) for m in ends] == [("cb-cf", status)]
    assert not pbx.channels  # everything hung up in the end
    assert pbx.scheduler.errors == 0


# --------------------------------------------------------------------------- actions


async def test_hangup_status_and_core_show_channels_answer_from_the_live_calls(rig) -> None:
    spec = replace(
        PbxSpec(), agents=(AgentSpec("101", ("sales",), behaviour=FixedAgent(talk=600)),)
    )
    pbx, _, _ = rig(spec)
    call = pbx.place_call("+79161234561", CallerScript(choice="1"))
    await run_for(pbx.clock, 5)
    ami = await PbxAmi.serve(pbx, secret="s")
    reader, writer, decoder = await _login(ami.port)
    writer.write(
        b"Action: Status\r\nActionID: st\r\nChannel: "
        + call.channel.name.encode()
        + b"\r\nVariables: CALLBACK_CATEGORY,QUEUEWAIT\r\n\r\n"
    )
    got = await _collect(
        reader, decoder, lambda g: any(m.event == "StatusComplete" for m in g), pbx.clock
    )
    [status] = [m for m in got if m.event == "Status"]
    assert status.getall("Variable") == ["CALLBACK_CATEGORY=new_connection", "QUEUEWAIT=0"]
    assert status["BridgeID"] and int(status["Seconds"]) >= 3
    assert (status["Application"], status["Data"]) == ("Queue", "sales,,,,300")
    writer.write(b"Action: CoreShowChannels\r\nActionID: cs\r\n\r\n")
    got = await _collect(
        reader, decoder, lambda g: any(m.event == "CoreShowChannelsComplete" for m in g), pbx.clock
    )
    listed = [m for m in got if m.event == "CoreShowChannel"]
    assert {m["Channel"] for m in listed} == {ch.name for ch in pbx.channels.values()}
    assert next(iter(listed)).pairs()[1] == ("ActionID", "cs")
    writer.write(
        b"Action: Hangup\r\nActionID: h\r\nChannel: " + call.channel.name.encode() + b"\r\n\r\n"
    )
    got = await _collect(
        reader,
        decoder,
        lambda g: any(m.event == "Hangup" and m["Uniqueid"] == call.call_id for m in g),
        pbx.clock,
    )
    assert got[0].pairs() == [
        ("Response", "Success"),
        ("ActionID", "h"),
        ("Message", "Channel Hungup"),
    ]
    assert any(m.event == "AgentComplete" and m["Reason"] == "caller" for m in got)
    assert not pbx.channels
    writer.close()
    await ami.stop()
