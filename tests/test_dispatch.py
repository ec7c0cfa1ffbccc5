"""Dispatching against a live AMI peer that answers with the recorded Asterisk traffic: the
repo's own recordings (tests/fixtures), whatever else is on the machine."""

from __future__ import annotations

import asyncio

import pytest
from simpbx.amiserver import AmiServer

from callback_dialer.ami.frames import FrameDecoder, encode_message
from callback_dialer.app import Dialer, build_dialer
from callback_dialer.clock import ScaledClock
from callback_dialer.queue.models import Source, Stage, State

from .conftest import FIXTURES
from .helpers.recorded_pbx import RecordedPbx
from .helpers.wait import until, until_async

pytestmark = pytest.mark.captures
SPEED = 50.0


class Rig:
    """A dialer connected to a recorded-traffic PBX, on a clock running SPEED times faster
    (or ``speed``: a talk time measured to the second wants fewer clock seconds per wall
    millisecond the loop spends elsewhere)."""

    def __init__(self, server: AmiServer, pbx: RecordedPbx, dialer: Dialer) -> None:
        self.server, self.pbx, self.dialer = server, pbx, dialer
        self.queue = dialer.queue
        self.clock = dialer.clock

    async def missed(self, number: str, category: str, ago: float = 60.0) -> str:
        result = await self.queue.add_missed(
            number=number,
            category=category,
            source=Source.ABANDON,
            missed_at=self.clock.now() - ago,
            call_id=f"test-{number}-{ago}",
        )
        return result.id  # nobody kicks the dispatcher: the queue tells it

    def originates(self) -> list:
        return self.server.actions_named("Originate")

    async def state_of(self, callback_id: str):
        return await self.queue.get(callback_id)

    async def wait_state(self, callback_id: str, *states: State, timeout: float = 5.0):
        async def reached() -> bool:
            cb = await self.queue.get(callback_id)
            return cb is not None and cb.state in states

        await until_async(reached, timeout)
        return await self.queue.get(callback_id)


@pytest.fixture
async def rig(make_config, redis_url, tmp_path):
    made: list[Rig] = []

    async def build(
        agents: dict[str, list[str]] | None = None,
        *,
        start: bool = True,
        redis_at: str | None = None,
        speed: float = SPEED,
        **sections,
    ) -> Rig:
        server = await AmiServer(secret="s3cret").start()
        pbx = RecordedPbx(server, speed=speed)
        for extension, queues in (agents or {"101": ["sales"]}).items():
            pbx.add_agent(extension, queues)
        dispatch = {
            "min_talk_seconds": 3,
            "wrapup_seconds": 5,
            "agent_cooldown": 60,
            "tick_seconds": 5,
            **sections.pop("dispatch", {}),
        }
        ami = {
            "port": server.port,
            "secret": "s3cret",
            "reconnect_min_delay": 0.05,
            "reconnect_max_delay": 0.2,
            "ping_interval": 1,
            "ping_timeout": 1,
            "action_timeout": 2,
            **sections.pop("ami", {}),
        }
        config = make_config(ami=ami, dispatch=dispatch, **sections)
        dialer = build_dialer(
            config,
            clock=ScaledClock(speed),
            redis_url=redis_at or redis_url,
            spool=tmp_path / f"spool-{len(made)}.jsonl",
        )
        rig = Rig(server, pbx, dialer)
        made.append(rig)
        if start:
            await dialer.start()
            await until(
                lambda: (
                    dialer.ami.authenticated
                    and len(dialer.pipeline.agents.agents) == len(pbx.members)
                )
            )
        return rig

    yield build
    for r in made:
        await r.dialer.stop()
        await r.pbx.stop()
        await r.server.stop()


# ---------------------------------------------------------------- the Originate


async def test_a_free_agent_gets_the_right_originate_field_by_field(rig) -> None:
    r = await rig({"101": ["sales"]}, start=False)
    r.pbx.members["Local/101@agents/n"].paused = True
    await r.dialer.start()
    await until(lambda: r.dialer.ami.authenticated and r.dialer.pipeline.agents.agents)
    cb = await r.missed("+79161230001", "new_connection")
    await asyncio.sleep(0.2)
    assert r.originates() == []  # paused agents are not free
    await r.pbx.set_agent("101", paused=False)
    await until(lambda: len(r.originates()) == 1)
    sent = r.originates()[0]
    channel_id = sent.get("ChannelId")
    assert channel_id.startswith(f"cbd-{cb}-1-")
    # The claim it was placed under, for the call's fate record (callback-record-fate).
    (attempt,) = r.dialer.dispatcher.inflight.values()
    assert sent.pairs() == [
        ("Action", "Originate"),
        ("ActionID", sent.get("ActionID")),
        ("Async", "true"),
        ("CallerID", '"Callback New connection" <79161230001>'),
        ("Channel", "Local/101@agents"),
        ("ChannelId", channel_id),
        ("Context", "callback-outbound"),
        ("Exten", "79161230001"),
        ("OtherChannelId", f"{channel_id}-2"),
        ("Priority", "1"),
        ("Timeout", "15000"),
        ("Variable", f"CALLBACK_ID={cb}"),
        ("Variable", "CALLBACK_CATEGORY=new_connection"),
        ("Variable", "CALLBACK_TRUNK=default"),
        # The whisper's facts (on by default): one call, a minute ago (r.missed), no hours.
        ("Variable", "CALLBACK_WHISPER=1"),
        ("Variable", "CALLBACK_CALLS=1"),
        ("Variable", "CALLBACK_WAITED=1"),
        ("Variable", "CALLBACK_WAITED_HOURS=0"),
        ("Variable", f"CALLBACK_CLAIM={attempt.claim.token}"),
    ]


async def test_a_sales_agent_calls_back_the_new_subscriber_not_the_older_support_call(
    rig,
) -> None:
    r = await rig({"101": ["sales"]}, start=False)
    r.pbx.members["Local/101@agents/n"].paused = True
    await r.dialer.start()
    await until(lambda: r.dialer.ami.authenticated and r.dialer.pipeline.agents.agents)
    support = await r.missed("+79161230002", "support", ago=3000)
    new = await r.missed("+79161230001", "new_connection", ago=10)
    await r.pbx.set_agent("101", paused=False)
    await until(lambda: len(r.originates()) == 1)
    assert r.originates()[0].getall("Variable")[0] == f"CALLBACK_ID={new}"
    assert (await r.state_of(support)).state == State.PENDING


# ---------------------------------------------------------------- outcomes


@pytest.mark.parametrize(
    ("scenario", "state", "reason", "attempts"),
    [
        ("answered", State.DONE, "called_back", 1),
        ("busy", State.SCHEDULED, "busy", 1),
        ("congestion", State.SCHEDULED, "congestion", 1),
        ("customer_no_answer", State.SCHEDULED, "no_answer", 1),
        ("agent_no_answer", State.PENDING, "agent_no_answer", 0),
        ("cannot_create", State.PENDING, "originate_failed", 0),
    ],
)
async def test_each_recorded_outcome_leads_to_the_right_state(
    rig, scenario, state, reason, attempts
) -> None:
    r = await rig(
        {"101": ["sales"]},
        dispatch={"max_consecutive_failures": 5},
        speed=10 if scenario == "answered" else SPEED,
    )
    r.pbx.default_outcome = scenario
    cb = await r.missed("+79161230001", "new_connection")
    await until(lambda: r.originates())
    # Released callbacks would be dialled again at once: hold further attempts.
    r.dialer.dispatcher.paused = True
    final = await r.wait_state(cb, state, timeout=5)
    await asyncio.sleep(0.1)
    final = await r.state_of(cb)
    assert (final.state, final.reason, final.attempts) == (state, reason, attempts)
    if scenario == "answered":
        [attempt] = final.attempt_log
        assert attempt.outcome == "answered"
        assert attempt.talk_seconds == pytest.approx(5.5, abs=1.0)
    if scenario == "agent_no_answer":
        views = {v.interface: v.state for v in r.dialer.pipeline.agents.views()}
        assert views["Local/101@agents/n"] == "cooldown"


async def test_a_short_call_is_not_done(rig) -> None:
    r = await rig({"101": ["sales"]}, dispatch={"min_talk_seconds": 10})
    cb = await r.missed("+79161230001", "new_connection")
    final = await r.wait_state(cb, State.SCHEDULED)
    assert (final.reason, final.attempts) == ("short_call", 1)
    assert final.next_at == pytest.approx(r.clock.now() + 300, abs=30)


async def test_after_the_last_attempt_the_callback_fails_with_its_reason(rig) -> None:
    r = await rig({"101": ["sales"]}, retry={"max_attempts": 2, "delays": ["1s"]})
    r.pbx.default_outcome = "busy"
    cb = await r.missed("+79161230001", "new_connection")
    final = await r.wait_state(cb, State.FAILED, timeout=8)
    assert (final.reason, final.attempts) == ("busy", 2)
    assert len(r.originates()) == 2


async def test_outright_failures_in_a_row_pause_dispatching_with_an_alarm(rig) -> None:
    r = await rig(
        {"101": ["sales"], "102": ["sales"], "103": ["sales"]},
        dispatch={"max_consecutive_failures": 3},
    )
    r.pbx.default_outcome = "cannot_create"
    cb = await r.missed("+79161230001", "new_connection")
    await until(lambda: r.dialer.dispatcher.paused, timeout=5)
    assert len(r.originates()) == 3
    # Each failing agent rested; the callback went to the next one each time.
    assert {o.get("Channel") for o in r.originates()} == {
        "Local/101@agents",
        "Local/102@agents",
        "Local/103@agents",
    }
    assert "3 originates in a row failed" in r.dialer.dispatcher.alarm
    final = await r.state_of(cb)
    assert (final.state, final.attempts) == (State.PENDING, 0)  # nothing burnt
    await asyncio.sleep(0.2)
    assert len(r.originates()) == 3
    r.pbx.default_outcome = "answered"
    await r.dialer.dispatcher.resume("olga")
    await until(lambda: len(r.originates()) == 4, timeout=8)  # after the agents' rest


# ---------------------------------------------------------------- races and rules


async def test_an_agent_grabbed_by_a_queue_call_gives_the_callback_back_to_another(rig) -> None:
    r = await rig({"101": ["sales"], "102": ["sales"]}, start=False)
    for member in r.pbx.members.values():
        member.paused = True
    await r.dialer.start()
    await until(lambda: len(r.dialer.pipeline.agents.agents) == 2)
    real_claim = r.queue.claim

    async def claim_then_queue_call(*args, **kwargs):
        claim = await real_claim(*args, **kwargs)
        if claim is not None and kwargs.get("agent") == "Local/101@agents/n":
            # In the same instant a live queue call rings agent 101.
            await r.pbx.set_agent("101", status=2, in_call=True)
            await until(lambda: not r.dialer.pipeline.agents.is_free("Local/101@agents/n"))
        return claim

    r.queue.claim = claim_then_queue_call
    cb = await r.missed("+79161230001", "new_connection")
    await r.pbx.set_agent("101", paused=False)
    await asyncio.sleep(0.2)
    assert r.originates() == []
    await r.pbx.set_agent("102", paused=False)
    await until(lambda: len(r.originates()) == 1)
    assert r.originates()[0].get("Channel") == "Local/102@agents"
    events = [(h.event, h.reason) for h in await r.queue.history(cb)][:4]
    assert events == [
        ("created", "abandon"),
        ("claimed", ""),
        ("released", "agent_busy"),
        ("claimed", ""),
    ]


async def test_an_agent_is_used_when_their_wrapup_ends_not_at_the_next_tick(rig) -> None:
    r = await rig({"101": ["sales"]}, dispatch={"tick_seconds": 600, "wrapup_seconds": 5})
    agent = "Local/101@agents/n"
    await r.pbx.set_agent("101", status=2, in_call=True)  # a queue call
    await until(lambda: not r.dialer.pipeline.agents.is_free(agent))
    await r.missed("+79161230001", "new_connection")
    await asyncio.sleep(0.1)  # the dispatcher looked, found nobody and went to sleep
    await r.pbx.set_agent("101", status=1, in_call=False)
    await until(lambda: r.dialer.pipeline.agents.agents[agent].last_call_end > 0)
    call_end = r.dialer.pipeline.agents.agents[agent].last_call_end
    wrapup = r.dialer.pipeline.agents.agents[agent].wrapup(5)
    await until(lambda: r.originates(), timeout=120 / SPEED)
    assert r.clock.now() - call_end < wrapup + 30  # a tick would have been 600 s


async def test_an_agent_whose_wrapup_ends_during_a_pass_is_used_right_after_it(rig) -> None:
    r = await rig(
        {"101": ["support"], "102": ["sales"]}, dispatch={"tick_seconds": 600, "wrapup_seconds": 5}
    )
    dispatcher, book = r.dialer.dispatcher, r.dialer.pipeline.agents
    support, sales = "Local/101@agents/n", "Local/102@agents/n"
    await r.pbx.set_agent("102", status=2, in_call=True)
    await until(lambda: not book.is_free(sales))
    dispatcher.paused = True
    await r.missed("+79161230001", "new_connection")
    real_claim = r.queue.claim
    slow_for = 20.0  # clock seconds the support agent's claim takes, finding nothing

    async def slow_claim_for_support(*args, **kwargs):
        if kwargs.get("agent") == support:
            await r.clock.sleep(slow_for)
        return await real_claim(*args, **kwargs)

    r.queue.claim = slow_claim_for_support
    await r.pbx.set_agent("102", status=1, in_call=False)  # the sales agent's wrap-up begins
    await until(lambda: book.agents[sales].last_call_end > 0)
    rest_ends = book.agents[sales].last_call_end + book.agents[sales].wrapup(5)
    assert rest_ends - r.clock.now() < slow_for
    dispatcher.paused = False
    dispatcher.kick("test")  # a pass: only the support agent is free, and its claim is slow
    # The sales agent's rest ends during that pass; nothing else happens after it.
    await until(lambda: r.originates(), timeout=3 * slow_for / SPEED + 1)
    assert r.originates()[0].get("Channel") == "Local/102@agents"


async def test_outside_calling_hours_nothing_is_dialled(rig) -> None:
    import datetime as dt

    today = dt.datetime.now(dt.timezone(dt.timedelta(hours=3))).date()
    r = await rig({"101": ["sales"]}, hours={"timezone": "Europe/Moscow", "holidays": [str(today)]})
    cb = await r.missed("+79161230001", "new_connection")
    assert (await r.state_of(cb)).state == State.SCHEDULED  # waits for the next opening
    await r.queue.call_now(cb, actor="olga")  # even when pushed to the head
    r.dialer.dispatcher.kick()
    await asyncio.sleep(0.3)
    assert r.originates() == []
    assert r.dialer.dispatcher.can_dispatch() == (False, "outside_calling_hours")


async def test_a_number_on_a_call_with_us_is_not_called_at_the_same_time(rig) -> None:
    from .helpers.captures import load

    r = await rig({"101": ["sales"]})
    r.dialer.dispatcher.paused = True
    cb = await r.missed("+79161234561", "new_connection")
    # The same subscriber calls in again right now (the recorded abandon, live).
    frames = [
        x["raw"]
        for x in load(FIXTURES / "abandon_in_queue.jsonl")
        if x["dir"] == "in" and x["raw"].startswith("Event:")
    ]
    join = next(i for i, f in enumerate(frames) if f.startswith("Event: QueueCallerJoin"))
    for frame in frames[: join + 1]:
        await r.server.send_raw(frame.encode())
    await until(lambda: r.dialer.pipeline.tracker.active_numbers() == {"+79161234561"})
    r.dialer.dispatcher.paused = False
    r.dialer.dispatcher.kick()
    await asyncio.sleep(0.3)
    assert r.originates() == []
    for frame in frames[join + 1 :]:
        await r.server.send_raw(frame.encode())
    await until(lambda: len(r.originates()) == 1)
    assert (await r.state_of(cb)).missed_count == 2


async def test_a_callback_served_while_being_claimed_is_never_dialled(rig) -> None:
    r = await rig({"101": ["sales"]})
    r.dialer.dispatcher.paused = True
    cb = await r.missed("+79161230001", "new_connection")
    real_claim = r.queue.claim

    async def claim_while_served(*args, **kwargs):
        claim = await real_claim(*args, **kwargs)
        if claim is not None:
            # The customer got through to an agent at this very moment.
            await r.queue.resolve_number(claim.callback.number, "served_inbound")
        return claim

    r.queue.claim = claim_while_served
    r.dialer.dispatcher.paused = False
    r.dialer.dispatcher.kick()
    await asyncio.sleep(0.4)
    assert r.originates() == []
    final = await r.state_of(cb)
    assert (final.state, final.reason) == (State.DONE, "served_inbound")
    assert r.dialer.pipeline.agents.is_free("Local/101@agents/n")


async def test_a_reconnect_during_an_originate_never_calls_anyone_twice(rig) -> None:
    r = await rig({"101": ["sales"]})

    async def crash(session, message) -> None:
        session.abort()  # Asterisk took the Originate; the link died before the answer

    r.server.on_action("Originate", crash)
    cb = await r.missed("+79161230001", "new_connection")
    await until(lambda: len(r.originates()) == 1)
    await until(lambda: r.server.logins >= 2, timeout=5)
    final = await r.wait_state(cb, State.SCHEDULED, timeout=5)
    assert final.reason == "outcome_unknown"
    assert final.next_at > r.clock.now() + 60  # not again at once
    await asyncio.sleep(0.3)
    assert len(r.originates()) == 1
    assert r.server.actions_named("Status")  # it asked Asterisk instead of guessing


async def test_max_concurrent_limits_callbacks_in_progress(rig) -> None:
    r = await rig({"101": ["sales"], "102": ["sales"]}, dispatch={"max_concurrent": 1})
    r.pbx.default_outcome = "answered"
    await r.missed("+79161230001", "new_connection")
    await r.missed("+79161230011", "new_connection")
    await until(lambda: len(r.originates()) == 1)
    await asyncio.sleep(0.05)
    assert len(r.originates()) == 1
    assert len(r.dialer.dispatcher.inflight) == 1
    await until(lambda: len(r.originates()) == 2, timeout=5)


async def test_pause_and_resume(rig) -> None:
    r = await rig({"101": ["sales"]})
    await r.dialer.dispatcher.pause("olga", "meeting")
    await r.missed("+79161230001", "new_connection")
    await asyncio.sleep(0.2)
    assert r.originates() == []
    control = await r.dialer.redis.hgetall(r.queue.keys.control())
    assert control[b"paused"] == b"1" and control[b"by"] == b"olga"
    await r.dialer.dispatcher.resume("olga")
    await until(lambda: len(r.originates()) == 1)


async def test_customer_first_dials_the_customer_and_names_the_agent(rig) -> None:
    r = await rig({"101": ["sales"]}, dispatch={"mode": "customer_first"})

    async def busy_customer(session, message) -> None:
        action_id = message.get("ActionID")
        session.write(
            encode_message(
                [
                    ("Response", "Success"),
                    ("ActionID", action_id),
                    ("Message", "Originate successfully queued"),
                ]
            )
        )
        session.write(
            encode_message(
                [
                    ("Event", "OriginateResponse"),
                    ("Privilege", "call,all"),
                    ("ActionID", action_id),
                    ("Response", "Failure"),
                    ("Channel", message.get("Channel")),
                    ("Context", message.get("Context")),
                    ("Exten", message.get("Exten")),
                    ("Reason", "5"),
                    ("Uniqueid", "<unknown>"),
                    ("CallerIDNum", "<unknown>"),
                    ("CallerIDName", "<unknown>"),
                ]
            )
        )

    r.server.on_action("Originate", busy_customer)
    cb = await r.missed("+79161230001", "new_connection")
    await until(lambda: r.originates())
    sent = r.originates()[0]
    assert (sent.get("Channel"), sent.get("Context"), sent.get("Exten")) == (
        "Local/79161230001@callback-customer/n",
        "callback-agent",
        "101",
    )
    assert "CALLBACK_AGENT=Local/101@agents" in sent.getall("Variable")
    final = await r.wait_state(cb, State.SCHEDULED)
    assert (final.reason, final.attempts) == ("busy", 1)


# ---------------------------------------------------------------- customer first, recorded


def recorded_customer_first_talk(callback: str) -> float:
    """customer_first.jsonl: from the agent answering (DialEnd ANSWER of callback-agent's
    Dial) to the first hangup of a channel the Originate created (ChannelId, OtherChannelId):
    how long the customer and the agent talked as Asterisk showed it."""
    from .helpers.captures import load

    sent = next(
        FrameDecoder().feed(x["raw"].encode())[0]
        for x in load(FIXTURES / "customer_first.jsonl")
        if x["dir"] == "out" and f"CALLBACK_ID={callback}\r\n" in x["raw"]
    )
    ours = {sent.get("ChannelId"), sent.get("OtherChannelId")}
    answered = ended = None
    for x in load(FIXTURES / "customer_first.jsonl"):
        if x["dir"] != "in" or not x["raw"].startswith(("Event: DialEnd", "Event: Hangup\r")):
            continue
        m = FrameDecoder().feed(x["raw"].encode())[0]
        if m.event == "DialEnd" and m.get("Uniqueid") == sent.get("ChannelId"):
            if m.get("Context") == "callback-agent" and m.get("DialStatus") == "ANSWER":
                answered = x["t"]
        elif m.event == "Hangup" and m.get("Uniqueid") in ours and ended is None:
            ended = x["t"]
    assert answered is not None and ended is not None
    return ended - answered


async def test_customer_first_customer_then_agent_answering_is_one_call_done_with_its_talk(
    rig,
) -> None:
    r = await rig({"101": ["sales"]}, dispatch={"mode": "customer_first"}, speed=10)
    cb = await r.missed("+79161230001", "new_connection")
    final = await r.wait_state(cb, State.DONE, timeout=5)
    [attempt] = final.attempt_log
    assert (final.reason, final.attempts, attempt.outcome) == ("called_back", 1, "answered")
    talk = recorded_customer_first_talk("cb-1")
    assert talk > 5  # the whole talk: our channels stay up until the customer hangs up
    assert attempt.talk_seconds == pytest.approx(talk, abs=1.0)
    # The recorded call played to its end, the agent free again: nobody was called twice.
    await until(lambda: not r.pbx.playing)
    await until(lambda: r.dialer.pipeline.agents.is_free("Local/101@agents/n"), timeout=5)
    r.dialer.dispatcher.kick("test")
    await asyncio.sleep(0.2)
    assert len(r.originates()) == 1
    assert r.pbx.played == [(cb, "answered")]


@pytest.mark.parametrize(
    ("scenario", "reason"),
    [("busy", "busy"), ("congestion", "congestion"), ("customer_no_answer", "no_answer")],
)
async def test_customer_first_a_customer_who_did_not_answer_is_retried_for_what_happened(
    rig, scenario, reason
) -> None:
    # Asterisk said Reason 0 for all three (with congestion before the DialEnd that says why).
    r = await rig({"101": ["sales"]}, dispatch={"mode": "customer_first"})
    r.pbx.default_outcome = scenario
    cb = await r.missed("+79161230001", "new_connection")
    final = await r.wait_state(cb, State.SCHEDULED, timeout=5)
    assert (final.reason, final.attempts) == (reason, 1)
    assert [(a.outcome, a.counted) for a in final.attempt_log] == [(reason, True)]
    assert len(r.originates()) == 1


async def test_customer_first_an_agent_who_never_answers_costs_the_customer_no_attempt(
    rig,
) -> None:
    r = await rig({"101": ["sales"]}, dispatch={"mode": "customer_first"})
    r.pbx.default_outcome = "agent_no_answer"
    cb = await r.missed("+79161230001", "new_connection")
    await until(lambda: r.originates())
    r.dialer.dispatcher.paused = True  # a released callback would be dialled again at once
    final = await r.wait_state(cb, State.PENDING, timeout=5)
    await until(lambda: not r.pbx.playing)
    final = await r.state_of(cb)
    assert (final.state, final.reason, final.attempts) == (State.PENDING, "agent_no_answer", 0)
    views = {v.interface: v.state for v in r.dialer.pipeline.agents.views()}
    assert views["Local/101@agents/n"] == "cooldown"
    assert len(r.originates()) == 1


async def test_a_full_trunk_holds_its_callbacks_while_others_go_out(rig) -> None:
    r = await rig(
        {"101": ["sales"], "102": ["sales"], "103": ["sales"]},
        dispatch={
            "trunks": [
                {"name": "mobile", "max_calls": 1, "numbers": ["+79*"]},
                {"name": "city", "max_calls": 5, "numbers": ["*"]},
            ]
        },
    )
    r.dialer.dispatcher.paused = True
    await r.missed("+79161230001", "new_connection", ago=300)
    await r.missed("+79161230011", "new_connection", ago=200)
    await r.missed("+74951230001", "new_connection", ago=100)
    r.dialer.dispatcher.paused = False
    r.dialer.dispatcher.kick()
    await until(lambda: len(r.originates()) == 2)
    await asyncio.sleep(0.05)
    exts = sorted(o.get("Exten") for o in r.originates()[:2])
    assert exts == ["74951230001", "79161230001"]  # one mobile (its limit), the city one
    variables = sorted(o.getall("Variable")[2] for o in r.originates()[:2])
    assert variables == ["CALLBACK_TRUNK=city", "CALLBACK_TRUNK=mobile"]


async def test_stopping_mid_call_settles_attempts_instead_of_abandoning_their_claims(rig) -> None:
    # At 10x: at 50x a loop stalled under load for the tens of ms between the recorded
    # answer and hang-up lets the call end before the stop, measured as a short call.
    r = await rig({"101": ["sales"], "102": ["sales"]}, speed=10)
    r.pbx.outcome_for = {"79161230001": "answered", "79161230011": "agent_no_answer"}
    talking = await r.missed("+79161230001", "new_connection", ago=300)
    ringing = await r.missed("+79161230011", "new_connection", ago=200)
    await until(lambda: len(r.originates()) == 2)
    flights = r.dialer.dispatcher.inflight
    await until(
        lambda: flights.get(talking) is not None and flights[talking].stage.value == "talking",
        timeout=5,
    )
    await r.dialer.dispatcher.stop(drain_timeout=0.05)
    done = await r.state_of(talking)
    assert (done.state, done.reason) == (State.DONE, "called_back")
    back = await r.state_of(ringing)
    assert (back.state, back.reason, back.attempts) == (State.SCHEDULED, "dialer_stopped", 0)
    hung_up = {m.get("Channel") for m in r.server.actions_named("Hangup")}
    assert any(channel.startswith(f"cbd-{ringing}-") for channel in hung_up)


async def test_a_call_that_ends_during_a_redis_outage_is_recorded_once_redis_is_back(
    rig, own_redis
) -> None:
    """The customer is called back and talks while Redis is frozen for longer than a lease:
    the outcome waits, is stored when Redis returns, and nobody is called a second time."""
    r = await rig({"101": ["sales"]}, redis_at=own_redis.url, redis={"socket_timeout": 0.2})
    cb = await r.missed("+79161230001", "new_connection")
    await until(lambda: r.originates())
    own_redis.pause()
    try:
        lease = r.dialer.config.queue.lease_seconds
        await asyncio.sleep(1.5 * lease / SPEED)
        flight = r.dialer.dispatcher.inflight.get(cb)
        assert flight is not None and flight.outcome is not None
        assert flight.outcome.reason == "answered"
    finally:
        own_redis.resume()
    final = await r.wait_state(cb, State.DONE, timeout=5)
    assert (final.reason, final.attempts) == ("called_back", 1)
    await asyncio.sleep(60 / SPEED)  # housekeeping and a dispatch pass or two
    assert len(r.originates()) == 1
    assert (await r.state_of(cb)).state == State.DONE


async def test_an_overdue_retry_does_not_keep_a_paused_dispatcher_spinning(rig) -> None:
    r = await rig({"101": ["sales"]}, dispatch={"tick_seconds": 5})
    dispatcher = r.dialer.dispatcher
    dispatcher.paused = True
    cb = await r.missed("+79161230001", "new_connection")
    claim = await r.queue.claim(["new_connection"], claimer="test")
    await r.queue.release(claim, "test", not_before=r.clock.now() + 1)
    assert (await r.state_of(cb)).state == State.SCHEDULED
    passes = 0
    original = dispatcher.dispatch_pass

    async def counted() -> int:
        nonlocal passes
        passes += 1
        return await original()

    dispatcher.dispatch_pass = counted
    await asyncio.sleep(60 / SPEED)  # a simulated minute, the retry overdue for all of it
    # One pass when the retry falls due, then one per five-second tick: about 13. A loop
    # waking for a callback already due runs thousands.
    assert passes <= 20, passes
    assert r.originates() == []


def _listed(
    callback_id: str, uid: str, channel: str, *, up: bool, bridge: str = "", linkedid: str = ""
) -> list:
    """One CoreShowChannel item as Asterisk 22 writes it (main/manager.c), for a channel of a
    callback call: its CALLBACK_ID from manager.conf's channelvars ("" for the customer's
    trunk channel, which the Dial does not give it)."""
    return [
        ("Event", "CoreShowChannel"),
        ("Channel", channel),
        ("ChannelState", "6" if up else "5"),
        ("ChannelStateDesc", "Up" if up else "Ringing"),
        ("Uniqueid", uid),
        ("Linkedid", linkedid or uid.removesuffix("-2")),
        (
            "ChanVariable",
            "CALLBACK_CATEGORY=new_connection" if callback_id else "CALLBACK_CATEGORY=",
        ),
        ("ChanVariable", f"CALLBACK_ID={callback_id}"),
        ("Application", "Dial" if up else "AppDial"),
        ("ApplicationData", ""),
        ("Duration", "00:00:20"),
        ("BridgeId", bridge),
    ]


async def test_a_call_a_killed_run_left_talking_is_adopted_and_its_outcome_recorded_once(
    rig,
) -> None:
    r = await rig({"101": ["sales"]}, start=False, speed=10.0)
    cb = await r.missed("+79161230001", "new_connection")
    # What the killed run left in Redis: its claim, the call in the talking stage 20 s ago.
    old = await r.queue.claim(["new_connection"], claimer="old-run", agent="Local/101@agents/n")
    talk_began = r.clock.now() - 20
    await r.queue.renew(old, stage=Stage.TALKING, agent="Local/101@agents/n")
    await r.dialer.redis.hset(r.queue.keys.callback(cb), "stage_at", f"{talk_began:.3f}")
    uid = f"cbd-{cb}-1-abcdef"
    listing = [
        _listed(cb, uid, "Local/101@agents-00000007;1", up=True, bridge="br-1"),
        _listed(cb, uid + "-2", "Local/101@agents-00000007;2", up=True),
        _listed("", "1796115604.30", "IAX2/carrier-1234", up=True, bridge="br-1", linkedid=uid),
    ]

    async def channels(session, message) -> None:
        items = listing if message.get("Action") == "CoreShowChannels" else []
        session.write(r.server.list_response("coreshowchannels", message.get("ActionID"), items))

    r.server.on_action("CoreShowChannels", channels)
    await r.dialer.start()
    await until(lambda: cb in r.dialer.dispatcher.inflight)
    attempt = r.dialer.dispatcher.inflight[cb]
    assert attempt.adopted_call and attempt.stage is Stage.TALKING
    assert attempt.view(r.clock.now())["adopted"] is True
    held = await r.queue.get(cb)
    assert held.state is State.DIALING and held.claimed_by == r.dialer.dispatcher.name
    assert [e.event for e in await r.queue.history(cb)][-1] == "adopted"
    # The customer hangs up 5 s later: the outcome is ours to record, as if we had dialled.
    await asyncio.sleep(0.5)
    listing.clear()
    r.server.broadcast_nowait(
        encode_message(
            [
                ("Event", "Hangup"),
                ("Channel", "IAX2/carrier-1234"),
                ("Uniqueid", "1796115604.30"),
                ("Linkedid", uid),
                ("Cause", "16"),
            ]
        )
    )
    r.server.broadcast_nowait(
        encode_message(
            [
                ("Event", "Hangup"),
                ("Channel", "Local/101@agents-00000007;1"),
                ("Uniqueid", uid),
                ("Linkedid", uid),
                ("Cause", "16"),
            ]
        )
    )
    done = await r.wait_state(cb, State.DONE)
    assert [(a.agent, a.outcome) for a in done.attempt_log] == [("Local/101@agents/n", "answered")]
    assert 20 <= done.attempt_log[0].talk_seconds <= 40
    assert r.originates() == []  # nobody was called a second time


async def test_a_take_over_and_a_reconnect_adopting_at_once_take_each_call_over_once(
    rig,
) -> None:
    # Found on the lab: the take-over and the AMI ready hook each adopted the same two calls,
    # the second claim token left the first attempts unable to record, and nothing was stored.
    r = await rig({"101": ["sales"]}, start=False, speed=10.0)
    cb = await r.missed("+79161230001", "new_connection")
    await r.queue.claim(["new_connection"], claimer="old-run", agent="Local/101@agents/n")
    uid = f"cbd-{cb}-1-abcdef"
    listing: list = []

    async def channels(session, message) -> None:
        async def answer() -> None:
            await asyncio.sleep(0.1)  # a slow Asterisk: both listings come back together
            session.write(
                r.server.list_response("coreshowchannels", message.get("ActionID"), listing)
            )

        answers.append(asyncio.get_running_loop().create_task(answer()))

    answers: list = []

    r.server.on_action("CoreShowChannels", channels)
    await r.dialer.start()
    await until(lambda: r.dialer.dispatcher.synced)
    listing.append(_listed(cb, uid, "Local/101@agents-00000007;1", up=True, bridge="br-1"))
    d = r.dialer.dispatcher
    assert await asyncio.gather(d.adopt_calls(), d.adopt_calls()) in ([1, 0], [0, 1])
    listing.clear()
    r.server.broadcast_nowait(
        encode_message([("Event", "Hangup"), ("Uniqueid", uid), ("Linkedid", uid)])
    )
    done = await r.wait_state(cb, State.DONE, State.SCHEDULED)
    assert len(done.attempt_log) == 1


async def test_a_call_left_up_for_a_finished_callback_keeps_its_number_from_being_dialled(
    rig,
) -> None:
    r = await rig({"101": ["sales"]}, start=False)
    cb = await r.missed("+79161230001", "new_connection")
    claim = await r.queue.claim(["new_connection"], claimer="old-run", agent="Local/102@x")
    # A supervisor cancelled it while its call went on; then the number called again.
    await r.queue.cancel(cb, "test", actor="web:olga")
    again = await r.missed("+79161230001", "new_connection", ago=5)
    assert again != cb and claim is not None
    listing = [_listed(cb, f"cbd-{cb}-1-abcdef", "Local/102@agents-00000007;1", up=True)]

    async def channels(session, message) -> None:
        session.write(r.server.list_response("coreshowchannels", message.get("ActionID"), listing))

    r.server.on_action("CoreShowChannels", channels)
    await r.dialer.start()
    await until(lambda: r.dialer.dispatcher.foreign_numbers == {"+79161230001"})
    assert cb not in r.dialer.dispatcher.inflight
    r.dialer.dispatcher.kick()
    await asyncio.sleep(0.3)
    assert r.originates() == []
    listing.clear()  # that call ended; the next look notices
    await r.dialer.dispatcher.adopt_calls()
    await until(lambda: len(r.originates()) == 1, timeout=5)


# ---------------------------------------------------------------- the queue's news


async def test_a_missed_call_wakes_the_dispatcher_without_anyone_kicking_it(rig) -> None:
    r = await rig({"101": ["sales"]}, dispatch={"tick_seconds": 600})
    await asyncio.sleep(0.1)  # the dispatcher looked, found nothing and sleeps for a tick
    cb = await r.missed("+79161230001", "new_connection")
    # A tick would be 600 s (12 s here); the news of the write comes well within half of it,
    # even on a loaded machine.
    await until(lambda: r.originates(), timeout=300 / SPEED)
    assert r.originates()[0].getall("Variable")[0] == f"CALLBACK_ID={cb}"


async def test_call_now_from_the_page_dials_a_waiting_callback_at_once(rig) -> None:
    r = await rig({"101": ["sales"]}, dispatch={"tick_seconds": 600})
    # Paused while the callback is put off for an hour: the missed call's news would wake the
    # dispatcher, and it would take the callback before this test could.
    await r.dialer.dispatcher.pause("test")
    cb = await r.missed("+79161230001", "new_connection")
    claim = await r.queue.claim(["new_connection"], claimer="test")
    await r.queue.release(claim, "test", not_before=r.clock.now() + 3600)
    await r.dialer.dispatcher.resume("test")
    await asyncio.sleep(0.2)
    assert r.originates() == []
    # What the page's "call now" does: one queue write, no call to the dispatcher.
    await r.queue.call_now(cb, actor="web:olga")
    await until(lambda: r.originates(), timeout=300 / SPEED)  # a tick would be 12 s
    assert r.originates()[0].getall("Variable")[0] == f"CALLBACK_ID={cb}"


@pytest.mark.parametrize("closed_by", ["cancelled", "served_inbound"])
async def test_a_callback_closed_while_being_dialled_has_its_call_hung_up(rig, closed_by) -> None:
    # The recorded customer rings for 6 s: at 50x that is 0.12 s, too short a window to close
    # the callback in on a loaded machine; at 5x it is 1.2 s.
    speed = 5.0
    r = await rig({"101": ["sales"]}, speed=speed)
    r.pbx.default_outcome = "customer_no_answer"  # the customer's phone rings for a while
    cb = await r.missed("+79161230001", "new_connection")
    attempts = r.dialer.dispatcher.inflight
    await until(
        lambda: cb in attempts and attempts[cb].stage.value == "ringing_customer", timeout=5
    )
    # A supervisor cancels it on the page, or the customer gets through on their own: a
    # queue write, and nothing else is told.
    if closed_by == "cancelled":
        await r.queue.cancel(cb, "asked by email", actor="web:olga")
    else:
        await r.queue.resolve_number("+79161230001", "served_inbound")
    await until(lambda: cb not in attempts, timeout=2)
    hung_up = {m.get("Channel") for m in r.server.actions_named("Hangup")}
    assert any(channel.startswith(f"cbd-{cb}-") for channel in hung_up)
    await asyncio.sleep(8 / speed)  # past the recorded customer's ringing
    final = await r.state_of(cb)
    assert (final.state.value, final.attempts) == (
        "cancelled" if closed_by == "cancelled" else "done",
        0,
    )
    assert r.dialer.metrics.outcomes.values == {}  # abandoned: no outcome of its own
    assert len(r.originates()) == 1


async def test_a_shutdown_with_no_hangup_before_it_cuts_a_talking_call_as_not_reached(
    rig,
) -> None:
    # Asterisk hangs its channels up before Shutdown (restart_mid_talk.jsonl); should a
    # Hangup be lost, the Shutdown alone still ends the talk at the moment of the cut.
    r = await rig({"101": ["sales"]}, start=False, speed=10.0)
    cb = await r.missed("+79161230001", "new_connection")
    await r.queue.claim(["new_connection"], claimer="old-run", agent="Local/101@agents/n")
    uid = f"cbd-{cb}-1-abcdef"
    listing = [_listed(cb, uid, "Local/101@agents-00000007;1", up=True, bridge="br-1")]

    async def channels(session, message) -> None:
        session.write(r.server.list_response("coreshowchannels", message.get("ActionID"), listing))

    r.server.on_action("CoreShowChannels", channels)
    await r.dialer.start()
    await until(lambda: cb in r.dialer.dispatcher.inflight)
    r.server.broadcast_nowait(
        encode_message([("Event", "Shutdown"), ("Shutdown", "Cleanly"), ("Restart", "True")])
    )
    cut = await r.wait_state(cb, State.SCHEDULED)
    assert [(a.outcome, a.counted) for a in cut.attempt_log] == [("short_call", True)]
