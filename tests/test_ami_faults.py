"""One test per panoramisk 1.4 fault (../shared/notes/stack-findings.md), against a live AMI
server speaking the captured wire format: each is fixed or contained by ami/client.py. Then the
actions and their answers, which one table of ours keeps (ami/pending.py): our messages back,
lists collected, nothing left behind."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from simpbx.amiserver import AmiServer, response

from callback_dialer.ami.client import (
    AmiActionFailed,
    AmiActionTimeout,
    AmiClient,
    AmiConnectionLost,
    AmiNotConnected,
    OriginateFateUnknown,
)
from callback_dialer.ami.frames import AmiMessage, encode_message
from callback_dialer.ami.router import EventRouter
from callback_dialer.config import AmiConfig

from .helpers.ports import refusing_port
from .helpers.wait import until

FAST = dict(
    reconnect_min_delay=0.05,
    reconnect_max_delay=0.2,
    ping_interval=0.3,
    ping_timeout=0.3,
    action_timeout=1.0,
    connect_timeout=1.0,
    fully_booted_timeout=0.5,
)


@pytest.fixture
async def server() -> AsyncIterator[AmiServer]:
    srv = await AmiServer(secret="s3cret").start()
    yield srv
    await srv.stop()


@pytest.fixture
async def make_client(server: AmiServer):
    clients: list[tuple[AmiClient, asyncio.Task]] = []

    async def start(
        router: EventRouter | None = None,
        *,
        secret: str = "s3cret",
        port: int | None = None,
        wait: bool = True,
        **overrides,
    ) -> AmiClient:
        config = AmiConfig(
            port=port or server.port, username="dialer", secret=secret, **{**FAST, **overrides}
        )
        client = AmiClient(config, router or EventRouter())
        task = asyncio.create_task(client.run())
        clients.append((client, task))
        if wait:
            await until(lambda: client.authenticated)
        return client

    yield start
    for client, task in clients:
        await client.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


NEWCHANNEL = [
    ("Event", "Newchannel"),
    ("Privilege", "call,all"),
    ("Channel", "IAX2/carrier-1"),
    ("CallerIDName", "Жанна Jérôme"),
    ("Uniqueid", "1.1"),
    ("Linkedid", "1.1"),
]
HANGUP = [
    ("Event", "Hangup"),
    ("Privilege", "call,all"),
    ("Channel", "IAX2/carrier-1"),
    ("Uniqueid", "1.1"),
    ("Linkedid", "1.1"),
    ("Cause", "16"),
]


async def test_fault_1_originate_always_goes_out_async_and_keeps_the_link(
    server, make_client
) -> None:
    client = await make_client()
    action_id = await client.originate(
        {
            "Channel": "Local/101@agents",
            "Context": "x",
            "Exten": "79161230001",
            "Priority": "1",
            "Async": "false",
        }
    )
    sent = await server.wait_action("Originate")
    assert sent.get("Async") == "true"
    assert sent.get("ActionID") == action_id
    assert client.authenticated and server.connections == 1


async def test_fault_2_a_failing_handler_loses_no_other_event_and_keeps_the_link(
    server,
    make_client,
) -> None:
    router = EventRouter()
    seen: list[str] = []

    def explode(message: AmiMessage) -> None:
        raise RuntimeError("handler bug")

    router.on("Newchannel", explode)
    router.on("Newchannel", lambda m: seen.append("Newchannel"))
    router.on("Hangup", lambda m: seen.append("Hangup"))
    client = await make_client(router)
    # Both events in one TCP write: panoramisk lost the Hangup here.
    await server.send_raw(encode_message(NEWCHANNEL) + encode_message(HANGUP))
    await until(lambda: "Hangup" in seen)
    assert seen == ["Newchannel", "Hangup"]
    assert router.handler_errors == 1
    assert client.authenticated and server.connections == 1


async def test_fault_3_a_silent_link_is_noticed_and_replaced(server, make_client) -> None:
    client = await make_client()
    server.silent = True  # Asterisk hangs: the TCP link stays up, nothing comes back
    await until(lambda: not client.authenticated, timeout=5)
    assert "no data" in client.last_error
    server.silent = False
    await until(lambda: client.authenticated and server.logins == 2, timeout=5)


async def test_fault_4_a_wrong_password_is_reported_and_nothing_hangs(server, make_client) -> None:
    client = await make_client(secret="wrong", wait=False)
    await until(lambda: client.login_refused)
    assert not client.authenticated
    assert "login refused for user 'dialer'" in client.last_error
    assert "Authentication failed" in client.last_error
    started = time.monotonic()
    with pytest.raises(AmiNotConnected):
        await client.send_action({"Action": "Ping"})
    assert time.monotonic() - started < 0.5
    await until(lambda: len(server.actions_named("Login")) >= 3)  # keeps trying, with backoff


async def test_fault_5_close_stops_a_pending_reconnect(server, make_client) -> None:
    client = await make_client()
    port = server.port
    await server.stop_listening()
    await until(lambda: not client.authenticated)
    await asyncio.sleep(0.1)  # a reconnect is pending now
    await client.close()
    before = server.connections
    restarted = await AmiServer(secret="s3cret", port=port).start()
    try:
        await asyncio.sleep(0.6)
        assert restarted.connections == 0
        assert server.connections == before
    finally:
        await restarted.stop()


async def test_fault_6_asterisk_down_at_start_is_not_fatal_and_logs_in_once(make_client) -> None:
    with refusing_port() as down:
        port = down.getsockname()[1]
        client = await make_client(port=port, wait=False)
        await until(lambda: client.attempts >= 4)
        assert not client.authenticated
        assert "Connect" in client.last_error or "refused" in client.last_error.lower()
    late = await AmiServer(secret="s3cret", port=port).start()
    try:
        await until(lambda: client.authenticated)
        await asyncio.sleep(0.5)
        assert (late.connections, late.logins) == (1, 1)
    finally:
        await late.stop()


async def test_fault_7_not_authenticated_while_disconnected(server, make_client) -> None:
    client = await make_client()
    lost = []
    client.on_lost(lambda: lost.append(client.authenticated))
    server.drop_all()
    await until(lambda: lost)
    assert lost == [False]
    await until(lambda: client.authenticated)


async def test_fault_8_an_originate_is_never_sent_twice(server, make_client) -> None:
    async def crash_on_originate(session, message) -> None:
        session.abort()  # Asterisk got it; the link died before the acknowledgement

    server.on_action("Originate", crash_on_originate)
    client = await make_client()
    with pytest.raises(OriginateFateUnknown):
        await client.originate(
            {
                "Channel": "Local/101@agents",
                "Context": "callback-outbound",
                "Exten": "79161230001",
                "Priority": "1",
            }
        )
    await until(lambda: client.authenticated and server.logins == 2)
    await asyncio.sleep(0.3)
    assert len(server.actions_named("Originate")) == 1


async def test_fault_8_every_action_has_a_timeout(server, make_client) -> None:
    async def never_answer(session, message) -> None:
        return None

    server.on_action("QueueStatus", never_answer)
    client = await make_client()
    with pytest.raises(AmiActionTimeout):
        await client.send_action({"Action": "QueueStatus"}, timeout=0.3)
    assert client.authenticated


async def test_fault_9_cyrillic_names_survive_reads_split_inside_a_character(
    server,
    make_client,
) -> None:
    router = EventRouter()
    names: list[str] = []
    router.on("Newchannel", lambda m: names.append(m.get("CallerIDName")))
    await make_client(router)
    server.split_writes = 1  # one byte per write: every multi-byte character is split
    await server.send_event(NEWCHANNEL)
    await until(lambda: names)
    assert names == ["Жанна Jérôme"]


async def test_fault_10_one_or_many_chanvariables_read_the_same(server, make_client) -> None:
    router = EventRouter()
    got: list[dict[str, str]] = []
    router.on("Newstate", lambda m: got.append(m.chanvars()))
    await make_client(router)
    await server.send_event([("Event", "Newstate"), ("ChanVariable", "CALLBACK_CATEGORY=billing")])
    await server.send_event(
        [
            ("Event", "Newstate"),
            ("ChanVariable", "CALLBACK_CATEGORY=support"),
            ("ChanVariable", "CALLBACK_ID=cb-7"),
        ]
    )
    await until(lambda: len(got) == 2)
    assert got == [
        {"CALLBACK_CATEGORY": "billing"},
        {"CALLBACK_CATEGORY": "support", "CALLBACK_ID": "cb-7"},
    ]


async def test_fault_11_originate_response_reaches_the_handlers_and_errors_are_errors(
    server,
    make_client,
) -> None:
    async def queue_then_answer(session, message) -> None:
        action_id = message.get("ActionID")
        session.write(response(action_id, "Originate successfully queued"))
        session.write(
            encode_message(
                [
                    ("Event", "OriginateResponse"),
                    ("Privilege", "call,all"),
                    ("ActionID", action_id),
                    ("Response", "Failure"),
                    ("Channel", "Local/nosuch@nowhere"),
                    ("Reason", "0"),
                    ("Uniqueid", "<unknown>"),
                ]
            )
        )

    server.on_action("Originate", queue_then_answer)
    router = EventRouter()
    outcomes: list[tuple[str, str]] = []
    router.on("OriginateResponse", lambda m: outcomes.append((m.get("ActionID"), m.get("Reason"))))
    client = await make_client(router)
    action_id = await client.originate(
        {"Channel": "Local/nosuch@nowhere", "Context": "x", "Exten": "1", "Priority": "1"}
    )
    await until(lambda: outcomes)
    assert outcomes == [(action_id, "0")]
    with pytest.raises(AmiActionFailed, match="Invalid/unknown command"):
        await client.send_action({"Action": "NoSuchAction"})


async def test_malformed_frames_are_skipped_and_the_link_lives(server, make_client) -> None:
    router = EventRouter()
    seen: list[str] = []
    router.on("Hangup", lambda m: seen.append(m.get("Uniqueid")))
    client = await make_client(router)
    await server.send_raw(b"no colon at all\r\n\r\n")
    await server.send_raw(b"\x00\xff\xfe\x80binary junk\r\n\r\n")
    await server.send_raw(b"Event: Newchannel\r\nCallerIDName: " + b"x" * 1_048_576 + b"\r\n\r\n")
    await server.send_raw(b"Event: UnknownEventName\r\nFoo: bar\r\n\r\n")
    await server.send_raw(b"Event: Hangup\r\n\r\n")  # an event missing its fields
    await server.send_event(HANGUP)
    await until(lambda: "1.1" in seen)
    assert client.authenticated and server.connections == 1


# ---------------------------------------------------------------- actions and their answers


def queue_member(name: str) -> list[tuple[str, str]]:
    return [("Event", "QueueMember"), ("Queue", "sales"), ("Name", name), ("Status", "1")]


async def test_send_action_returns_our_message(server, make_client) -> None:
    client = await make_client()
    reply = await client.send_action({"Action": "Ping"})
    assert isinstance(reply, AmiMessage)
    assert (reply.response, reply.get("Ping")) == ("Success", "Pong")
    assert reply.action_id == server.actions_named("Ping")[-1].get("ActionID")
    assert client.in_flight == 0


async def test_send_list_returns_the_items_and_the_handlers_see_them_too(
    server, make_client
) -> None:
    async def two_members(session, message) -> None:
        items = [queue_member("Agent 101"), queue_member("Agent 102")]
        session.write(server.list_response("queuestatus", message.get("ActionID"), items))

    server.on_action("QueueStatus", two_members)
    router = EventRouter()
    seen: list[tuple[str, str]] = []
    router.tap(lambda m: seen.append((m.event, m.get("Name"))))
    client = await make_client(router)
    items = await client.send_list({"Action": "QueueStatus"})
    assert all(isinstance(m, AmiMessage) for m in items)
    assert [(m.event, m.get("Name"), m.get("Queue")) for m in items] == [
        ("QueueMember", "Agent 101", "sales"),
        ("QueueMember", "Agent 102", "sales"),
    ]
    # The items and the Complete event reached the handlers; the acknowledgement did not.
    assert seen[-3:] == [
        ("QueueMember", "Agent 101"),
        ("QueueMember", "Agent 102"),
        ("QueueStatusComplete", ""),
    ]
    assert client.in_flight == 0


async def test_a_refused_list_raises_and_an_empty_list_is_empty(server, make_client) -> None:
    client = await make_client()
    assert await client.send_list({"Action": "CoreShowChannels"}) == []

    async def refuse(session, message) -> None:
        session.write(response(message.get("ActionID"), "Permission denied", status="Error"))

    server.on_action("Status", refuse)
    with pytest.raises(AmiActionFailed, match="Permission denied"):
        await client.send_list({"Action": "Status"})
    assert client.in_flight == 0


async def test_a_list_cut_by_a_dropped_link_fails_and_is_never_sent_again(
    server, make_client
) -> None:
    async def start_then_crash(session, message) -> None:
        action_id = message.get("ActionID")
        full = server.list_response("queuestatus", action_id, [queue_member("Agent 101")])
        session.write(full[: full.index(b"Event: QueueStatusComplete")])
        await session.drain()
        session.abort()

    server.on_action("QueueStatus", start_then_crash)
    client = await make_client()
    with pytest.raises(AmiConnectionLost):
        await client.send_list({"Action": "QueueStatus"})
    assert client.in_flight == 0
    await until(lambda: client.authenticated and server.logins == 2)
    await asyncio.sleep(0.3)
    assert len(server.actions_named("QueueStatus")) == 1


async def test_an_answer_after_the_timeout_reaches_no_waiter_and_breaks_nothing(
    server, make_client
) -> None:
    async def slow_pong(session, message) -> None:
        await asyncio.sleep(0.4)
        session.write(response(message.get("ActionID"), "", Ping="Pong"))

    server.on_action("Ping", slow_pong)
    client = await make_client(ping_interval=30)
    with pytest.raises(AmiActionTimeout):
        await client.send_action({"Action": "Ping"}, timeout=0.1)
    assert client.in_flight == 0
    await asyncio.sleep(0.5)  # the late Pong arrives now
    reply = await client.send_action({"Action": "Ping"}, timeout=1)
    assert reply.get("Ping") == "Pong" and client.authenticated


async def test_an_originate_response_ahead_of_the_acknowledgement_is_not_taken_for_it(
    server, make_client
) -> None:
    async def fail_fast(session, message) -> None:
        action_id = message.get("ActionID")
        session.write(
            encode_message(
                [
                    ("Event", "OriginateResponse"),
                    ("ActionID", action_id),
                    ("Response", "Failure"),
                    ("Reason", "0"),
                ]
            )
            + response(action_id, "Originate successfully queued")
        )

    server.on_action("Originate", fail_fast)
    router = EventRouter()
    outcomes: list[tuple[str, str]] = []
    router.on("OriginateResponse", lambda m: outcomes.append((m.get("ActionID"), m.get("Reason"))))
    client = await make_client(router)
    action_id = await client.originate(
        {"Channel": "Local/101@agents", "Context": "x", "Exten": "1", "Priority": "1"}
    )
    await until(lambda: outcomes)
    assert outcomes == [(action_id, "0")]
    assert client.in_flight == 0


async def test_actions_go_out_as_panoramisk_wrote_them(server, make_client) -> None:
    client = await make_client()
    recorded: list[tuple[str, str]] = []
    client.recorder = lambda direction, raw: recorded.append((direction, raw))
    await client.originate(
        {
            "Channel": "Local/101@agents",
            "Exten": "79161230001",
            "Context": "callback-outbound",
            "Priority": 1,
            "Variable": ["CALLBACK_ID=cb-1", "CALLBACK_CATEGORY=billing"],
            "ActionID": "cb-1-try-1",
        }
    )
    out = [raw for direction, raw in recorded if direction == "out"]
    assert out == [
        "Action: Originate\r\nActionID: cb-1-try-1\r\nAsync: true\r\n"
        "Channel: Local/101@agents\r\nContext: callback-outbound\r\nExten: 79161230001\r\n"
        "Priority: 1\r\nVariable: CALLBACK_ID=cb-1\r\nVariable: CALLBACK_CATEGORY=billing\r\n"
        "\r\n"
    ]
    sent = await server.wait_action("Originate")
    assert sent.getall("Variable") == ["CALLBACK_ID=cb-1", "CALLBACK_CATEGORY=billing"]
