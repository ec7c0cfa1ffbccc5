"""The ledger: the simulator's ground truth about every subscriber, against scripted calls."""

from __future__ import annotations

import dataclasses

import pytest
from simpbx.clock import run_for
from simpbx.customers import PerNumber
from simpbx.ledger import Ledger
from simpbx.model import CallerScript, CustomerResponse, FixedAgent, PbxSpec
from simpbx.pbx import SimPbx
from simpbx.scenarios import CAPTURE_EPOCH, originate

from callback_dialer.ami.asterisk import DialStatus
from callback_dialer.clock import ManualClock

A, B, C, D = "79161230011", "79161230021", "79161230031", "79161230041"


@pytest.fixture
async def pbx():
    clock = ManualClock(start=CAPTURE_EPOCH)
    customers = PerNumber(
        {
            A: CustomerResponse("ANSWER", ring=4, talk=40),
            B: CustomerResponse(DialStatus.BUSY),
            C: CustomerResponse("ANSWER", ring=2, talk=3),
        }
    )
    # The captures' agents, talking a minute instead of six seconds.
    agents = tuple(dataclasses.replace(a, behaviour=FixedAgent(talk=60)) for a in PbxSpec().agents)
    pbx = SimPbx(clock, PbxSpec(agents=agents), customers=customers)
    yield pbx
    await pbx.close()


def callback(pbx: SimPbx, number: str, cb: str, agent: str = "103") -> None:
    originate(
        pbx,
        {
            "ActionID": cb,
            "Channel": f"Local/{agent}@agents",
            "Context": "callback-outbound",
            "Exten": number,
            "Variable": f"CALLBACK_ID={cb}",
            "Async": "true",
            "Timeout": "15000",
        },
    )


async def test_a_missed_subscriber_served_by_a_callback_and_called_again_after(pbx) -> None:
    ledger = Ledger()
    pbx.observers.append(ledger)
    ledger.register("a", A, intent="new_connection")
    pbx.pause("101", True, "lunch")
    pbx.pause("102", True, "lunch")
    pbx.place_call("+" + A, CallerScript(choice="1", patience=20), tag="a")
    await run_for(pbx.clock, 60)
    callback(pbx, A, "cb-1")
    await run_for(pbx.clock, 120)
    callback(pbx, A, "cb-2")  # a second time: they were helped already
    await run_for(pbx.clock, 120)

    sub = ledger.subscriber("a")
    [call] = sub.calls
    assert (call.missed, call.outcome, call.choice, call.category, call.queues) == (
        True,
        "abandoned",
        "1",
        "new_connection",
        ("sales",),
    )
    assert sub.first_missed_at == call.ended_at
    first, second = sub.callbacks
    assert (first.status, first.need, first.talk) == ("ANSWER", "open", pytest.approx(40))
    assert first.rang_at - CAPTURE_EPOCH == pytest.approx(60, abs=0.1)
    assert sub.first_callback_after_miss() == first
    assert (sub.served_by, sub.served_at) == ("callback", first.ended_at)
    assert second.need == "served"
    assert ledger.callbacks_to_served() == (second,)
    assert ledger.summary()["served_by_callback"] == 1
    assert ledger.summary()["agent_seconds_on_callbacks"] > 80


async def test_a_callback_while_the_subscriber_is_on_another_call_is_concurrent(pbx) -> None:
    ledger = Ledger()
    pbx.observers.append(ledger)
    ledger.register("b", B)
    for agent in ("101", "102", "103"):
        pbx.pause(agent, True, "meeting")
    pbx.place_call("8" + B[1:], CallerScript(choice="2", patience=100), tag="b")
    await run_for(pbx.clock, 10)
    pbx.pause("103", False)  # ...the queue will only look again in a moment
    callback(pbx, B, "cb-b")
    await run_for(pbx.clock, 200)
    [cb] = ledger.callbacks()
    assert (cb.subscriber, cb.status, cb.concurrent) == ("b", "BUSY", True)
    assert ledger.concurrent_calls() == (cb,)


async def test_a_callback_to_someone_who_never_missed_a_call_is_flagged(pbx) -> None:
    ledger = Ledger()
    pbx.observers.append(ledger)
    ledger.register("c", C)
    callback(pbx, C, "cb-c")
    await run_for(pbx.clock, 60)
    [cb] = ledger.callbacks()
    assert cb.need == "never_missed"
    # Three seconds of talk is no service: nobody counts as served by it.
    assert ledger.subscriber("c").served_at is None


async def test_an_answered_caller_is_served_inbound_and_never_missed(pbx) -> None:
    ledger = Ledger()
    pbx.observers.append(ledger)
    pbx.place_call("+" + D, CallerScript(choice="2"))  # not announced: known by number
    await run_for(pbx.clock, 90)
    [sub] = ledger.subscribers()
    [call] = sub.calls
    assert (call.served, call.agent, call.outcome) == (True, "Local/102@agents/n", "served")
    assert (sub.missed, sub.served_at, sub.kind) == (False, None, "external")
    with pytest.raises(dataclasses.FrozenInstanceError):
        call.outcome = "abandoned"  # type: ignore[misc]
