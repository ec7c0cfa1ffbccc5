"""Issue 17 on our own recordings of a real Asterisk 22.9.0 running the generated dialplan
(scripts/record_outage_lab.py; tests/fixtures/README.md says how): the self-service branch,
and an outage declared mid-traffic by the dialplan's UserEvent, then ended by it."""

from __future__ import annotations

import asyncio
import json

from callback_dialer.ami.frames import FrameDecoder
from callback_dialer.clock import ManualClock
from callback_dialer.detect.facts import MissedCall, SelfServed
from callback_dialer.detect.pipeline import build_pipeline
from callback_dialer.outage.service import OutageService
from callback_dialer.queue.models import OutageState, Source, State
from callback_dialer.queue.store import CallbackQueue

from .conftest import FIXTURES

# In a folder of their own: they hold dialplan events (Newexten, VarSet) of the generated
# dialplan, which the simulator's wire tests over tests/fixtures/*.jsonl do not rebuild.
SELF_SERVICE = FIXTURES / "issue17" / "self_service.jsonl"
OUTAGE = FIXTURES / "issue17" / "outage.jsonl"
START = 1_795_345_800.0


def messages(path):
    """The capture's messages from Asterisk, in order, stamped with their time."""
    for line in path.read_text("utf-8").splitlines():
        record = json.loads(line)
        if record["dir"] != "in":
            continue
        yield from FrameDecoder().feed(record["raw"].encode(), START + record["t"])


async def play(path, config, redis_client):
    """Every message through the live wiring (detection, the sink, the outage service on the
    router, as app.py wires them), each one's consequences stored before the next: the real
    gaps between them were seconds."""
    clock = ManualClock(START)
    queue = CallbackQueue(redis_client, config, clock)
    facts = []
    pipeline = build_pipeline(config, clock, queue, on_fact=facts.append)
    outages = OutageService(config, clock, queue)
    pipeline.router.add(outages)
    sink = asyncio.create_task(pipeline.sink.run())
    try:
        for message in messages(path):
            if message.received_at > clock.now():
                await clock.advance(message.received_at - clock.now())
            pipeline.router.dispatch(message)
            if outages._tasks:
                await asyncio.gather(*outages._tasks)
            await pipeline.sink.drain(5)
    finally:
        sink.cancel()
    return queue, facts


async def test_the_self_service_branch_is_counted_and_the_queue_caller_called_back(
    config, redis_client
) -> None:
    queue, facts = await play(SELF_SERVICE, config, redis_client)
    assert [(f.number, f.reason, f.category) for f in facts if isinstance(f, SelfServed)] == [
        ("+74951110009", "balance", "other")
    ]
    missed = [(f.number, f.category, f.source) for f in facts if isinstance(f, MissedCall)]
    assert missed == [("+79031110002", "support", Source.ABANDON)]
    waiting = await queue.waiting()
    assert [cb.number for cb in waiting] == ["+79031110002"]
    stats = await queue.day_stats(queue.hours.day_key(START))
    assert stats["selfservice:reason:balance"] == 1


def test_the_recorded_ivr_set_the_skip_variable_in_the_self_service_option() -> None:
    hangups = [
        m
        for m in messages(SELF_SERVICE)
        if m.event == "Hangup" and m.get("CallerIDNum", "").endswith("4951110009")
    ]
    assert hangups and "CALLBACK_SKIP=balance" in hangups[0].getall("ChanVariable")


async def test_the_outage_holds_the_district_from_the_user_event_on(config, redis_client) -> None:
    queue, facts = await play(OUTAGE, config, redis_client)
    by_number = {}
    for number in {f.number for f in facts if isinstance(f, MissedCall)}:
        (cb,) = await queue.for_number(number)
        by_number[number] = cb
    states = {n: (cb.state, cb.outage) for n, cb in by_number.items()}
    # Before the UserEvent: an ordinary callback. After it: the district's support callers
    # held; a new subscriber from the district and a caller from elsewhere are not.
    assert states["+74951230011"][1] == ""
    for number in ("+74951230021", "+74951230031", "+74951230041", "+74951230081"):
        assert by_number[number].outage == "noc-1", number
    assert by_number["+74951230051"].outage == ""
    assert by_number["+74951230051"].category == "new_connection"
    assert states["+79161230061"][1] == ""
    outage = await queue.outage("noc-1")
    assert outage.held == 4
    assert outage.message == "Cable cut in district 5. Fix expected by 18:00"
    assert outage.declared_by.startswith("pbx:Local/declare@callback-outage-control")
    assert (outage.state, outage.end_choice) == (OutageState.ENDING, "drop")
    assert await queue.settle_outage("noc-1") == 0
    for number in ("+74951230021", "+74951230031", "+74951230041", "+74951230081"):
        cb = await queue.get(by_number[number].id)
        assert (cb.state, cb.reason) == (State.CANCELLED, "outage_over")
        assert [e.event for e in await queue.history(cb.id)] == ["held", "outage_dropped"]


def test_the_recorded_ivr_announced_the_outage_only_once_it_was_declared() -> None:
    declared_at = None
    announced, not_announced = set(), set()
    for m in messages(OUTAGE):
        if m.event == "UserEvent" and m.get("Action") == "declare":
            declared_at = m.received_at
        if m.event == "Newexten" and m.get("Context") == "callback-outage-notice":
            announced.add(m.get("CallerIDNum"))
        if (
            m.event == "Newexten"
            and m.get("Application") == "GosubIf"
            and m.get("AppData", "").startswith("0?callback-outage-notice")
        ):
            not_announced.add(m.get("CallerIDNum"))
    assert declared_at is not None
    assert {n[-11:] for n in announced} >= {"74951230021", "74951230031", "74951230041"}
    assert any(n.endswith("74951230011") for n in not_announced)  # before the declaration
