"""The callback offer without Asterisk: the simulator plays the generated dialplan's
callback-door and callback-offer contexts against the real dialer, every step a real FastAGI
exchange with the dialer's server, and its ledger says whom the PBX really dialled."""

from __future__ import annotations

import dataclasses
import json

import pytest
from simpbx.ami import PbxAmi
from simpbx.clock import run_for
from simpbx.customers import PerNumber
from simpbx.ledger import Ledger
from simpbx.model import NEVER_ANSWERS, CallerScript, CustomerResponse, FixedAgent, PbxSpec
from simpbx.observe import CallbackOffered
from simpbx.pbx import SimPbx

from callback_dialer.app import build_dialer
from callback_dialer.clock import ScaledClock

from .helpers.wait import until_async
from .test_dispatch import until

SPEED = 50.0
CALLER = "79161230011"
TYPED = "79031234561"


class Offers:
    def __init__(self) -> None:
        self.seen: list[CallbackOffered] = []

    def notice(self, event: object) -> None:
        if isinstance(event, CallbackOffered):
            self.seen.append(event)


async def make_rig(make_config, redis_url, tmp_path, *, agents_answer: bool, agi: bool = True):
    clock = ScaledClock(SPEED)
    behaviour = FixedAgent(talk=20) if agents_answer else NEVER_ANSWERS
    agents = tuple(dataclasses.replace(a, behaviour=behaviour) for a in PbxSpec().agents)
    pbx = SimPbx(
        clock,
        PbxSpec(agents=agents),
        customers=PerNumber(
            {
                CALLER: CustomerResponse("ANSWER", ring=2, talk=20),
                TYPED: CustomerResponse("ANSWER", ring=2, talk=20),
            }
        ),
    )
    ledger, offers = Ledger(), Offers()
    pbx.observers += [ledger, offers]
    ami = await PbxAmi.serve(pbx, secret="s3cret")
    config = make_config(
        ami={"port": ami.port, "secret": "s3cret", "reconnect_min_delay": 0.05},
        dispatch={"wrapup_seconds": 5, "tick_seconds": 5, "min_talk_seconds": 3},
        ivr={"offer_after": "60s", "agi_port": 0, "agi_enabled": agi},
    )
    dialer = build_dialer(config, clock=clock, redis_url=redis_url, spool=tmp_path / "spool.jsonl")
    await dialer.start()
    await until(lambda: dialer.ami.authenticated and len(dialer.pipeline.agents.agents) == 3)
    # The generated dialplan's CALLBACK_AGI_URL: where this dialer's server listens (a
    # closed port when it has none, as with a dialer that is down).
    address = f"127.0.0.1:{dialer.agi.address[1]}" if dialer.agi else "127.0.0.1:9"
    pbx.spec = dataclasses.replace(pbx.spec, agi_address=address)
    return pbx, dialer, ledger, offers, ami


@pytest.fixture
async def rigs(make_config, redis_url, tmp_path):
    made = []

    async def make(**kw):
        rig = await make_rig(make_config, redis_url, tmp_path, **kw)
        made.append(rig)
        return rig

    yield make
    for pbx, dialer, _, _, ami in made:
        await dialer.stop()
        await ami.stop()
        await pbx.close()


async def open_callbacks(dialer):
    return await dialer.queue.waiting(limit=100) + await dialer.queue.in_progress()


async def test_at_the_door_a_caller_types_another_number_and_is_called_back_there(rigs) -> None:
    pbx, dialer, ledger, offers, _ = await rigs(agents_answer=True)
    for agent in ("102", "103"):
        pbx.scheduler.run(pbx.pause, agent, True, "lunch")
    # Nobody can answer support: the expected wait is longer than offer_after; offered at once.
    pbx.place_call("+" + CALLER, CallerScript(choice="2", offer=("2", "89031234561", "1")))
    await run_for(pbx.clock, 60)
    [offer] = offers.seen
    assert offer.why == "DOOR" and offer.eta_minutes == 60  # no agent serves support now
    [cb] = await open_callbacks(dialer)
    assert (cb.number, cb.caller_id, cb.source.value) == ("+" + TYPED, "+" + CALLER, "explicit")
    for agent in ("102", "103"):
        pbx.scheduler.run(pbx.pause, agent, False, "")
    await until(lambda: any(c.status == "ANSWER" for c in ledger.callbacks()), timeout=30)
    assert {c.number for c in ledger.callbacks()} == {TYPED}  # never the caller ID


async def test_star_in_the_queue_takes_the_offer_on_the_caller_id(rigs) -> None:
    pbx, dialer, _, offers, _ = await rigs(agents_answer=False)
    # The agents are free but never pick up: the door lets the caller in; * after 5 s.
    pbx.place_call("+" + CALLER, CallerScript(choice="2", star_after=5, offer=("1",)))
    await run_for(pbx.clock, 60)
    assert [o.why for o in offers.seen] == ["KEYPRESS"]
    assert offers.seen[0].eta_minutes == 5
    [cb] = await open_callbacks(dialer)
    assert (cb.number, cb.caller_id, cb.source.value) == ("+" + CALLER, "", "explicit")


async def test_a_garbage_number_is_refused_and_nothing_is_dialled_to_it(rigs) -> None:
    pbx, dialer, ledger, offers, _ = await rigs(agents_answer=True)
    for agent in ("102", "103"):
        pbx.scheduler.run(pbx.pause, agent, True, "lunch")
    call = pbx.place_call("+" + CALLER, CallerScript(choice="2", offer=("2", "12", "555")))
    await run_for(pbx.clock, 90)
    assert call.outcome == "offer_refused"
    # Refused and hung up: a missed call like any other, on its caller ID.
    [cb] = await open_callbacks(dialer)
    assert (cb.number, cb.caller_id) == ("+" + CALLER, "")
    for agent in ("102", "103"):
        pbx.scheduler.run(pbx.pause, agent, False, "")
    await until(lambda: len(ledger.callbacks()) >= 1, timeout=30)
    assert {c.number for c in ledger.callbacks()} == {CALLER}
    assert len(offers.seen) == 1


async def test_without_the_dialers_agi_the_plain_promise_still_gets_a_callback(rigs) -> None:
    pbx, dialer, _, offers, _ = await rigs(agents_answer=False, agi=False)
    call = pbx.place_call("+" + CALLER, CallerScript(choice="2", star_after=5, offer=("1",)))
    await run_for(pbx.clock, 30)
    assert offers.seen == [] and call.outcome == "callback_requested"
    [cb] = await open_callbacks(dialer)
    assert (cb.number, cb.source.value) == ("+" + CALLER, "explicit")


async def test_with_redis_away_the_offer_still_answers_and_the_callback_waits_in_the_spool(
    make_config, own_redis, tmp_path
) -> None:
    pbx, dialer, _, offers, ami = await make_rig(
        make_config, own_redis.url, tmp_path, agents_answer=False
    )
    try:
        own_redis.stop()
        call = pbx.place_call(
            "+" + CALLER, CallerScript(choice="2", star_after=5, offer=("2", "89031234561", "1"))
        )
        await run_for(pbx.clock, 60)
        # The caller heard the estimate and was registered: nothing waited on Redis.
        assert [o.why for o in offers.seen] == ["KEYPRESS"]
        assert call.outcome == "callback_accepted"
        spool = tmp_path / "spool.jsonl"
        await until(lambda: spool.exists())
        [line] = spool.read_text().splitlines()
        spooled = json.loads(line)
        assert (spooled["number"], spooled["caller_id"]) == ("+" + TYPED, "+" + CALLER)
        own_redis.start()  # a fresh, empty Redis: the spooled request must still arrive

        async def arrived() -> bool:
            rows = await open_callbacks(dialer)
            return [(c.number, c.caller_id) for c in rows] == [("+" + TYPED, "+" + CALLER)]

        await until_async(arrived, timeout=20)
    finally:
        await dialer.stop()
        await ami.stop()
        await pbx.close()
