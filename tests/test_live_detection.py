"""The live path: a real TCP link to an AMI server speaking the recorded wire format —
connect, replay, reconnect after the server drops, resync; Redis going away; recording."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from simpbx.amiserver import AmiServer, AmiSession

from callback_dialer.ami.record import record
from callback_dialer.app import Dialer, build_dialer
from callback_dialer.clock import ScaledClock
from callback_dialer.detect.replay import replay_capture

from .helpers.captures import load
from .helpers.recorded_pbx import RecordedPbx
from .helpers.wait import until, until_async
from .test_detection_captures import EXPECTED_OPEN

pytestmark = pytest.mark.captures
# The recorded schedule divided by SPEED, and the dialer's clock sped up as much: a lag of 0.1 s
# on a loaded machine is SPEED/10 seconds of call length to the dialer, enough at 40x to push a
# short call across min_call_seconds. 10x keeps the busiest capture at 6 s.
SPEED = 10.0


def ami_section(server: AmiServer) -> dict:
    return {
        "port": server.port,
        "secret": "s3cret",
        "reconnect_min_delay": 0.05,
        "reconnect_max_delay": 0.2,
        "ping_interval": 2,
        "ping_timeout": 2,
        "action_timeout": 2,
    }


@pytest.fixture
async def live(make_config, redis_url, tmp_path):
    """Build a started Dialer (dispatching off) connected to a fresh AmiServer."""
    made: list[tuple[AmiServer, Dialer]] = []

    async def build(
        *, redis: str | None = None, spool: Path | None = None, server: AmiServer | None = None
    ) -> tuple[AmiServer, Dialer]:
        server = server or await AmiServer(secret="s3cret").start()
        config = make_config(ami=ami_section(server), dispatch={"enabled": False})
        dialer = build_dialer(
            config,
            clock=ScaledClock(SPEED),
            redis_url=redis or redis_url,
            spool=spool or tmp_path / f"spool-{len(made)}.jsonl",
        )
        await dialer.start()
        # Logged in and resynchronised: a call played before the resync's channel list came
        # back would be taken for one that vanished while we were away.
        await until(lambda: dialer.ami.authenticated and dialer.dispatcher.synced)
        made.append((server, dialer))
        return server, dialer

    yield build
    for server, dialer in made:
        await dialer.stop()
        await server.stop()


async def open_callbacks(dialer: Dialer) -> list[tuple[str, str, str]]:
    rows = await dialer.queue.waiting(limit=1000) + await dialer.queue.in_progress()
    return sorted((c.number, c.category, c.source.value) for c in rows)


@pytest.mark.parametrize(
    "name",
    ["abandon_in_queue", "queue_timeout", "keypress_callback", "answered_by_agent", "busy_hour"],
)
async def test_a_capture_over_tcp_reaches_the_same_conclusions(name, captures, live) -> None:
    server, dialer = await live()
    await server.play_capture(captures / f"{name}.jsonl", speed=SPEED)
    await dialer.pipeline.sink.drain(5)
    assert await open_callbacks(dialer) == sorted(EXPECTED_OPEN[name])
    assert dialer.pipeline.router.handler_errors == 0


async def test_the_recorded_queue_status_answer_builds_the_agents(captures, live) -> None:
    server = await AmiServer(secret="s3cret").start()
    server.load_capture_answers(captures / "busy_hour.jsonl")
    _, dialer = await live(server=server)
    await until(lambda: len(dialer.pipeline.agents.agents) == 3)
    views = {v.interface: (v.state, v.queues) for v in dialer.pipeline.agents.views()}
    assert views["Local/102@agents/n"][1] == ("sales", "support")
    assert set(views) == {"Local/101@agents/n", "Local/102@agents/n", "Local/103@agents/n"}


async def test_after_the_server_drops_the_dialer_reconnects_and_resyncs(live) -> None:
    server = await AmiServer(secret="s3cret").start()
    pbx = RecordedPbx(server)
    pbx.add_agent("101", ["sales"])
    pbx.add_agent("102", ["sales", "support"])
    _, dialer = await live(server=server)
    agents = dialer.pipeline.agents
    await until(lambda: len(agents.agents) == 2)
    # While the link is down, 102 goes on a break and 101 leaves the queues.
    listed_before = len(server.actions_named("CoreShowChannels"))
    server.drop_all()
    await until(lambda: not dialer.ami.authenticated)
    pbx.members["Local/102@agents/n"].paused = True
    pbx.members["Local/102@agents/n"].paused_reason = "break"
    del pbx.members["Local/101@agents/n"]
    await until(lambda: dialer.ami.authenticated and server.logins == 2)
    # The calls are listed again (the leader lists them once more, for callback calls to adopt).
    await until(lambda: len(server.actions_named("CoreShowChannels")) > listed_before)
    await until(lambda: set(agents.agents) == {"Local/102@agents/n"})
    [view] = agents.views()
    assert (view.state, view.paused_reason) == ("paused", "break")
    assert len(server.actions_named("QueueStatus")) == 2


def _frames(captures: Path, name: str) -> list[str]:
    return [
        r["raw"]
        for r in load(captures / f"{name}.jsonl")
        if r["dir"] == "in" and r["raw"].startswith("Event:")
    ]


def _core_show_channel(newchannel_raw: str, duration: str) -> list[tuple[str, str]]:
    fields = dict(line.split(": ", 1) for line in newchannel_raw.split("\r\n") if ": " in line)
    return [
        ("Event", "CoreShowChannel"),
        ("Channel", fields["Channel"]),
        ("ChannelState", "6"),
        ("ChannelStateDesc", "Up"),
        ("CallerIDNum", fields["CallerIDNum"]),
        ("CallerIDName", fields["CallerIDName"]),
        ("ConnectedLineNum", "<unknown>"),
        ("ConnectedLineName", "<unknown>"),
        ("Language", "en"),
        ("AccountCode", ""),
        ("Context", fields["Context"]),
        ("Exten", "1"),
        ("Priority", "2"),
        ("Uniqueid", fields["Uniqueid"]),
        ("Linkedid", fields["Linkedid"]),
        ("Application", "Queue"),
        ("ApplicationData", "sales,,,,300"),
        ("Duration", duration),
        ("BridgeId", ""),
    ]


async def test_a_call_met_mid_call_already_talking_to_an_agent_is_served_not_missed(
    captures, live
) -> None:
    # The dialer starts while a caller talks with an agent: Asterisk lists the caller's
    # channel in a bridge with the agent's. When that call ends it was served: no callback.
    frames = _frames(captures, "abandon_in_queue")
    newchannel = next(f for f in frames if f.startswith("Event: Newchannel"))
    caller = dict(_core_show_channel(newchannel, "00:01:05"))
    caller["BridgeId"] = "b7e1c3d2-0000-4000-8000-000000000001"
    agent = {
        **caller,
        "Channel": "Local/101@agents-00000001;1",
        "Uniqueid": "1700000000.99",
        "Linkedid": caller["Linkedid"],
        "Context": "agents",
        "Application": "AppQueue",
        "ApplicationData": "(Outgoing Line)",
    }
    server = await AmiServer(secret="s3cret").start()

    async def channels(session: AmiSession, message) -> None:
        items = [list(caller.items()), list(agent.items())]
        session.write(server.list_response("coreshowchannels", message.get("ActionID"), items))

    server.on_action("CoreShowChannels", channels)
    _, dialer = await live(server=server)
    number = caller["CallerIDNum"]
    await until(
        lambda: (
            number.lstrip("+") in {n.lstrip("+") for n in dialer.pipeline.tracker.active_numbers()}
        )
    )
    hangup = next(
        f
        for f in frames
        if f.startswith("Event: Hangup\r\n") and f"\r\nUniqueid: {caller['Uniqueid']}\r\n" in f
    )
    await server.send_raw(hangup.encode())
    await until(lambda: not dialer.pipeline.tracker.active_numbers())
    await dialer.pipeline.sink.drain(5)
    assert await open_callbacks(dialer) == []
    assert not dialer.metrics.not_queued.get("fate_unknown")


@pytest.mark.parametrize("still_up", [True, False])
async def test_a_call_in_progress_across_a_reconnect(captures, live, still_up) -> None:
    frames = _frames(captures, "abandon_in_queue")
    join = next(i for i, f in enumerate(frames) if f.startswith("Event: QueueCallerJoin"))
    newchannel = next(f for f in frames if f.startswith("Event: Newchannel"))
    server = await AmiServer(secret="s3cret").start()
    listed: list = [_core_show_channel(newchannel, "00:00:05")] if still_up else []

    async def channels(session: AmiSession, message) -> None:
        session.write(server.list_response("coreshowchannels", message.get("ActionID"), listed))

    server.on_action("CoreShowChannels", channels)
    _, dialer = await live(server=server)
    for frame in frames[: join + 1]:
        await server.send_raw(frame.encode())
    await until(lambda: dialer.pipeline.tracker.active_numbers() == {"+79161234561"})
    listed_before = len(server.actions_named("CoreShowChannels"))
    server.drop_all()
    await until(lambda: dialer.ami.authenticated and server.logins == 2)
    await until(lambda: dialer.dispatcher.synced)
    await until(lambda: len(server.actions_named("CoreShowChannels")) > listed_before)
    await asyncio.sleep(0.05)
    if still_up:
        # Still in the queue: the rest of the call arrives after the reconnect.
        assert dialer.pipeline.tracker.active_numbers() == {"+79161234561"}
        for frame in frames[join + 1 :]:
            await server.send_raw(frame.encode())
        await dialer.pipeline.sink.drain(5)
        assert await open_callbacks(dialer) == [("+79161234561", "new_connection", "abandon")]
    else:
        # It ended while nobody listened: maybe answered, so no callback — but counted.
        assert dialer.pipeline.tracker.active_numbers() == frozenset()
        await dialer.pipeline.sink.drain(5)
        assert await open_callbacks(dialer) == []
        assert dialer.metrics.not_queued.get("fate_unknown") == 1


async def test_a_call_that_begins_while_the_channel_list_is_on_its_way_is_kept(
    captures,
    live,
) -> None:
    # Asterisk built its (empty) list, then the call began: its first events reach us before
    # the list does. The call is alive, not one that "vanished while we were away".
    frames = _frames(captures, "abandon_in_queue")
    join = next(i for i, f in enumerate(frames) if f.startswith("Event: QueueCallerJoin"))
    server = await AmiServer(secret="s3cret").start()

    async def channels(session: AmiSession, message) -> None:
        # Only while the first list (the resync's) is on its way; the leader's second list,
        # for callback calls to adopt, comes after and finds the call as any event does.
        if len(server.actions_named("CoreShowChannels")) == 1:
            for frame in frames[: join + 1]:
                session.write(frame.encode())
        session.write(server.list_response("coreshowchannels", message.get("ActionID"), []))

    server.on_action("CoreShowChannels", channels)
    _, dialer = await live(server=server)
    await until(lambda: len(server.actions_named("CoreShowChannels")) >= 1)
    await asyncio.sleep(0.05)
    assert dialer.pipeline.tracker.active_numbers() == {"+79161234561"}
    await asyncio.sleep(10 / SPEED)  # longer than min_call_seconds: a real wait in the queue
    for frame in frames[join + 1 :]:
        await server.send_raw(frame.encode())
    await dialer.pipeline.sink.drain(5)
    assert await open_callbacks(dialer) == [("+79161234561", "new_connection", "abandon")]
    assert not dialer.metrics.not_queued.get("fate_unknown")


async def test_a_callback_request_made_before_the_link_dropped_is_kept(captures, live) -> None:
    frames = _frames(captures, "keypress_callback")
    asked = next(i for i, f in enumerate(frames) if f.startswith("Event: UserEvent"))
    server, dialer = await live()
    for frame in frames[: asked + 1]:
        await server.send_raw(frame.encode())
    await until(lambda: dialer.pipeline.tracker.active_numbers() == {"+79031234564"})
    server.drop_all()  # CoreShowChannels after the reconnect lists nothing: the call is gone
    await until(lambda: dialer.ami.authenticated and server.logins == 2)
    await until(lambda: not dialer.pipeline.tracker.active_numbers())
    await dialer.pipeline.sink.drain(5)
    assert await open_callbacks(dialer) == [("+79031234564", "new_connection", "explicit")]


# ---------------------------------------------------------------- Redis going away


async def test_missed_calls_during_a_redis_outage_are_kept_and_applied_later(
    captures,
    live,
    own_redis,
    tmp_path,
) -> None:
    spool = tmp_path / "spool.jsonl"
    server, dialer = await live(redis=own_redis.url, spool=spool)
    own_redis.stop()
    await server.play_capture(captures / "abandon_in_queue.jsonl", speed=SPEED)
    await until(lambda: spool.exists())
    [line] = spool.read_text().splitlines()
    assert json.loads(line)["number"] == "+79161234561"
    assert dialer.pipeline.sink.redis_ok is False
    ok, problems = await dialer.health()
    assert not ok and "Redis not reachable" in problems
    own_redis.start()  # a fresh, empty Redis: the spooled fact must still arrive

    async def arrived() -> bool:
        return await open_callbacks(dialer) == [("+79161234561", "new_connection", "abandon")]

    await until_async(arrived, timeout=20)
    await until(lambda: not spool.exists())


async def test_a_restart_during_a_redis_outage_loses_nothing(
    captures, live, own_redis, tmp_path
) -> None:
    spool = tmp_path / "spool.jsonl"
    server, first = await live(redis=own_redis.url, spool=spool)
    own_redis.stop()
    await server.play_capture(captures / "queue_timeout.jsonl", speed=SPEED)
    await until(lambda: spool.exists())
    await first.stop()
    await server.stop()
    own_redis.start()
    _, second = await live(redis=own_redis.url, spool=spool)

    async def arrived() -> bool:
        return await open_callbacks(second) == [("+79261234567", "billing", "timeout")]

    await until_async(arrived, timeout=20)


# ---------------------------------------------------------------- recording


async def test_a_recording_replays_to_the_same_conclusions(
    captures, make_config, redis_client, tmp_path
) -> None:
    server = await AmiServer(secret="s3cret").start()
    config = make_config(ami=ami_section(server))
    out = tmp_path / "recorded.jsonl"
    stop = asyncio.Event()
    recording = asyncio.create_task(record(config, out, stop=stop))
    await until(lambda: server.logins == 1)
    await server.play_capture(captures / "busy_hour.jsonl", speed=200)
    await asyncio.sleep(0.2)
    stop.set()
    count = await recording
    await server.stop()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert count == len(lines) > 1000
    assert lines[0]["raw"] == "Asterisk Call Manager/11.0.0\r\n"
    assert any(r["dir"] == "out" and "Secret: ********" in r["raw"] for r in lines)
    assert not any("s3cret" in r["raw"] for r in lines)
    assert {r["dir"] for r in lines} == {"in", "out"}
    # Played at 200x, the recording compresses time: judge it with a matching minimum.
    rows = await replay_capture(make_config(detection={"min_call_seconds": 0}), out, redis_client)
    assert sorted(r["number"] for r in rows) == sorted(n for n, _, _ in EXPECTED_OPEN["busy_hour"])


async def test_no_callback_opened_by_a_replay_stays_behind(captures, config, redis_client) -> None:
    prefix = "replay-leftover-check"
    rows = await replay_capture(
        config, captures / "busy_hour.jsonl", redis_client, key_prefix=prefix
    )
    assert len(rows) == 9
    leftovers = [k async for k in redis_client.scan_iter(match="{" + prefix + "}:*")]
    assert leftovers == []
