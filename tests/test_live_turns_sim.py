"""Callbacks and live callers on the simulated PBX (app_queue's one-second recheck, its queue
events, QueueStatus with QueueEntry), with the whole dialer on one scaled clock: who gets a
freed agent, the live queue after a reconnect, and the guards under a storm."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from simpbx.ami import PbxAmi
from simpbx.clock import run_for
from simpbx.customers import PerNumber
from simpbx.ledger import Ledger
from simpbx.model import CallerScript, CustomerResponse, FixedAgent, PbxSpec
from simpbx.pbx import SimPbx

from callback_dialer.app import build_dialer
from callback_dialer.clock import ScaledClock
from callback_dialer.queue.models import Source, State

from .helpers.wait import until, until_async

# Slower than the other simulator tests: the race is about a second of PBX time, and at 50x
# a loaded machine's 20 ms of lag is already a simulated second.
SPEED = 20.0
GAVE_UP = ["+79165550100", "+79165550101", "+79165550102"]
LIVE = ["+79165550200", "+79165550201", "+79165550202", "+79165550203"]


class _Answers:
    """Every called customer answers after 2 s and talks 15 s."""

    def respond(self, number: str, now: float) -> CustomerResponse:
        return CustomerResponse("ANSWER", ring=2, talk=15)


def record_starts(dialer) -> list[tuple[float, str]]:
    """(when, agent, number) of every callback the dispatcher starts, on the dialer's clock."""
    starts: list[tuple[float, str, str]] = []
    start = dialer.dispatcher._start

    def recorded(claim, interface):
        starts.append((dialer.clock.now(), interface, claim.callback.number))
        start(claim, interface)

    dialer.dispatcher._start = recorded
    return starts


@pytest.fixture
async def sim(make_config, redis_url, tmp_path):
    made: list[Any] = []

    async def build(talk: float = 20.0, speed: float = SPEED, **dispatch: Any):
        clock = ScaledClock(speed)
        agents = tuple(
            dataclasses.replace(a, behaviour=FixedAgent(talk=talk)) for a in PbxSpec().agents
        )
        pbx = SimPbx(
            clock,
            PbxSpec(agents=agents),
            customers=PerNumber({}, rest=_Answers()),
        )
        ledger = Ledger()
        pbx.observers.append(ledger)
        ami = await PbxAmi.serve(pbx, secret="s3cret")
        config = make_config(
            ami={
                "port": ami.port,
                "secret": "s3cret",
                "reconnect_min_delay": dispatch.pop("reconnect_min_delay", 0.05),
                "reconnect_max_delay": dispatch.pop("reconnect_max_delay", 0.2),
            },
            dispatch={"wrapup_seconds": 3, "tick_seconds": 5, **dispatch},
            retry={"max_attempts": 3, "delays": ["10m"]},
        )
        dialer = build_dialer(
            config, clock=clock, redis_url=redis_url, spool=tmp_path / f"spool{len(made)}.jsonl"
        )
        await dialer.start()
        await until(lambda: dialer.ami.authenticated and len(dialer.pipeline.agents.agents) == 3)
        made.append((dialer, ami, pbx))
        return pbx, dialer, ledger, ami

    yield build
    for dialer, ami, pbx in made:
        await dialer.stop()
        await ami.stop()
        await pbx.close()


async def break_then_return(pbx, dialer, ledger) -> float:
    """Issue 12's scenario: everyone on a break; three callers give up in support (three
    callbacks); four callers then wait there; agents 102 and 103 come back. Returns when."""
    for agent in ("101", "102", "103"):
        pbx.scheduler.run(pbx.pause, agent, True, "break")
    for number in GAVE_UP:
        pbx.place_call(number, CallerScript(choice="2", patience=4))
        await run_for(pbx.clock, 1)
    await until_async(lambda: _count(dialer, State.PENDING, 3), timeout=10)
    for number in LIVE:
        pbx.place_call(number, CallerScript(choice="2"))
        await run_for(pbx.clock, 0.5)
    await until(lambda: dialer.pipeline.live.count("support") == 4, timeout=10)
    await run_for(pbx.clock, 5)
    back = pbx.clock.now()
    for agent in ("102", "103"):
        pbx.scheduler.run(pbx.pause, agent, False, "break")
    return back


async def _count(dialer, state: State, n: int) -> bool:
    return len([c for c in await dialer.queue.waiting(limit=50) if c.state is state]) == n


def live_connects(ledger) -> list[float]:
    return sorted(
        c.connected_at
        for c in ledger.inbound()
        if c.connected_at is not None and ("+" + c.number.lstrip("+")) in LIVE
    )


async def test_with_the_default_the_live_callers_get_the_returning_agents_first(sim) -> None:
    pbx, dialer, ledger, _ = await sim()
    starts = record_starts(dialer)
    back = await break_then_return(pbx, dialer, ledger)
    await until(lambda: len(live_connects(ledger)) >= 2, timeout=10)
    first_two = live_connects(ledger)[:2]
    # app_queue's recheck gives them the agents within its second (and a little for a loaded
    # machine); the dialer left both agents to the queue: no callback started before
    assert all(t - back <= 1.5 for t in first_two), (back, first_two)
    assert [t for t, _, _ in starts if t <= first_two[-1]] == []
    # every live caller is served before any callback, and then every callback is made
    await until(lambda: len(live_connects(ledger)) == 4, timeout=20)
    last_live = live_connects(ledger)[-1]
    await until(lambda: len({c.number for c in ledger.callbacks()}) == 3, timeout=30)
    assert min(t for t, _, _ in starts) > last_live
    assert pbx.scheduler.errors == 0 and dialer.pipeline.router.handler_errors == 0


async def test_with_a_strict_turn_the_older_callbacks_take_the_returning_agents(sim) -> None:
    """Handicap 0s: the callbacks were missed before the live callers joined, so the dialer
    never leaves an agent to them: each returning agent it finds free goes to a callback,
    the oldest first. (Whether it finds both free is a race with app_queue's one-second
    recheck that a loaded machine can lose; the decision itself is proven on the recording,
    test_live_queue.py.)"""
    pbx, dialer, ledger, _ = await sim(callback_handicap="0s", speed=5.0)
    starts = record_starts(dialer)
    back = await break_then_return(pbx, dialer, ledger)
    await until(lambda: len(starts) == 3, timeout=60)
    assert sum(dialer.metrics.left_to_live.values.values()) == 0
    assert [number for _, _, number in starts] == GAVE_UP  # oldest first
    # the first went out at once, unless app_queue's looks took both agents before the
    # dialer's pass (a lost race, not a decision)
    if len([t for t in live_connects(ledger) if t < starts[0][0]]) < 2:
        assert starts[0][0] - back < 1.0, (back, starts)


async def test_a_live_caller_outside_the_free_agents_queues_never_holds_them(sim) -> None:
    """A caller waits in support (102 and 103 on a break); agent 101 (sales only) is free
    and a new subscriber's callback is due: 101 calls back at once."""
    pbx, dialer, ledger, _ = await sim(callback_handicap="10d")
    for agent in ("101", "102", "103"):
        pbx.scheduler.run(pbx.pause, agent, True, "break")
    pbx.place_call("+79165550300", CallerScript(choice="2"))
    await until(lambda: dialer.pipeline.live.count("support") == 1, timeout=10)
    await dialer.queue.add_missed(
        number="+79161230011",
        category="new_connection",
        source=Source.ABANDON,
        missed_at=dialer.clock.now() - 5,
        call_id="test-new",
    )
    pbx.scheduler.run(pbx.pause, "101", False, "break")
    await until(lambda: len(ledger.callbacks()) == 1, timeout=10)
    [cb] = ledger.callbacks()
    assert cb.agent == "Local/101@agents/n"
    assert dialer.pipeline.live.count("support") == 1  # still waiting: not 101's queue


async def test_the_live_queue_is_right_after_a_reconnect_mid_wait(sim) -> None:
    """The link drops while callers wait; meanwhile one gives up and one joins unseen. After
    the reconnect the live queue is what Asterisk's QueueStatus says, and agents coming back
    go to the live callers, not to the callback of the one who gave up."""
    # the reconnect waits a real second: 20 s of the PBX's time
    pbx, dialer, ledger, ami = await sim(reconnect_min_delay=1, reconnect_max_delay=1)
    for agent in ("101", "102", "103"):
        pbx.scheduler.run(pbx.pause, agent, True, "break")
    pbx.place_call("+79165550400", CallerScript(choice="2", patience=20))
    pbx.place_call("+79165550401", CallerScript(choice="3"))
    pbx.place_call("+79165550402", CallerScript(choice="1"))
    await until(lambda: len(dialer.pipeline.live.callers) == 3, timeout=10)
    await until(lambda: pbx.clock.now() - _joined(dialer, "+79165550400") >= 12, timeout=10)
    ami.server.drop_all()
    await until(lambda: not dialer.ami.authenticated, timeout=5)
    pbx.place_call("+79165550403", CallerScript(choice="2"))
    # the first caller's patience runs out while nobody listens
    await until(lambda: _ended(ledger, "79165550400"), timeout=10)
    assert dialer.pipeline.live.count("support") == 2  # stale: the book has not heard
    await until(lambda: dialer.ami.authenticated and dialer.dispatcher.synced, timeout=10)
    book = {c.number: (c.queue, c.category) for c in dialer.pipeline.live.callers.values()}
    truth = {
        "+" + e.call.channel.caller_num.lstrip("+"): q.name
        for q in pbx.queues.values()
        for e in q.entries
    }
    assert {n: q for n, (q, _) in book.items()} == truth
    assert set(book) == {"+79165550401", "+79165550402", "+79165550403"}
    assert book["+79165550401"] == ("support", "billing")  # seen joining: the IVR's choice
    assert book["+79165550403"] == ("support", "support")  # unseen: the queue's category
    # (the one who gave up unseen is not called back: their fate is unknown to us.) A
    # support callback is due and 103 comes back: the live callers, joined before it was
    # missed, go first, the one who joined unseen too.
    starts = record_starts(dialer)
    await dialer.queue.add_missed(
        number="+79161230077",
        category="support",
        source=Source.ABANDON,
        missed_at=dialer.clock.now(),
        call_id="test-late",
    )
    pbx.scheduler.run(pbx.pause, "103", False, "break")
    await until(lambda: dialer.pipeline.live.count("support") == 1, timeout=10)
    assert starts == [] and ledger.callbacks() == ()


def _joined(dialer, number: str) -> float:
    for caller in dialer.pipeline.live.callers.values():
        if caller.number == number:
            return caller.joined_at
    return math.inf


def _ended(ledger, digits: str) -> bool:
    return any(c.number.endswith(digits) and c.ended_at is not None for c in ledger.inbound())


@pytest.mark.parametrize(
    "guard",
    [{"max_callback_share": 0.5}, {"reserve_agents": {"support": 1, "sales": 1}}],
    ids=["max_callback_share", "reserve_agents"],
)
async def test_the_guards_hold_under_a_storm(sim, guard) -> None:
    """Thirty old callbacks and a caller every three seconds for 90 s, callbacks first by
    the score (a negative handicap): at every callback the dialer starts, the guard holds."""
    pbx, dialer, _, _ = await sim(talk=8.0, callback_handicap="-1s", **guard)
    d = dialer.dispatcher
    seen: list[tuple[str, dict[str, tuple[int, int, int, int]]]] = []
    start = d._start

    def checked(claim, interface):
        counts = dialer.pipeline.agents.queue_counts()
        seen.append(
            (
                interface,
                {
                    q: (c.logged_in, c.free, c.on_callbacks, dialer.pipeline.live.count(q))
                    for q, c in counts.items()
                    if q in dialer.pipeline.agents.answering_queues(interface)
                },
            )
        )
        start(claim, interface)

    d._start = checked
    for i in range(30):
        await dialer.queue.add_missed(
            number=f"+7916123{i:04d}",
            category="support" if i % 2 else "new_connection",
            source=Source.ABANDON,
            missed_at=dialer.clock.now() - 3600 + i,
            call_id=f"storm-{i}",
        )
    for i in range(30):
        pbx.place_call(f"+7916555{i:04d}", CallerScript(choice="2" if i % 2 else "1", patience=40))
        await run_for(pbx.clock, 3)
    await run_for(pbx.clock, 40)
    assert len(seen) >= 3, "the storm made too few callbacks to judge the guard"
    for interface, queues in seen:
        for queue, (logged_in, free, on_callbacks, waiting) in queues.items():
            if "max_callback_share" in guard:
                # this one makes on_callbacks + 1: at most half the queue's agents
                assert on_callbacks + 1 <= math.floor(0.5 * logged_in), (interface, queue)
            else:
                # anyone waiting there: the queue keeps one free agent besides this one
                assert waiting == 0 or free - 1 >= 1, (interface, queue, free, waiting)
    assert pbx.scheduler.errors == 0 and dialer.pipeline.router.handler_errors == 0
