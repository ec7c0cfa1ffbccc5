"""Adopting the calls a killed dialer left up, on what a real Asterisk 22.9.0 sent.

``adopt_after_kill`` (tests/fixtures; scripts/lab_adoption.py made it): two agent-first
callbacks talking, the dialer killed with SIGKILL 4 s into the talk, a new dialer started.
``adopt_after_kill.first.jsonl`` is the killed run's AMI connection (its two Originates, the
calls up to the kill), ``adopt_after_kill.jsonl`` the new run's: its ``CoreShowChannels``
listing of the two talking calls (every channel of ours with ``ChanVariable: CALLBACK_ID``),
then the events that ended them. Here the new run's connection is played to a dialer whose
Redis holds what the killed run left: it must take both over, send no Originate, and record
each outcome once with the agent and the talk time the recording shows.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from simpbx.amiserver import AmiServer

from callback_dialer.ami.frames import AmiMessage, FrameDecoder
from callback_dialer.app import build_dialer
from callback_dialer.clock import ScaledClock
from callback_dialer.dispatch.adoption import live_calls
from callback_dialer.dispatch.strategies import AgentFirst
from callback_dialer.queue.models import Stage, State

from .conftest import FIXTURES
from .helpers.recorded_pbx import RecordedPbx
from .helpers.wait import until, until_async

SPEED = 5.0
KILLED = FIXTURES / "adopt_after_kill.first.jsonl"
RESTARTED = FIXTURES / "adopt_after_kill.jsonl"


def _records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]


def _frames(path) -> list[tuple[float, AmiMessage]]:
    out = []
    for r in _records(path):
        if r["dir"] == "in" and r["raw"].endswith("\r\n\r\n"):
            out.extend((r["t"], m) for m in FrameDecoder().feed(r["raw"].encode()))
    return out


def _listing() -> tuple[list[AmiMessage], float]:
    """The first CoreShowChannels listing of the restarted run that showed the calls (its
    adoption's), and when that list was complete."""
    frames = _frames(RESTARTED)
    first = next(m for _, m in frames if m.event == "CoreShowChannel")
    action = first.get("ActionID")
    items = [m for _, m in frames if m.event == "CoreShowChannel" and m.get("ActionID") == action]
    done = next(
        t
        for t, m in frames
        if m.event == "CoreShowChannelsComplete" and m.get("ActionID") == action
    )
    return items, done


def _killed_run() -> dict[str, dict]:
    """Per callback, from the killed run's connection: the agent it rang, when its talk began
    (DialEnd ANSWER) and when the run was killed (its last line)."""
    records = _records(KILLED)
    end = records[-1]["t"]
    out: dict[str, dict] = {}
    for r in records:
        m = FrameDecoder().feed(r["raw"].encode())
        for message in m:
            if r["dir"] == "out" and message.get("Action") == "Originate":
                variables = dict(v.split("=", 1) for v in message.getall("Variable"))
                out[variables["CALLBACK_ID"]] = {
                    "agent": message.get("Channel") + "/n",
                    "channel": message.get("ChannelId"),
                }
            if message.event == "DialEnd" and message.get("DialStatus") == "ANSWER":
                for cb in out.values():
                    if message.get("Uniqueid") == cb["channel"]:
                        cb["talk_before_kill"] = end - r["t"]
    return out


def test_the_recorded_listing_names_both_talking_calls_and_their_customers() -> None:
    items, _ = _listing()
    calls = live_calls(items)
    assert sorted(calls) == ["cb-1", "cb-2"]
    strategy = AgentFirst.__new__(AgentFirst)
    for callback_id, call in calls.items():
        assert call.first.uid.startswith(f"cbd-{callback_id}-1-")
        assert strategy.adopted_stage(call) is Stage.TALKING
        customer = call.bridged_with_first()
        # The customer's trunk channel: linked to our call, bridged with it, no CALLBACK_ID.
        assert customer is not None and customer.name.startswith("IAX2/carrier-")
        assert customer.callback_id == "" and customer.linkedid == call.first.uid
        plan = call.plan()
        assert plan.other_channel_id == call.first.uid + "-2"
        assert plan.action_id == "cbd-originate-" + call.first.uid.removeprefix("cbd-")


def test_a_talk_found_with_no_record_of_its_start_counts_from_the_customers_channel() -> None:
    """The recorded listing's customer channels were created (dialled) some seconds before the
    listing: the talk cannot have begun earlier, and counting from there never makes a
    reached customer look unreached."""
    items, _ = _listing()
    for call in live_calls(items).values():
        customer = call.bridged_with_first()
        assert customer is not None and customer.age is not None and customer.age > 0
        youngest = min(ch.age for ch in call.others() if ch.age is not None)
        assert call.talk_began_by(1000.0) == 1000.0 - youngest


@pytest.fixture
async def served(make_config, redis_url, tmp_path):
    server = await AmiServer(secret="s3cret").start()
    pbx = RecordedPbx(server, speed=SPEED)
    for extension in ("101", "102", "103"):
        pbx.add_agent(extension, ["support"])
    yield server, pbx
    await pbx.stop()
    await server.stop()


async def test_a_restarted_dialer_adopts_the_recorded_talking_calls_and_records_them_once(
    served, make_config, redis_url, tmp_path
) -> None:
    server, _ = served
    items, listed_at = _listing()
    killed = _killed_run()
    config = make_config(
        ami={"port": server.port, "secret": "s3cret", "reconnect_min_delay": 0.05},
        dispatch={"min_talk_seconds": 10, "wrapup_seconds": 5},
        leader={"instance": "lab-dialer"},
    )
    clock = ScaledClock(SPEED)
    dialer = build_dialer(config, clock=clock, redis_url=redis_url, spool=tmp_path / "s.jsonl")
    queue = dialer.queue
    # What the killed run left in Redis: both claimed, talking since the recorded DialEnd.
    for number in ("+79161230011", "+79161230021"):
        await queue.add_manual(number, "support", "lab", name="Lab")
    for callback_id in ("cb-1", "cb-2"):
        claim = await queue.claim(
            ["support"], claimer="lab-dialer", agent=killed[callback_id]["agent"]
        )
        assert claim.callback.id == callback_id
        await queue.renew(claim, stage=Stage.TALKING, agent=killed[callback_id]["agent"])
        began = clock.now() - killed[callback_id]["talk_before_kill"]
        await dialer.redis.hset(queue.keys.callback(callback_id), "stage_at", f"{began:.3f}")

    async def channels(session, message) -> None:
        session.write(
            server.list_response(
                "coreshowchannels",
                message.get("ActionID"),
                # The recorded items as Asterisk wrote them, but for the ActionID (ours).
                [[kv for kv in m.pairs() if kv[0] != "ActionID"] for m in items],
            )
        )

    server.on_action("CoreShowChannels", channels)
    await dialer.start()
    try:
        await until(lambda: {"cb-1", "cb-2"} <= set(dialer.dispatcher.inflight), timeout=10)
        hung_up_at = max(t for t, m in _frames(RESTARTED) if m.event == "Hangup" and t > listed_at)
        # Then what Asterisk sent after the listing, on its recorded schedule.
        loop = asyncio.get_running_loop()
        start = loop.time()
        for t, raw in [
            (r["t"], r["raw"])
            for r in _records(RESTARTED)
            if r["dir"] == "in" and r["t"] > listed_at and r["raw"].startswith("Event:")
        ]:
            delay = (t - listed_at) / SPEED - (loop.time() - start)
            if delay > 0:
                await asyncio.sleep(delay)
            await server.send_raw(raw.encode())

        async def settled() -> bool:
            states = [(await queue.get(i)).state for i in ("cb-1", "cb-2")]
            return states == [State.DONE, State.DONE]

        await until_async(settled, timeout=10)
        for callback_id in ("cb-1", "cb-2"):
            cb = await queue.get(callback_id)
            assert [(a.agent, a.outcome) for a in cb.attempt_log] == [
                (killed[callback_id]["agent"], "answered")
            ]
            # Counted from when the killed run saw the talk begin, not from the adoption: the
            # talk before the kill plus the recorded time from the listing to the hangup
            # (on the lab, with the restart's own seconds between: 25.5 s, the carrier's
            # CUSTOMER_TALK; adopt_after_kill.report.json).
            talked = killed[callback_id]["talk_before_kill"] + hung_up_at - listed_at
            assert abs(cb.attempt_log[0].talk_seconds - talked) < 1.5, talked
            events = [e.event for e in await queue.history(callback_id)]
            assert events[-2:] == ["adopted", "done"] and events.count("done") == 1
        assert server.actions_named("Originate") == []
    finally:
        await dialer.stop()
