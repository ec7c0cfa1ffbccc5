"""The callback estimate: callbacks ahead, callers waiting live, agents serving the category,
recent handle times, calling hours; and the SMS promising what the IVR promises."""

from __future__ import annotations

import pytest

from callback_dialer.ami.frames import AmiMessage
from callback_dialer.app import build_dialer
from callback_dialer.clock import ManualClock
from callback_dialer.detect.agents import AgentBook, AgentView
from callback_dialer.detect.tracker import CallTracker
from callback_dialer.dispatch.estimate import (
    DEFAULT_HANDLE_SECONDS,
    Estimator,
    HandleTimes,
    promise_minutes,
)
from callback_dialer.queue.models import Callback, Source, State

H = DEFAULT_HANDLE_SECONDS


def member(book: AgentBook, ext: str, queue: str = "support", **fields: str) -> None:
    base = {
        "Event": "QueueMember",
        "Queue": queue,
        "Location": f"Local/{ext}@agents/n",
        "Name": ext,
        "Status": "1",
        "Paused": "0",
        "InCall": "0",
    }
    book.on_member(AmiMessage({**base, **fields}))


def busy(book: AgentBook, ext: str, queue: str = "support") -> None:
    member(book, ext, queue, Status="2", InCall="1")


def caller_waiting(tracker: CallTracker, uid: str, queue: str = "support") -> None:
    fields = {
        "Uniqueid": uid,
        "Linkedid": uid,
        "Channel": f"IAX2/carrier-{uid}",
        "Context": "ivr-in",
        "CallerIDNum": "79160000000",
    }
    tracker.on_channel(AmiMessage({**fields, "Event": "Newchannel"}))
    tracker.on_queue_join(AmiMessage({**fields, "Event": "QueueCallerJoin", "Queue": queue}))


@pytest.fixture
def rig(config):
    clock = ManualClock(1_796_000_000.0)
    book = AgentBook(config, clock)
    tracker = CallTracker(config, lambda fact: None)
    estimator = Estimator(config, clock, None, book, tracker)  # type: ignore[arg-type]
    return clock, book, tracker, estimator


def view(state: str, ext: str = "102") -> AgentView:
    return AgentView(f"Local/{ext}@agents/n", ext, state, "", ("support",), ("support",), 0.0)


async def test_handle_times_are_busy_periods_that_included_a_talk() -> None:
    clock = ManualClock(0.0)
    times = HandleTimes(clock, min_samples=2)
    assert times.typical() == H  # nothing seen yet
    for talk in (120.0, 200.0):
        times.observe(view("ringing"))
        await clock.advance(5)
        times.observe(view("talking"))
        await clock.advance(talk)
        times.observe(view("wrapup"))
        await clock.advance(15)
        times.observe(view("free"))
    # A ring that was never answered is no handle time.
    times.observe(view("ringing"))
    await clock.advance(15)
    times.observe(view("free"))
    assert times.typical() == pytest.approx((140 + 220) / 2)
    await clock.advance(3 * 3600)  # too old to say anything about now
    assert times.typical() == H


def test_free_agents_start_at_once_and_busy_ones_free_one_after_another(rig) -> None:
    _, book, _, estimator = rig
    member(book, "102")
    member(book, "103")
    assert estimator.for_new("support").seconds == 0
    busy(book, "102")
    busy(book, "103")
    # Both busy: the first frees after about a third of a handle time.
    assert estimator.for_new("support").seconds == pytest.approx(H / 3)
    assert estimator.queue_wait("support") == pytest.approx(H / 3)


def test_callbacks_ahead_and_callers_waiting_live_come_first(rig, config) -> None:
    clock, book, tracker, estimator = rig
    busy(book, "102")
    busy(book, "103")

    def waiting(i: int, category: str, age: float) -> Callback:
        t = clock.now() - age
        return Callback(
            id=f"cb-{i}",
            number=f"+7916000000{i}",
            category=category,
            source=Source.ABANDON,
            state=State.PENDING,
            reason="",
            first_missed=t,
            last_missed=t,
            missed_count=1,
            attempts=0,
            score=t,
            created_at=t,
            updated_at=t,
        )

    estimator.set_waiting([waiting(1, "support", 300), waiting(2, "billing", 200)])
    est = estimator.for_new("support")
    assert (est.ahead, est.live, est.agents, est.free) == (2, 0, 2, 0)
    assert est.seconds == pytest.approx(H / 3 + 2 * H / 2)
    caller_waiting(tracker, "1796000000.1")
    est = estimator.for_new("support")
    assert est.live == 1 and est.seconds == pytest.approx(H / 3 + 3 * H / 2)
    # A caller waiting in a queue nobody serving support is in does not count.
    caller_waiting(tracker, "1796000000.2", queue="sales")
    assert estimator.for_new("support").live == 1
    # The caller asking is not ahead of themselves.
    assert estimator.for_new("support", call_id="1796000000.1").live == 0


def test_paused_agents_do_not_serve_and_nobody_at_all_promises_an_hour(rig) -> None:
    _, book, _, estimator = rig
    member(book, "102", Paused="1")
    est = estimator.for_new("support")
    assert est.agents == 0 and est.minutes == 60
    assert estimator.queue_wait("support") == float("inf")


def test_outside_calling_hours_the_wait_until_the_opening_is_added(make_config) -> None:
    config = make_config(hours={"timezone": "UTC", "weekly": {"tue": ["09:00-18:00"]}})
    clock = ManualClock(1_796_112_000.0)  # Tuesday 2026-12-01 08:00 UTC
    book = AgentBook(config, clock)
    member(book, "102")
    tracker = CallTracker(config, lambda fact: None)
    estimator = Estimator(config, clock, None, book, tracker)  # type: ignore[arg-type]
    caller_waiting(tracker, "1.1")
    est = estimator.for_new("support")
    assert est.closed_for == pytest.approx(3600)
    assert est.live == 1 and est.seconds == pytest.approx(3600)  # the live caller is gone by then


def test_promises_are_round_and_never_under_five_minutes() -> None:
    assert [promise_minutes(s) for s in (0, 60, 300, 301, 1790)] == [5, 5, 5, 10, 30]


async def test_the_sms_promises_the_estimate_the_ivr_uses(config, redis_url, tmp_path) -> None:
    dialer = build_dialer(config, redis_url=redis_url, spool=tmp_path / "s.jsonl", jobs=True)
    try:
        member(dialer.pipeline.agents, "102")
        busy(dialer.pipeline.agents, "103")
        for i in range(4):
            await dialer.queue.add_missed(
                number=f"+7916000001{i}",
                category="support",
                source=Source.ABANDON,
                missed_at=dialer.clock.now() - 100 + i,
            )
        await dialer.estimator.refresh()
        last = (await dialer.queue.waiting())[-1]
        assert dialer.jobs_bridge is not None and dialer.jobs_bridge.estimate_minutes is not None
        sms = await dialer.jobs_bridge.estimate_minutes(last)
        assert sms == dialer.estimator.for_callback(last).minutes == 10  # 3 ahead: 100 + 300 s
    finally:
        await dialer.redis.aclose()
