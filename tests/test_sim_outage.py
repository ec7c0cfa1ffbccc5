"""Outage mode against the PBX simulator: the outage day's plan (a district's support calls
x10 for two hours), and the real dialer holding that district's callers while new subscribers
are called back, then releasing them; the simulator's ledger says what really rang."""

from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

from simpbx.clock import run_for
from simpbx.customers import PerNumber
from simpbx.ledger import Ledger
from simpbx.model import CallerScript, CustomerResponse, FixedAgent, PbxSpec
from simpbx.pbx import SimPbx
from simpbx.profile import TrafficProfile, load_profile
from simpbx.traffic import outage_window, plan_day

from callback_dialer.ami.asterisk import DialStatus
from callback_dialer.app import build_dialer
from callback_dialer.clock import ScaledClock
from callback_dialer.queue.models import OutageEnd, State

from .conftest import REPO
from .test_dispatch import until

START = dt.datetime(2026, 3, 10, 8, 0, tzinfo=ZoneInfo("Europe/Moscow")).timestamp()
DISTRICT = "+74951230011"
NEW = "+79161230012"


def district_calls(plan, profile):
    return [
        c
        for c in plan.calls
        if plan.subscriber(c.subscriber).number.startswith(profile.outage.district)
    ]


def test_the_outage_day_brings_the_district_s_support_calls_ten_times_for_two_hours() -> None:
    profile = load_profile(REPO / "config" / "traffic-outage.toml")
    plain = profile.model_copy(update={"outage": TrafficProfile().outage})
    assert profile.outage.enabled and not plain.outage.enabled
    begin, end = outage_window(profile, START)
    assert (dt.datetime.fromtimestamp(begin, ZoneInfo("Europe/Moscow")).hour, end - begin) == (
        11,
        7200,
    )
    extra, ordinary, rates = [], [], []
    for seed in range(1, 21):
        busy = plan_day(profile, START, hours=8, seed=seed)
        usual = plan_day(plain, START, hours=8, seed=seed)
        extra += district_calls(busy, profile)
        ordinary += [c for c in usual.calls if begin <= c.at < end]
        rates.append(len(district_calls(busy, profile)))
    # All in the window, all about support, from numbers of the district.
    assert all(begin <= c.at < end for c in extra)
    assert {c.script.choice for c in extra} <= {"2", None, "hangup"}
    # (multiplier - 1) x the district's share of the usual traffic in those hours.
    expected = len(ordinary) * profile.outage.district_share * (profile.outage.multiplier - 1)
    assert 0.8 * expected <= len(extra) <= 1.2 * expected
    # The day without the outage is the same day (same seed, same ordinary calls).
    busy = plan_day(profile, START, hours=8, seed=1)
    usual = plan_day(plain, START, hours=8, seed=1)
    assert [c.at for c in busy.calls if c not in district_calls(busy, profile)] == [
        c.at for c in usual.calls
    ]


async def test_a_district_caller_is_held_while_a_new_subscriber_is_called_back(
    make_config, redis_url, tmp_path
) -> None:
    clock = ScaledClock(100.0)
    agents = tuple(dataclasses.replace(a, behaviour=FixedAgent(talk=30)) for a in PbxSpec().agents)
    answer = CustomerResponse(DialStatus.ANSWER, ring=2, talk=20)
    pbx = SimPbx(
        clock, PbxSpec(agents=agents), customers=PerNumber({NEW[1:]: answer, DISTRICT[1:]: answer})
    )
    ledger = Ledger()
    pbx.observers.append(ledger)
    from simpbx.ami import PbxAmi

    ami = await PbxAmi.serve(pbx, secret="s3cret")
    config = make_config(
        ami={"port": ami.port, "secret": "s3cret", "reconnect_min_delay": 0.05},
        dispatch={"wrapup_seconds": 5, "tick_seconds": 5},
        outage={"refresh_every": 1},
    )
    dialer = build_dialer(config, clock=clock, redis_url=redis_url, spool=tmp_path / "s.jsonl")
    await dialer.start()
    try:
        await until(lambda: dialer.ami.authenticated and len(dialer.pipeline.agents.agents) == 3)
        for agent in ("101", "102", "103"):
            pbx.scheduler.run(pbx.pause, agent, True, "lunch")
        _, outage = await dialer.outages.declare(
            actor="web:boss", categories=["support"], prefixes=["+7495123"], message="Cut"
        )
        # The IVR can tell: the dialer mirrored the outage into the PBX's AstDB.
        await until(lambda: pbx.astdb.get("callback-outage", "cat-support") == "1")
        assert pbx.astdb.get("callback-outage", "message") == "Cut"
        pbx.place_call(DISTRICT, CallerScript(choice="2", patience=10))
        pbx.place_call(NEW, CallerScript(choice="1", patience=10))
        await run_for(clock, 25)
        for agent in ("101", "102", "103"):
            pbx.scheduler.run(pbx.pause, agent, False)
        await run_for(clock, 120)
        rung = [c.number.lstrip("+") for c in ledger.callbacks()]
        assert rung == [NEW[1:]]
        held = await dialer.queue.open_for(DISTRICT)
        assert held is not None and held.state is State.HELD
        await dialer.outages.end(outage.id, OutageEnd.RELEASE, actor="web:boss", per_hour=3600)
        assert pbx.astdb.tree("callback-outage") == []
        await run_for(clock, 120)
        rung = [c.number.lstrip("+") for c in ledger.callbacks()]
        assert rung == [NEW[1:], DISTRICT[1:]]
        # The ledger knows subscribers by their ten national digits.
        served = {s.number[-10:]: s.served_by for s in ledger.subscribers()}
        assert served == {DISTRICT[-10:]: "callback", NEW[-10:]: "callback"}
        assert pbx.scheduler.errors == 0 and dialer.pipeline.router.handler_errors == 0
    finally:
        await dialer.stop()
        await ami.stop()
        await pbx.close()
