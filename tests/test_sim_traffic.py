"""Traffic profiles and simulated days: the profile file, the seeded plan, and a whole day
played on the simulated PBX (without a dialer) on a ManualClock."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import itertools
import math
import statistics
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from simpbx.clock import run_for
from simpbx.ledger import number_key
from simpbx.model import CallerScript
from simpbx.pbx import SimPbx
from simpbx.profile import (
    ProfileError,
    TrafficProfile,
    load_profile,
    parse_profile,
)
from simpbx.profile import parse_duration as profile_duration
from simpbx.simulation import Simulation
from simpbx.traffic import DayPlan, TrafficRunner, pbx_spec, plan_day

from callback_dialer.ami.frames import FrameDecoder
from callback_dialer.clock import ManualClock
from callback_dialer.config import parse_duration as config_duration
from callback_dialer.detect.replay import replay_capture

from .conftest import REPO

TZ = ZoneInfo("Europe/Moscow")
MIDNIGHT = dt.datetime(2026, 11, 24, tzinfo=TZ).timestamp()


def test_the_shipped_profile_is_the_documented_defaults() -> None:
    assert load_profile(REPO / "config" / "traffic.toml") == TrafficProfile()


@pytest.mark.parametrize(
    ("data", "line"),
    [
        ({"calls": {"per_dya": 3}}, "calls.per_dya: unknown key"),
        ({"calls": {"hourly": [1, 2]}}, "calls.hourly: needs 24 values (hours 0..23), got 2"),
        ({"agents": {"shift": "21:00-09:00"}}, "agents.shift: '21:00-09:00' is not a range"),
        ({"intent_categories": {"support": "sales"}}, "intent_categories.support: "),
        (
            {"patience": {"bands": [{"share": 1, "min": "2m", "max": "1m"}]}},
            "patience.bands[0]: max must not be below min",
        ),
        ({"redial": {"after": {"min": "soon", "max": 3}}}, "redial.after.min: expected a number"),
        ({"timezone": "Mars/Olympus"}, "timezone: 'Mars/Olympus' is not an IANA time zone"),
        ({"agents": {"count": "three"}}, "agents.count: "),
    ],
)
def test_a_wrong_profile_key_is_named_on_one_line(data, line) -> None:
    with pytest.raises(ProfileError) as caught:
        parse_profile(data, "traffic.toml")
    assert len(caught.value.problems) == 1
    assert str(caught.value).startswith("traffic.toml: " + line)


DURATIONS = [300, 2.5, "300", " 90s ", "15m", "1h30m", "2d", "500ms", "1H", "0", "1.5m"]
BAD_DURATIONS = [-1, True, "soon", "", "5 minutes", "1h 30", "m5", None, [60]]


@pytest.mark.parametrize("value", DURATIONS + BAD_DURATIONS)
def test_a_profile_takes_durations_as_the_dialers_config_does(value) -> None:
    # The simulator parses its own durations; a profile and a dialer config, often edited
    # side by side, must accept the same spellings and refuse the rest in the same words.
    def outcome(parse):
        try:
            return parse(value)
        except ValueError as exc:
            return str(exc)

    ours = outcome(profile_duration)
    assert ours == outcome(config_duration)
    assert isinstance(ours, float) == (value in DURATIONS)


def test_a_missing_profile_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="no such file"):
        load_profile(tmp_path / "nope.toml")


# --------------------------------------------------------------------------- the plan


def test_the_same_seed_plans_the_same_day_and_another_seed_another() -> None:
    profile = TrafficProfile()
    assert plan_day(profile, MIDNIGHT, seed=5) == plan_day(profile, MIDNIGHT, seed=5)
    assert plan_day(profile, MIDNIGHT, seed=5) != plan_day(profile, MIDNIGHT, seed=6)


@pytest.fixture(scope="module")
def month() -> list[DayPlan]:
    profile = TrafficProfile()
    return [plan_day(profile, MIDNIGHT + day * 86400, seed=100 + day) for day in range(30)]


def test_planned_days_have_the_profiles_number_of_callers(month) -> None:
    per_day = [len(plan.calls) for plan in month]
    assert statistics.mean(per_day) == pytest.approx(155, rel=0.05)
    # Days differ as Poisson days do (not a fixed count every day).
    assert 0.5 * math.sqrt(155) < statistics.stdev(per_day) < 2 * math.sqrt(155)


def test_planned_callers_want_what_the_classifier_counted(month) -> None:
    profile = TrafficProfile()
    subs = [s for plan in month for s in plan.subscribers]
    external = [s for s in subs if s.kind != "internal"]
    counts = collections.Counter(s.intent for s in external)
    for intent, share in profile.intent_shares().items():
        assert counts[intent] / len(external) == pytest.approx(share, abs=0.025), intent
    assert sum(s.kind == "internal" for s in subs) / len(subs) == pytest.approx(0.03, abs=0.01)
    assert sum(s.kind == "withheld" for s in subs) / len(subs) == pytest.approx(0.01, abs=0.007)
    # New connection and conditions callers press 1; coordination goes to support.
    assert {s.category for s in external if s.intent == "consultation"} == {"new_connection"}
    assert {s.category for s in external if s.intent == "coordination"} == {"support"}


def test_office_phones_are_short_extensions_and_subscribers_real_numbers(month) -> None:
    subs = [s for plan in month for s in plan.subscribers]
    assert all(
        s.caller_id.isdigit() and len(s.caller_id) == 3 for s in subs if s.kind == "internal"
    )
    for s in subs:
        if s.kind == "external":
            assert len(s.number) == 11 and s.number.startswith("7")
            assert s.caller_id in ("+" + s.number, "8" + s.number[1:], s.number)
    formats = collections.Counter(s.caller_id[0] for s in subs if s.kind == "external")
    total = sum(formats.values())
    assert formats["+"] / total == pytest.approx(0.6, abs=0.04)
    assert formats["8"] / total == pytest.approx(0.3, abs=0.04)


def test_calls_follow_the_hourly_rhythm_with_two_peaks(month) -> None:
    hours = collections.Counter(
        dt.datetime.fromtimestamp(c.at, TZ).hour for plan in month for c in plan.calls
    )
    total = sum(hours.values())
    weights = TrafficProfile().calls.hourly
    for hour in range(24):
        expected = total * weights[hour] / sum(weights)
        # Within four standard deviations of a Poisson count.
        assert abs(hours[hour] - expected) <= 4 * math.sqrt(expected) + 1, hour
    assert hours[10] > hours[7] and hours[10] > hours[14]  # mid-morning peak
    assert hours[18] > hours[15] and hours[18] > hours[21]  # evening peak
    assert sum(hours[h] for h in range(0, 6)) / total < 0.02


def test_callers_behave_as_the_profile_says(month) -> None:
    scripts = [c.script for plan in month for c in plan.calls]
    n = len(scripts)
    assert sum(s.choice == "hangup" for s in scripts) / n == pytest.approx(0.05, abs=0.015)
    assert sum(s.choice is None for s in scripts) / n == pytest.approx(0.08, abs=0.02)
    waiting = [s for s in scripts if s.choice != "hangup"]
    patience = [s.patience for s in waiting]
    assert sum(p <= 60 for p in patience) / len(patience) == pytest.approx(0.50, abs=0.03)
    assert sum(p > 180 for p in patience) / len(patience) == pytest.approx(0.18, abs=0.03)
    assert max(patience) <= 330
    assert sum(s.star_after is not None for s in waiting) / len(waiting) == pytest.approx(
        0.07, abs=0.015
    )


def test_agents_work_their_shift_with_breaks_that_never_overlap() -> None:
    plan = plan_day(TrafficProfile(), MIDNIGHT)
    assert [(a.extension, a.queues) for a in plan.agents] == [
        ("101", ("sales",)),
        ("102", ("sales", "support")),
        ("103", ("support",)),
    ]
    nine = dt.datetime(2026, 11, 24, 9, tzinfo=TZ).timestamp()
    for agent in plan.agents:
        assert agent.shifts == ((nine, nine + 12 * 3600),)
        reasons = collections.Counter(reason for _, _, reason in agent.breaks)
        assert reasons == {"tickets": 6, "break": 2, "lunch": 1}
        spells = [(b, e) for b, e, _ in agent.breaks]
        assert all(e1 < b2 for (_, e1), (b2, _) in itertools.pairwise(spells))
        assert all(nine < b and e < nine + 12 * 3600 for b, e in spells)


# --------------------------------------------------------------------------- a day on the PBX


async def simulate_day(
    seed: int,
    profile: TrafficProfile | None = None,
) -> tuple[TrafficRunner, list[tuple[str, dict]]]:
    profile = profile or TrafficProfile()
    clock = ManualClock(start=MIDNIGHT)
    plan = plan_day(profile, MIDNIGHT, seed=seed)
    pbx = SimPbx(clock, pbx_spec(profile, plan))
    events: list[tuple[str, dict]] = []
    decoder = FrameDecoder()

    def keep(data: bytes) -> None:
        message = decoder.feed(data)[0]
        if message.event in (
            "Newchannel",
            "QueueMemberPause",
            "QueueMemberAdded",
            "QueueMemberRemoved",
        ):
            events.append((message.event, message.fields))

    pbx.listeners.append(keep)
    runner = TrafficRunner(pbx, plan, profile)
    runner.start()
    await run_for(clock, 86400 + 900, step=60)
    assert pbx.scheduler.errors == 0
    assert not pbx.channels  # every call ended
    await pbx.close()
    return runner, events


_DAYS: dict[int, tuple[TrafficRunner, list[tuple[str, dict]]]] = {}


@pytest.fixture
async def day() -> tuple[TrafficRunner, list[tuple[str, dict]]]:
    # One simulated day for the module (each test has its own event loop, the day is data).
    if 7 not in _DAYS:
        _DAYS[7] = await simulate_day(7)
    return _DAYS[7]


async def test_a_simulated_day_is_the_same_day_again_with_the_same_seed(day) -> None:
    again, events = await simulate_day(7)
    first, first_events = day
    assert again.ledger.inbound() == first.ledger.inbound()
    assert again.ledger.subscribers() == first.ledger.subscribers()
    assert events == first_events


async def test_a_simulated_day_loses_calls_like_the_audited_providers(day) -> None:
    runner, _ = day
    summary = runner.ledger.summary()
    # The audits: 52 of 172 (30%) and 29 of 75 (39%) ended without a person.
    assert 0.22 <= summary["unanswered_calls"] / summary["external_calls"] <= 0.48
    assert 140 <= summary["calls"] <= 210
    outcomes = collections.Counter(c.outcome for c in runner.ledger.inbound())
    assert set(outcomes) == {"served", "abandoned", "ivr_hangup", "callback_requested"}
    asked = collections.Counter(
        c.callback_asked for c in runner.ledger.inbound() if c.callback_asked
    )
    assert set(asked) <= {"KEYPRESS", "TIMEOUT"} and asked["KEYPRESS"] > 0


async def test_some_unanswered_callers_call_again_but_never_twice_at_once(day) -> None:
    runner, _ = day
    subs = [s for s in runner.ledger.subscribers() if len(s.calls) > 1]
    assert subs
    for sub in subs:
        assert sub.calls[0].missed or sub.calls[0].served
        for a, b in itertools.pairwise(sub.calls):
            assert a.ended_at is not None and a.ended_at <= b.started_at


async def test_office_calls_come_from_extensions_not_over_the_trunk(day) -> None:
    runner, events = day
    internal = {c.number for c in runner.ledger.inbound() if c.internal}
    assert internal
    firsts = [
        f
        for name, f in events
        if name == "Newchannel" and f["Uniqueid"] == f["Linkedid"] and f["CallerIDNum"] in internal
    ]
    assert firsts and all(
        f["Channel"].startswith("PJSIP/2") and f["Context"] == "from-internal" for f in firsts
    )
    trunk = [f for name, f in events if name == "Newchannel" and f["Channel"].startswith("IAX2/")]
    assert not any(f["CallerIDNum"] in internal for f in trunk)


async def test_agents_log_in_take_breaks_and_log_out_on_the_wire(day) -> None:
    _, events = day
    names = collections.Counter(name for name, _ in events)
    assert names["QueueMemberAdded"] == 4 and names["QueueMemberRemoved"] == 4
    reasons = {
        f["PausedReason"] for name, f in events if name == "QueueMemberPause" and f["Paused"] == "1"
    }
    assert reasons == {"break", "lunch", "tickets"}


# --------------------------------------------------------------------------- the facade


async def test_a_simulation_serves_n_agents_and_its_traffic_on_a_socket(
    tmp_path, config, redis_client
) -> None:
    clock = ManualClock(start=dt.datetime(2026, 11, 24, 10, tzinfo=TZ).timestamp())
    capture = tmp_path / "day.jsonl"
    sim = await Simulation.start(clock, agents=5, hours=2, secret="s", record_to=capture)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
        await reader.readline()
        writer.write(
            b"Action: Login\r\nActionID: 1\r\nUsername: dialer\r\nSecret: s\r\n\r\n"
            b"Action: QueueStatus\r\nActionID: 2\r\n\r\n"
        )
        decoder, got = FrameDecoder(), []
        while not any(m.event == "QueueStatusComplete" for m in got):
            got.extend(decoder.feed(await asyncio.wait_for(reader.read(65536), 5)))
        members = {m["Location"] for m in got if m.event == "QueueMember"}
        assert members == {f"Local/{ext}@agents/n" for ext in range(101, 106)}
        await sim.run()
        got.extend(decoder.feed(await asyncio.wait_for(reader.read(1 << 20), 5)))
        assert any(m.event == "QueueCallerJoin" for m in got)  # the traffic reached us
        writer.close()
    finally:
        await sim.stop()
    calls = sim.ledger.inbound()
    assert len(calls) == sim.runner.calls_placed
    assert 20 <= len(calls) <= 80  # two busy morning hours
    # The recording replays like a real capture: the dialer finds the lost callers in it.
    rows = await replay_capture(config, capture, redis_client, clock=ManualClock())
    still_open: dict[str, bool] = {}
    for c in calls:
        if c.internal or not c.number.lstrip("+").isdigit():
            continue
        if c.served:
            still_open[number_key(c.number)] = False  # served: any callback is closed
        elif c.ended_at - c.started_at >= 3:  # the dialer's min_call_seconds
            still_open[number_key(c.number)] = True
    lost = {number for number, is_open in still_open.items() if is_open}
    assert lost
    assert {number_key(r["number"]) for r in rows} == lost


async def test_a_callback_finds_a_subscriber_on_another_call_busy() -> None:
    profile = parse_profile({"calls": {"per_day": 40, "internal_share": 0, "withheld_share": 0}})
    clock = ManualClock(start=MIDNIGHT)
    plan = plan_day(profile, MIDNIGHT, seed=3)
    pbx = SimPbx(clock, pbx_spec(profile, plan))
    runner = TrafficRunner(pbx, plan, profile)
    sub = plan.subscribers[0]
    pbx.place_call(sub.caller_id, CallerScript(choice="2", patience=600), tag=sub.id)
    await run_for(clock, 30)
    assert runner.respond(sub.number, clock.now()).status == "BUSY"
    answers = collections.Counter(
        runner.respond(s.number, clock.now()).status for s in plan.subscribers[1:]
    )
    assert answers["ANSWER"] > answers["BUSY"]  # the others are mostly free to answer
    await pbx.close()


async def test_queue_add_over_ami_adds_the_member_and_says_so() -> None:
    clock = ManualClock(start=dt.datetime(2026, 11, 24, 10, tzinfo=TZ).timestamp())
    sim = await Simulation.start(clock, agents=2, hours=1, secret="s")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
        await reader.readline()
        writer.write(
            b"Action: Login\r\nActionID: 1\r\nUsername: dialer\r\nSecret: s\r\n\r\n"
            b"Action: QueueAdd\r\nActionID: 2\r\nQueue: support\r\n"
            b"Interface: Local/101@agents/n\r\nPaused: true\r\nReason: training\r\n\r\n"
            b"Action: QueueAdd\r\nActionID: 3\r\nQueue: support\r\n"
            b"Interface: Local/101@agents/n\r\n\r\n"
        )
        decoder, got = FrameDecoder(), []
        while sum(1 for m in got if m.get("ActionID") in ("2", "3")) < 2:
            got.extend(decoder.feed(await asyncio.wait_for(reader.read(65536), 5)))
        writer.close()
    finally:
        await sim.stop()
    replies = {m["ActionID"]: (m["Response"], m["Message"]) for m in got if m.response}
    assert replies["2"] == ("Success", "Added interface to queue")
    assert replies["3"] == ("Error", "Unable to add interface: Already there")
    added = [m for m in got if m.event == "QueueMemberAdded"]
    assert [(m["Queue"], m["Interface"], m["Paused"], m["PausedReason"]) for m in added] == [
        ("support", "Local/101@agents/n", "1", "training")
    ]
