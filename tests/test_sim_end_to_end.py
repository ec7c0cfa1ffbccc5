"""The whole dialer (detection, queue, dispatching) against the simulated PBX over TCP, on one
scaled clock: a missed caller is called back through a free agent, and the simulator's ledger
confirms it from the PBX's side."""

from __future__ import annotations

import dataclasses

import pytest
from simpbx.ami import PbxAmi
from simpbx.clock import run_for
from simpbx.customers import PerNumber
from simpbx.ledger import Ledger
from simpbx.model import CallerScript, CustomerResponse, FixedAgent, PbxSpec
from simpbx.pbx import SimPbx

from callback_dialer.ami.asterisk import DialStatus
from callback_dialer.app import Dialer, build_dialer
from callback_dialer.clock import ScaledClock
from callback_dialer.queue.models import State

from .test_dispatch import until

SPEED = 100.0
NEW = "79161230011"
BUSY_ONE = "79161230022"


@pytest.fixture
async def rig(make_config, redis_url, tmp_path):
    clock = ScaledClock(SPEED)
    agents = tuple(dataclasses.replace(a, behaviour=FixedAgent(talk=60)) for a in PbxSpec().agents)
    pbx = SimPbx(
        clock,
        PbxSpec(agents=agents),
        customers=PerNumber(
            {
                NEW: CustomerResponse("ANSWER", ring=3, talk=40),
                BUSY_ONE: CustomerResponse(DialStatus.BUSY, ring=1),
            }
        ),
    )
    ledger = Ledger()
    pbx.observers.append(ledger)
    ami = await PbxAmi.serve(pbx, secret="s3cret")
    config = make_config(
        ami={
            "port": ami.port,
            "secret": "s3cret",
            "reconnect_min_delay": 0.05,
            "reconnect_max_delay": 0.2,
        },
        dispatch={"wrapup_seconds": 5, "tick_seconds": 5},
        retry={"max_attempts": 3, "delays": ["10m"]},
    )
    dialer = build_dialer(config, clock=clock, redis_url=redis_url, spool=tmp_path / "spool.jsonl")
    await dialer.start()
    await until(lambda: dialer.ami.authenticated and len(dialer.pipeline.agents.agents) == 3)
    yield pbx, dialer, ledger
    await dialer.stop()
    await ami.stop()
    await pbx.close()


async def callbacks(dialer: Dialer) -> dict[str, State]:
    rows = (
        await dialer.queue.waiting(limit=100)
        + await dialer.queue.in_progress()
        + await dialer.queue.finished_between(0, float("inf"))
    )
    return {c.number: c.state for c in rows}


async def test_a_lost_new_subscriber_is_called_back_and_the_ledger_sees_it_served(rig) -> None:
    pbx, dialer, ledger = rig
    for agent in ("101", "102"):
        pbx.scheduler.run(pbx.pause, agent, True, "lunch")
    pbx.place_call("+" + NEW, CallerScript(choice="1", patience=15))
    await run_for(pbx.clock, 25)
    assert ledger.subscribers()[0].missed
    pbx.scheduler.run(pbx.pause, "101", False)
    await run_for(pbx.clock, 90)
    [sub] = ledger.subscribers()
    first = sub.first_callback_after_miss()
    assert first is not None and first.status == "ANSWER" and first.need == "open"
    assert first.agent == "Local/101@agents/n"
    assert sub.served_by == "callback"
    assert ledger.callbacks_to_served() == () and ledger.concurrent_calls() == ()
    assert (await callbacks(dialer))["+" + NEW] == State.DONE
    assert pbx.scheduler.errors == 0 and dialer.pipeline.router.handler_errors == 0


async def test_a_busy_customer_is_rescheduled_not_redialled_at_once(rig) -> None:
    pbx, dialer, ledger = rig
    for agent in ("101", "102", "103"):
        pbx.scheduler.run(pbx.pause, agent, True, "lunch")
    pbx.place_call("8" + BUSY_ONE[1:], CallerScript(choice="2", patience=10))
    await run_for(pbx.clock, 20)
    pbx.scheduler.run(pbx.pause, "103", False)
    await run_for(pbx.clock, 60)
    [sub] = ledger.subscribers()
    assert [cb.status for cb in sub.callbacks] == ["BUSY"]
    assert (await callbacks(dialer))["+" + BUSY_ONE] == State.SCHEDULED
