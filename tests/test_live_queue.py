"""The live queue and whose turn a freed agent is, on recorded Asterisk 22.9.0 traffic.

``live_after_break``: every agent on a break, three callers give up in ``support`` (three
callbacks), four wait there, agents 102 and 103 come back at t 21.00 and Asterisk rings them
for the live callers 0.22 s and 0.75 s later. ``live_reconnect_1``/``_2``: the link drops
while four callers wait; meanwhile one gives up and one joins unseen; the QueueStatus after
the new login tells who waits (tests/fixtures/README.md).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from callback_dialer.ami.capture import read_capture
from callback_dialer.clock import ManualClock
from callback_dialer.detect.pipeline import Pipeline, build_pipeline
from callback_dialer.dispatch.dispatcher import Dispatcher
from callback_dialer.dispatch.turns import HoldReason
from callback_dialer.queue.store import CallbackQueue

from .conftest import FIXTURES
from .helpers.captures import caller_channel

START = 1_796_126_000.0
BREAK = FIXTURES / "live_after_break.jsonl"
RECONNECT_1 = FIXTURES / "live_reconnect_1.jsonl"
RECONNECT_2 = FIXTURES / "live_reconnect_2.jsonl"
LIVE = ["+79165550200", "+79165550201", "+79165550202", "+79165550203"]
GAVE_UP = ["+79165550100", "+79165550101", "+79165550102"]


def first_t(path: Path, text: str) -> float:
    """``t`` of the first message from Asterisk containing ``text``."""
    return next(r.t for r in read_capture(path) if r.direction == "in" and text in r.raw)


def feed(pipeline: Pipeline, clock: ManualClock, path: Path, origin: float, **until: float):
    """Asterisk's side of a recording into the pipeline, the clock following ``t``; stops
    before the first message later than ``until["t"]``."""
    stream = pipeline.stream()
    last = until.get("t", float("inf"))
    for record in read_capture(path):
        if record.direction != "in":
            continue
        if record.t > last:
            break
        clock._now = max(clock._now, origin + record.t)
        stream.feed(record.raw.encode("utf-8"), origin + record.t)


def waiting(pipeline: Pipeline) -> dict[str, tuple[str, str, float]]:
    """Number -> (queue, category, joined_at) of everyone in the live queue."""
    return {
        c.number: (c.queue, c.category, round(c.joined_at, 3))
        for c in pipeline.live.callers.values()
    }


def joined(path: Path, number: str, origin: float) -> float:
    return round(
        origin
        + next(
            r.t
            for r in read_capture(path)
            if r.direction == "in"
            and r.raw.startswith("Event: QueueCallerJoin")
            and f"CallerIDNum: {number}\r" in r.raw
        ),
        3,
    )


async def test_joins_and_leaves_make_the_live_queue_with_the_ivr_category(config, queue) -> None:
    clock = ManualClock(START)
    pipeline = build_pipeline(config, clock, queue)
    unpause = first_t(BREAK, "Paused: 0")
    feed(pipeline, clock, BREAK, START, t=unpause - 0.5)
    # The three who gave up are gone; the four still holding are there, caller 02 with the
    # IVR's billing (CALLBACK_CATEGORY on QueueCallerJoin), the others support.
    assert waiting(pipeline) == {
        n: ("support", "billing" if n.endswith("202") else "support", joined(BREAK, n, START))
        for n in LIVE
    }
    view = pipeline.live.views()[0]
    assert (view.queue, view.waiting) == ("support", 4)
    assert view.longest_wait == pytest.approx(clock.now() - joined(BREAK, LIVE[0], START), abs=0.01)
    # Asterisk gives the agents to the first two, then to the other two: the book empties.
    feed(pipeline, clock, BREAK, START)
    assert waiting(pipeline) == {}


async def test_queue_status_alone_rebuilds_the_live_queue(config, queue) -> None:
    """A book that saw none of the joins (a dialer started mid-wait) learns them from the
    QueueEntry items: joined_at from Wait, the category from the queue
    (QueueEntry has no channel variables)."""
    clock = ManualClock(START)
    pipeline = build_pipeline(config, clock, queue)
    status_t = first_t(BREAK, "Event: QueueEntry")
    stream = pipeline.stream()
    pipeline.live.begin_resync()
    entries = 0
    for record in read_capture(BREAK):
        if record.direction != "in" or record.t < status_t:
            continue
        clock._now = START + record.t
        stream.feed(record.raw.encode(), START + record.t)
        entries += record.raw.startswith("Event: QueueEntry")
        if "QueueStatusComplete" in record.raw:
            break
    assert entries == 4
    book = waiting(pipeline)
    assert sorted(book) == LIVE
    for number in LIVE:
        queue_name, category, at = book[number]
        assert (queue_name, category) == ("support", "support")
        # Wait is time(NULL) - the join's time(NULL), whole seconds: within one of the join
        assert abs(at - joined(BREAK, number, START)) < 1.0


async def test_a_reconnect_mid_wait_leaves_the_live_queue_as_asterisk_has_it(config, queue) -> None:
    clock = ManualClock(START)
    pipeline = build_pipeline(config, clock, queue)
    feed(pipeline, clock, RECONNECT_1, START)
    before = waiting(pipeline)
    assert {n: (q, c) for n, (q, c, _) in before.items()} == {
        "+79165550300": ("support", "support"),
        "+79165550301": ("support", "billing"),
        "+79165550302": ("sales", "new_connection"),
        "+79165550303": ("support", "support"),
    }
    # The link drops. While it is down +..300 gives up and +..304 joins support.
    gap = 4.2
    second = START + max(r.t for r in read_capture(RECONNECT_1)) + gap
    pipeline.live.begin_resync()  # what resync_agents does before its QueueStatus
    feed(pipeline, clock, RECONNECT_2, second, t=first_t(RECONNECT_2, "QueueStatusComplete"))
    after = waiting(pipeline)
    entry = next(
        r
        for r in read_capture(RECONNECT_2)
        if r.raw.startswith("Event: QueueEntry") and "CallerIDNum: +79165550304\r" in r.raw
    )
    wait = int(entry.raw.split("Wait: ")[1].split("\r")[0])
    assert sorted(after) == ["+79165550301", "+79165550302", "+79165550303", "+79165550304"]
    # Those seen joining keep their own join time and the IVR's category; the unseen one
    # has Asterisk's Wait and the queue's category.
    for number in ("+79165550301", "+79165550302", "+79165550303"):
        assert after[number] == before[number]
    assert after["+79165550304"] == ("support", "support", round(second + entry.t - wait, 3))
    feed(pipeline, clock, RECONNECT_2, second)
    assert waiting(pipeline) == {}


# ---------------------------------------------------------------- the dispatcher's decision


class _Ami:
    """The AMI side the dispatcher asks before deciding: logged in."""

    authenticated = True
    last_error = ""


async def decide_at_unpause(make_config, redis_client, **dispatch: Any):
    """Replay live_after_break into a real queue (the three callbacks come from the
    recording) up to the unpause, then run one dispatch pass: which agents get a callback,
    and who is left to Asterisk."""
    config = make_config(dispatch=dispatch)
    clock = ManualClock(START)
    queue = CallbackQueue(redis_client, config, clock)
    pipeline = build_pipeline(config, clock, queue)
    sink = asyncio.create_task(pipeline.sink.run())
    try:
        unpause = next(
            r.t
            for r in read_capture(BREAK)
            if r.raw.startswith("Event: QueueMemberPause")
            and "Paused: 0" in r.raw
            and "Interface: Local/103@" in r.raw
        )
        feed(pipeline, clock, BREAK, START, t=unpause)
        await pipeline.sink.drain(timeout=10)
    finally:
        sink.cancel()
        await asyncio.gather(sink, return_exceptions=True)
    waiting_cbs = await queue.waiting(limit=10)
    assert sorted(c.number for c in waiting_cbs) == GAVE_UP
    dispatcher = Dispatcher(
        config, clock, queue, pipeline.agents, pipeline.tracker, _Ami(), live=pipeline.live
    )
    dispatcher.synced = True
    started: list[tuple[str, str]] = []
    dispatcher._start = lambda claim, interface: started.append(  # no Originate: the decision
        (interface, claim.callback.number)
    )
    await dispatcher.dispatch_pass()
    return started, dispatcher, queue


async def test_agents_back_from_a_break_go_to_the_live_callers_with_the_default(
    make_config, redis_client
) -> None:
    started, dispatcher, queue = await decide_at_unpause(make_config, redis_client)
    assert started == []
    holds = dispatcher.holding_off()
    assert [(h.agent, h.queue, h.reason) for h in holds] == [
        ("Local/102@agents/n", "support", HoldReason.LIVE_CALLER_AHEAD),
        ("Local/103@agents/n", "support", HoldReason.LIVE_CALLER_AHEAD),
    ]
    assert all(h.waiting == 4 for h in holds)
    assert dispatcher.metrics.left_to_live.get("support", "live_caller_ahead") == 2
    # nothing was touched: the three callbacks still wait, untouched
    assert len(await queue.waiting(limit=10)) == 3


async def test_with_a_strict_turn_the_older_callbacks_go_first(make_config, redis_client) -> None:
    """Handicap 0s: the callbacks' first calls (t 1-3) came before the live callers joined
    (t 10-12), so both agents take a callback, oldest first."""
    started, dispatcher, _ = await decide_at_unpause(
        make_config, redis_client, callback_handicap="0s"
    )
    assert [number for _, number in started] == GAVE_UP[:2]
    assert dispatcher.holding_off() == []


async def test_a_handicap_larger_than_the_gap_leaves_them_to_the_live_callers(
    make_config, redis_client
) -> None:
    # A callback's first_missed is when the call ended (the abandon); a live caller's score
    # counts from their QueueCallerJoin.
    last_missed = caller_channel(BREAK, GAVE_UP[-1]).hung_up
    assert last_missed is not None
    gap = joined(BREAK, LIVE[0], 0.0) - last_missed  # the newest callback's head start
    started, _, _ = await decide_at_unpause(
        make_config, redis_client, callback_handicap=f"{gap + 2:.0f}s"
    )
    assert started == []
    started, _, _ = await decide_at_unpause(
        make_config, redis_client, callback_handicap=f"{max(gap - 4, 0):.0f}s"
    )
    assert len(started) == 2


async def test_a_negative_handicap_is_the_old_behaviour(make_config, redis_client) -> None:
    started, _, _ = await decide_at_unpause(make_config, redis_client, callback_handicap="-1s")
    assert [number for _, number in started] == GAVE_UP[:2]


async def test_reserve_agents_keeps_one_for_the_live_callers(make_config, redis_client) -> None:
    started, dispatcher, _ = await decide_at_unpause(
        make_config, redis_client, callback_handicap="-1s", reserve_agents={"support": 1}
    )
    assert len(started) == 1
    [hold] = dispatcher.holding_off()
    assert (hold.reason, hold.queue) == (HoldReason.RESERVE_AGENTS, "support")


async def test_max_callback_share_caps_the_agents_on_callbacks(make_config, redis_client) -> None:
    # support has two logged-in agents (102, 103) and sales two (101, 102): half of two is one
    started, dispatcher, _ = await decide_at_unpause(
        make_config, redis_client, callback_handicap="-1s", max_callback_share=0.5
    )
    assert len(started) == 1
    [hold] = dispatcher.holding_off()
    assert hold.reason is HoldReason.MAX_CALLBACK_SHARE


# ---------------------------------------------------------------- the bound, in the claim


async def test_the_claim_takes_nothing_that_does_not_score_below_the_bound(queue, clock) -> None:
    from callback_dialer.queue.models import Claim, HeldBack, Source

    made = await queue.add_missed(
        number="+79161230001",
        category="support",
        source=Source.ABANDON,
        missed_at=clock.now() - 60,
        call_id="c1",
    )
    score = queue.score_for(clock.now() - 60, "support")
    held = await queue.claim(["support"], claimer="t", agent="A", below=score)
    assert held == HeldBack(score=pytest.approx(score))
    assert (await queue.get(made.id)).state.value == "pending"
    claim = await queue.claim(["support"], claimer="t", agent="A", below=score + 0.5)
    assert isinstance(claim, Claim) and claim.callback.id == made.id
