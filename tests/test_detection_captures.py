"""Replaying real Asterisk 22 traffic through the live code path: what the dialer concludes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from callback_dialer.ami.capture import CaptureSource
from callback_dialer.clock import ManualClock
from callback_dialer.detect.facts import MissedCall, NotQueued, Served
from callback_dialer.detect.pipeline import build_pipeline
from callback_dialer.detect.replay import replay_capture
from callback_dialer.detect.tracker import CallSnapshot
from callback_dialer.queue.models import Source, State
from callback_dialer.queue.store import CallbackQueue

from .conftest import FIXTURES, REPO
from .helpers.captures import caller_channel, load, replace_in_raw, rewrite

pytestmark = pytest.mark.captures

EXPECTED_OPEN = {
    "abandon_in_queue": [("+79161234561", "new_connection", "abandon")],
    "hangup_in_ivr": [("+74951234563", "other", "ivr_hangup")],
    "keypress_callback": [("+79031234564", "new_connection", "explicit")],
    "queue_timeout": [("+79261234567", "billing", "timeout")],
    "answered_by_agent": [],
    "agent_states": [],
    "callbacks": [],
    "busy_hour": [
        ("+79165550003", "other", "ivr_hangup"),
        ("+79165550009", "new_connection", "abandon"),
        ("+79165550010", "new_connection", "abandon"),
        ("+79165550013", "support", "abandon"),
        ("+79165550014", "support", "abandon"),
        ("+79165550018", "support", "abandon"),
        ("+79165550019", "billing", "abandon"),
        ("+79165550021", "support", "abandon"),
        ("+79165550022", "other", "abandon"),
    ],
}


@pytest.mark.parametrize("name", sorted(EXPECTED_OPEN))
async def test_replay_leaves_open_exactly_the_lost_callers(
    name, captures, config, redis_client
) -> None:
    rows = await replay_capture(config, captures / f"{name}.jsonl", redis_client)
    found = sorted((r["number"], r["category"], r["source"]) for r in rows)
    assert found == sorted(EXPECTED_OPEN[name])
    assert all(r["missed_count"] == 1 for r in rows)


async def facts_of(path: Path, config, queue, start: float = 1_795_345_800.0, skip_events: int = 0):
    """Every fact the tracker concluded, in order, with times relative to the start."""
    clock = ManualClock(start)
    pipeline = build_pipeline(config, clock, queue)
    seen = []
    put = pipeline.sink.put

    def record(fact):
        seen.append(fact)
        put(fact)

    pipeline.tracker.emit = record
    source = CaptureSource(path, pipeline.stream(), clock, start=start, skip_events=skip_events)
    await source.run()
    return seen, pipeline


def rel(fact, start: float = 1_795_345_800.0):
    if isinstance(fact, MissedCall):
        return (
            "missed",
            fact.call_id,
            fact.number,
            fact.name,
            fact.category,
            fact.source.value,
            round(fact.ended_at - fact.started_at, 2),
            fact.queue,
        )
    if isinstance(fact, Served):
        return (
            "served",
            fact.how,
            fact.number,
            fact.call_id,
            round(fact.at - start, 2),
            fact.agent,
        )
    return ("not_queued", fact.call_id, fact.reason)


async def test_abandon_in_queue_whole_outcome(captures, config, queue) -> None:
    path = captures / "abandon_in_queue.jsonl"
    facts, _ = await facts_of(path, config, queue)
    assert [rel(f) for f in facts] == [
        (
            "missed",
            caller_channel(path, "+79161234561").uniqueid,
            "+79161234561",
            "Ivan Petrov",
            "new_connection",
            "abandon",
            9.46,
            "sales",
        ),
    ]


async def test_answered_by_agent_is_served_not_missed(captures, config, queue) -> None:
    path = captures / "answered_by_agent.jsonl"
    facts, pipeline = await facts_of(path, config, queue)
    call_id = caller_channel(path, "89161234562").uniqueid
    assert [rel(f) for f in facts] == [
        ("served", "served_inbound", "+79161234562", call_id, 1.21, "Local/102@agents/n"),
    ]
    assert pipeline.tracker.snapshot() == ()


async def test_queue_timeout_abandon_is_not_the_end_of_the_call(captures, config, queue) -> None:
    path = captures / "queue_timeout.jsonl"
    caller = caller_channel(path, "+79261234567")
    clock = ManualClock(1_795_345_800.0)
    pipeline = build_pipeline(config, clock, queue)
    facts: list = []
    pipeline.tracker.emit = facts.append
    stream = pipeline.stream()
    # Feed up to and including QueueCallerAbandon: the caller is still on the line.
    records = [r for r in load(path) if r["dir"] == "in"]
    cut = next(i for i, r in enumerate(records) if "QueueCallerAbandon" in r["raw"])
    for r in records[: cut + 1]:
        stream.feed(r["raw"].encode(), 1_795_345_800.0 + r["t"])
    assert facts == []
    assert pipeline.tracker.snapshot() == (
        CallSnapshot(
            call_id=caller.uniqueid,
            channel=caller.name,
            number="+79261234567",
            category="billing",
            queues=("support",),
            in_queue=True,
            connected=False,
            callback_requested="",
            started_at=1_795_345_800.0 + caller.created,
        ),
    )
    for r in records[cut + 1 :]:
        stream.feed(r["raw"].encode(), 1_795_345_800.0 + r["t"])
    assert [rel(f) for f in facts] == [
        ("missed", caller.uniqueid, "+79261234567", "", "billing", "timeout", 7.21, "support"),
    ]


async def test_busy_hour_whole_ordered_outcome(captures, config, queue) -> None:
    facts, pipeline = await facts_of(captures / "busy_hour.jsonl", config, queue)
    missed = [(f.number, f.category, f.source.value) for f in facts if isinstance(f, MissedCall)]
    served = [f.number for f in facts if isinstance(f, Served)]
    assert missed == [
        ("+79165550003", "other", "ivr_hangup"),
        ("+79165550009", "new_connection", "abandon"),
        ("+79165550010", "new_connection", "abandon"),
        ("+79165550013", "support", "abandon"),
        ("+79165550014", "support", "abandon"),
        ("+79165550021", "support", "abandon"),
        ("+79165550019", "billing", "abandon"),
        ("+79165550018", "support", "abandon"),
        ("+79165550022", "other", "abandon"),
    ]
    assert sorted(served) == sorted(
        f"+7916555{n:04d}" for n in (0, 1, 2, 4, 5, 6, 7, 8, 11, 12, 15, 16, 17, 20, 23)
    )
    assert [f for f in facts if isinstance(f, NotQueued)] == []
    assert pipeline.tracker.snapshot() == ()
    assert pipeline.router.handler_errors == 0


async def test_callbacks_capture_our_own_calls_are_never_inbound(captures, config, queue) -> None:
    facts, pipeline = await facts_of(captures / "callbacks.jsonl", config, queue)
    assert facts == []
    assert pipeline.tracker.snapshot() == ()


async def test_customer_first_calls_are_ours_never_inbound(config, queue) -> None:
    # Recorded only in the repo's fixtures: the customer's trunk channel rings in ivr-in like
    # an inbound call, but carries our CALLBACK_ID, and so does every other channel.
    facts, pipeline = await facts_of(FIXTURES / "customer_first.jsonl", config, queue)
    assert facts == []
    assert pipeline.tracker.snapshot() == ()
    assert pipeline.router.handler_errors == 0


async def test_a_caller_who_got_through_closes_their_waiting_callback(
    captures,
    config,
    queue,
) -> None:
    # 8 916 123-45-62 called before and is waiting for a callback; now an agent answers them.
    waiting = await queue.add_missed(
        number="+79161234562",
        category="support",
        source=Source.ABANDON,
        missed_at=queue.clock.now() - 600,
    )
    _, pipeline = await facts_of(captures / "answered_by_agent.jsonl", config, queue)
    task = asyncio.create_task(pipeline.sink.run())
    assert await pipeline.sink.drain(5)
    task.cancel()
    cb = await queue.get(waiting.id)
    assert (cb.state, cb.reason) == (State.DONE, "served_inbound")


async def test_a_repeat_caller_merges_into_one_callback(captures, config, redis_client) -> None:
    rows = await replay_capture(config, captures / "abandon_in_queue.jsonl", redis_client)
    assert len(rows) == 1
    # The same subscriber calling twice (two recorded calls with distinct call ids).
    clock = ManualClock(1_795_345_800.0)
    queue = CallbackQueue(redis_client, config, clock)
    pipeline = build_pipeline(config, clock, queue)
    task = asyncio.create_task(pipeline.sink.run())
    for start in (1_795_345_800.0, 1_795_346_800.0):
        await CaptureSource(
            captures / "abandon_in_queue.jsonl", pipeline.stream(), clock, start=start
        ).run()
        # A second recording of the same call would be a duplicate: give it a new call id.
        pipeline.tracker._ended.clear()
    await pipeline.sink.drain(5)
    task.cancel()
    waiting = await queue.waiting()
    assert [(c.number, c.missed_count) for c in waiting] == [("+79161234561", 1)]


async def test_unknown_category_maps_to_other_with_one_warning(
    captures, config, queue, tmp_path
) -> None:
    path = rewrite(
        captures / "abandon_in_queue.jsonl",
        tmp_path / "vip.jsonl",
        replace_in_raw("CALLBACK_CATEGORY=new_connection", "CALLBACK_CATEGORY=vip"),
    )
    facts, pipeline = await facts_of(path, config, queue)
    assert [(f.category, f.source) for f in facts] == [("other", Source.ABANDON)]
    assert pipeline.tracker.categories.unknown_seen == {"vip": 1}


async def test_without_the_channel_variable_the_queue_decides(
    captures, config, queue, tmp_path
) -> None:
    def strip(record: dict) -> dict:
        raw = record["raw"]
        for value in ("new_connection", "unknown"):
            raw = raw.replace(
                f"ChanVariable: CALLBACK_CATEGORY={value}", "ChanVariable: CALLBACK_CATEGORY="
            )
            raw = raw.replace(f"Value: {value}", "Value: ")
        record["raw"] = raw
        return record

    path = rewrite(captures / "abandon_in_queue.jsonl", tmp_path / "novar.jsonl", strip)
    facts, _ = await facts_of(path, config, queue)
    assert [(f.category, f.queue) for f in facts] == [("new_connection", "sales")]


@pytest.mark.parametrize(
    ("caller_id", "reason"),
    [
        ("<unknown>", "anonymous"),
        ("anonymous", "anonymous"),
        ("102", "internal"),
        ("123456", "too_short"),
        ("+7916;Action", "not_a_number"),
        ("88005553535", "blocked"),
    ],
)
async def test_unusable_caller_ids_are_counted_never_queued(
    captures, make_config, redis_client, tmp_path, caller_id, reason
) -> None:
    config = make_config(phone={"blocklist": ["+7800*"]})
    queue = CallbackQueue(redis_client, config, ManualClock())
    recorded = captures / "abandon_in_queue.jsonl"
    caller = caller_channel(recorded, "+79161234561")
    assert caller.hung_up is not None
    path = rewrite(recorded, tmp_path / "anon.jsonl", replace_in_raw("+79161234561", caller_id))
    facts, _ = await facts_of(path, config, queue)
    # Counted when the call ended: at the Hangup, to the recording's 0.1 ms.
    assert facts == [
        NotQueued(
            call_id=caller.uniqueid,
            reason=reason,
            at=pytest.approx(1_795_345_800.0 + caller.hung_up, abs=1e-4),
        )
    ]
    assert await queue.waiting() == []


async def test_a_call_shorter_than_min_call_seconds_is_not_queued(
    captures, make_config, queue, tmp_path
) -> None:
    config = make_config(detection={"min_call_seconds": 5})
    path = captures / "hangup_in_ivr.jsonl"
    facts, _ = await facts_of(path, config, queue)
    call_id = caller_channel(path, "84951234563").uniqueid
    assert [rel(f) for f in facts] == [("not_queued", call_id, "too_short")]


@pytest.mark.parametrize("name", sorted(EXPECTED_OPEN))
async def test_attaching_mid_call_never_crashes(name, captures, config, queue) -> None:
    """Drop the first N events, for every N: the dialer attached in the middle of things."""
    events = sum(
        1
        for r in load(captures / f"{name}.jsonl")
        if r["dir"] == "in" and r["raw"].startswith("Event:")
    )
    for skip in range(events + 1):
        facts, pipeline = await facts_of(
            captures / f"{name}.jsonl", config, queue, skip_events=skip
        )
        assert pipeline.router.handler_errors == 0, f"{name} with {skip} events dropped"
        for fact in facts:
            if isinstance(fact, MissedCall):
                assert fact.number.startswith("+")


def test_replay_command_prints_one_json_line_per_open_callback(captures, redis_url) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "callback_dialer",
            "replay",
            str(captures / "busy_hour.jsonl"),
            "--redis-url",
            redis_url,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted((r["number"], r["category"]) for r in rows) == sorted(
        (n, c) for n, c, _ in EXPECTED_OPEN["busy_hour"]
    )
    assert {tuple(sorted(r)) for r in rows} == {("category", "missed_count", "number", "source")}


def test_replay_command_reports_a_damaged_capture(tmp_path, redis_url) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"t": 0, "dir": "in", "raw": "x"}\nnot json\n')
    done = subprocess.run(
        [sys.executable, "-m", "callback_dialer", "replay", str(bad), "--redis-url", redis_url],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert f"{bad}:2: not a capture record" in done.stderr
    assert "Traceback" not in done.stderr


async def test_an_agents_own_answered_call_to_the_customer_closes_the_callback(
    captures,
    config,
    queue,
    tmp_path,
) -> None:
    # The recorded cb-1 call is an agent-side channel dialling 79161230001 over the trunk,
    # answered. Without our CALLBACK_ID it is what an agent dialling the customer by hand
    # looks like.
    path = rewrite(
        captures / "callbacks.jsonl",
        tmp_path / "by_hand.jsonl",
        replace_in_raw("CALLBACK_ID=cb-1\r\n", "CALLBACK_ID=\r\n"),
    )
    waiting = await queue.add_missed(
        number="+79161230001",
        category="support",
        source=Source.ABANDON,
        missed_at=queue.clock.now() - 900,
    )
    facts, pipeline = await facts_of(path, config, queue)
    assert [(f.how, f.number) for f in facts if isinstance(f, Served)] == [
        ("served_outbound", "+79161230001")
    ]
    task = asyncio.create_task(pipeline.sink.run())
    assert await pipeline.sink.drain(5)
    task.cancel()
    cb = await queue.get(waiting.id)
    assert (cb.state, cb.reason) == (State.DONE, "served_outbound")
