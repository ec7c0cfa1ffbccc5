"""The agent whisper: the facts the dialer hands the dialplan (integers and a language from a
fixed list, as Originate variables), when each mode whispers, and the generated contexts that
say it on the agent's channel before the customer is dialled."""

from __future__ import annotations

import dataclasses
import re

import pytest
from simpbx.ami import PbxAmi
from simpbx.clock import run_for
from simpbx.customers import PerNumber
from simpbx.model import CallerScript, CustomerResponse, FixedAgent, PbxSpec
from simpbx.pbx import SimPbx
from simpbx.recording import Recorder

from callback_dialer.app import build_dialer
from callback_dialer.clock import ScaledClock
from callback_dialer.config import ConfigError, parse_config
from callback_dialer.dispatch.origination import OriginateInputError, plan_originate
from callback_dialer.dispatch.strategies import strategy_for
from callback_dialer.dispatch.whisper import WhisperFacts, whisper_facts
from callback_dialer.ivr.dialplan import render_dialplan
from callback_dialer.phone import NumberPolicy
from callback_dialer.queue.models import Callback, Source, State

from .helpers.compare import read_messages
from .helpers.wait import until

NOW = 1_800_000_000.0


def _callback(first_missed_ago: float, calls: int) -> Callback:
    return Callback(
        id="cb-5",
        number="+79161230001",
        category="support",
        source=Source.ABANDON,
        state=State.DIALING,
        reason="",
        first_missed=NOW - first_missed_ago,
        last_missed=NOW - 30,
        missed_count=calls,
        attempts=0,
        score=0,
        created_at=NOW - first_missed_ago,
        updated_at=NOW,
    )


def _context(text: str, name: str) -> list[str]:
    match = re.search(rf"^\[{re.escape(name)}\]\n(.*?)(?=^\[|\Z)", text, re.S | re.M)
    assert match, f"no [{name}]"
    return [line for line in match.group(1).splitlines() if line and not line.startswith(";")]


# ---------------------------------------------------------------- the facts


@pytest.mark.parametrize(
    ("ago", "calls", "minutes", "hours"),
    [
        (20, 1, 0, 0),
        (12 * 60 + 59, 3, 12, 0),
        (119 * 60, 2, 119, 0),  # under two hours: still minutes
        (187 * 60, 4, 187, 3),  # from two hours on: whole hours said
    ],
)
def test_agent_first_whispers_calls_and_time_since_the_first_missed_call(
    ago, calls, minutes, hours
) -> None:
    config = parse_config({}, "test")
    facts = whisper_facts(config.whisper, "agent_first", _callback(ago, calls), "PJSIP/101", NOW)
    assert facts == WhisperFacts(calls=calls, minutes=minutes, hours=hours, language="")


def test_whisper_off_or_customer_first_by_default_hands_over_nothing_to_say() -> None:
    cb = _callback(600, 2)
    off = parse_config({"whisper": {"enabled": False}}, "test").whisper
    assert whisper_facts(off, "agent_first", cb, "PJSIP/101", NOW) is None
    default = parse_config({}, "test").whisper
    assert whisper_facts(default, "customer_first", cb, "PJSIP/101", NOW) is None
    on = parse_config({"whisper": {"customer_first": True}}, "test").whisper
    assert whisper_facts(on, "customer_first", cb, "PJSIP/101", NOW) is not None


def test_the_language_is_the_agents_own_unless_configured() -> None:
    whisper = parse_config(
        {"whisper": {"language": "en", "agent_languages": {"PJSIP/102": "ru"}}}, "test"
    ).whisper
    cb = _callback(600, 2)
    assert whisper_facts(whisper, "agent_first", cb, "PJSIP/101", NOW).language == "en"
    assert whisper_facts(whisper, "agent_first", cb, "PJSIP/102", NOW).language == "ru"
    with pytest.raises(ConfigError) as caught:
        parse_config({"whisper": {"agent_languages": {"PJSIP/103": "de"}}}, "test")
    assert caught.value.problems[0].startswith("whisper.agent_languages.PJSIP/103: ")


def _plan(config, whisper):
    return plan_originate(
        config,
        strategy_for(config.dispatch),
        callback_id="cb-5",
        category="support",
        number=NumberPolicy(config.phone).parse_e164("+79161230001"),
        interface="PJSIP/101",
        trunk="default",
        attempt_no=1,
        whisper=whisper,
    )


def test_the_originate_carries_the_facts_as_whole_numbers_only() -> None:
    config = parse_config({}, "test")
    plan = _plan(config, WhisperFacts(calls=3, minutes=12, hours=0, language="ru"))
    assert plan.fields["Variable"][3:] == [
        "CALLBACK_WHISPER=1",
        "CALLBACK_CALLS=3",
        "CALLBACK_WAITED=12",
        "CALLBACK_WAITED_HOURS=0",
        "CALLBACK_LANG=ru",
    ]
    assert _plan(config, None).fields["Variable"][3:] == ["CALLBACK_WHISPER=0"]
    for bad in (
        WhisperFacts(calls="3,Set(X=1)", minutes=1, hours=0),  # type: ignore[arg-type]
        WhisperFacts(calls=-1, minutes=1, hours=0),
        WhisperFacts(calls=True, minutes=1, hours=0),
        WhisperFacts(calls=1, minutes=1, hours=0, language="ru)"),
    ):
        with pytest.raises(OriginateInputError):
            _plan(config, bad)


# ---------------------------------------------------------------- the dialplan


def test_agent_first_says_the_whisper_on_the_agents_channel_before_any_dial() -> None:
    lines = _context(render_dialplan(parse_config({}, "test")), "callback-outbound")
    guard = next(i for i, line in enumerate(lines) if "CALLBACK_WHISPER" in line)
    gosub = next(i for i, line in enumerate(lines) if "Gosub(callback-whisper" in line)
    first_dial = next(i for i, line in enumerate(lines) if ",Dial(" in line)
    assert guard < gosub < first_dial
    assert lines[guard] == ' same => n,GotoIf($["${CALLBACK_WHISPER}" != "1"]?trunk)'
    assert lines[gosub] == (
        " same => n,Gosub(callback-whisper,s,1(${CALLBACK_CATEGORY},${CALLBACK_WAITED},"
        "${CALLBACK_WAITED_HOURS},${CALLBACK_CALLS},${CALLBACK_LANG}))"
    )


def test_customer_first_whispers_through_dials_u_option_only_when_asked() -> None:
    lines = _context(render_dialplan(parse_config({}, "test")), "callback-agent")
    assert ' same => n,GotoIf($["${CALLBACK_WHISPER}" = "1"]?whisper)' in lines
    assert " same => n,Dial(${CALLBACK_AGENT},15)" in lines
    assert (
        " same => n(whisper),Dial(${CALLBACK_AGENT},15,U(callback-whisper^${CALLBACK_CATEGORY}"
        "^${CALLBACK_WAITED}^${CALLBACK_WAITED_HOURS}^${CALLBACK_CALLS}^${CALLBACK_LANG}))"
    ) in lines


def test_the_whisper_says_category_time_and_calls_and_returns() -> None:
    text = render_dialplan(parse_config({}, "test"))
    lines = _context(text, "callback-whisper")
    apps = [re.sub(r"^.*?,(\w+)\(.*$", r"\1", line) for line in lines]
    assert apps == [
        "ExecIf",
        "Playback",
        "Playback",
        "Playback",
        "GotoIf",
        "Gosub",
        "Goto",
        "Gosub",
        "Playback",
        "Gosub",
        "Return",
    ]
    assert " same => n,Playback(callback-category-${ARG1})" in lines
    counted = _context(text, "callback-say-counted")
    # SayNumber(n,) is refused by Asterisk 22 ("gender option is either 'f', 'm', 'c' or
    # 'n'") and hangs the agent's channel up: a gender only when one is given.
    assert counted[:4] == [
        'exten => s,1,GotoIf($["${ARG3}" != ""]?gender)',
        " same => n,SayNumber(${ARG1})",
        " same => n,Goto(noun)",
        " same => n(gender),SayNumber(${ARG1},${ARG3})",
    ]
    assert not any(re.search(r"SayNumber\([^)]*,\)", line) for line in lines + counted)
    assert counted[-1] == " same => n,Return()"


# ---------------------------------------------------------------- against the simulator


@pytest.fixture
async def sim_rig(make_config, redis_url, tmp_path):
    made = []

    async def build(**sections):
        # 25 times real time: a loaded machine stalls the loop for real milliseconds, which
        # must not become whole simulated seconds of an agent or customer leg.
        clock = ScaledClock(25.0)
        agents = tuple(
            dataclasses.replace(a, behaviour=FixedAgent(talk=60)) for a in PbxSpec().agents
        )
        pbx = SimPbx(
            clock,
            PbxSpec(agents=agents),
            customers=PerNumber({"79161230011": CustomerResponse("ANSWER", ring=2, talk=30)}),
        )
        recorder = Recorder(clock)
        pbx.listeners.append(recorder)
        ami = await PbxAmi.serve(pbx, secret="s3cret")
        config = make_config(
            ami={"port": ami.port, "secret": "s3cret", "reconnect_min_delay": 0.05},
            dispatch={"wrapup_seconds": 5, "tick_seconds": 5, **sections.pop("dispatch", {})},
            **sections,
        )
        dialer = build_dialer(
            config, clock=clock, redis_url=redis_url, spool=tmp_path / "spool.jsonl"
        )
        await dialer.start()
        await until(lambda: dialer.ami.authenticated and len(dialer.pipeline.agents.agents) == 3)
        made.append((pbx, dialer, ami))
        return pbx, dialer, recorder

    yield build
    for pbx, dialer, ami in made:
        await dialer.stop()
        await ami.stop()
        await pbx.close()


@pytest.mark.parametrize("enabled", [True, False])
async def test_a_callback_whispers_to_the_agent_before_the_customer_rings(sim_rig, enabled) -> None:
    pbx, dialer, recorder = await sim_rig(whisper={"enabled": enabled})
    for agent in ("101", "102"):
        pbx.scheduler.run(pbx.pause, agent, True, "lunch")
    pbx.place_call("+79161230011", CallerScript(choice="1", patience=15))
    await run_for(pbx.clock, 25)
    pbx.scheduler.run(pbx.pause, "101", False)

    async def done() -> bool:
        rows = await dialer.queue.finished_between(0, float("inf"))
        return any(c.state is State.DONE for c in rows)

    for _ in range(60):
        if await done():
            break
        await run_for(pbx.clock, 5)
    assert await done()
    events = read_messages(recorder.events())
    gosubs = [
        i
        for i, m in enumerate(events)
        if m.get("Event") == "Newexten" and m.get("Application") == "Gosub"
    ]
    [begin] = [
        i
        for i, m in enumerate(events)
        if m.get("Event") == "DialBegin" and m.get("Context") == "callback-outbound"
    ]
    if enabled:
        [gosub] = gosubs
        # The agent's channel says it, with the facts the dialer wrote, before the dial.
        assert gosub < begin
        assert events[gosub].get("Channel") == events[begin].get("Channel")
        category, waited, hours, calls, language = (
            re.fullmatch(r"callback-whisper,s,1\((.*)\)", events[gosub].get("AppData"))
            .group(1)
            .split(",")
        )
        assert (category, hours, calls, language) == ("new_connection", "0", "1", "")
        assert waited.isdigit()
    else:
        assert gosubs == []


async def test_customer_first_whispers_after_the_agent_answers_when_asked(sim_rig) -> None:
    pbx, dialer, recorder = await sim_rig(
        whisper={"customer_first": True}, dispatch={"mode": "customer_first"}
    )
    for agent in ("101", "102"):
        pbx.scheduler.run(pbx.pause, agent, True, "lunch")
    pbx.place_call("+79161230011", CallerScript(choice="1", patience=15))
    await run_for(pbx.clock, 25)
    pbx.scheduler.run(pbx.pause, "101", False)

    async def done() -> bool:
        rows = await dialer.queue.finished_between(0, float("inf"))
        return any(c.state is State.DONE for c in rows)

    for _ in range(60):
        if await done():
            break
        await run_for(pbx.clock, 5)
    assert await done()
    events = read_messages(recorder.events())
    [dial] = [
        m
        for m in events
        if m.get("Event") == "Newexten"
        and m.get("Context") == "callback-agent"
        and m.get("Application") == "Dial"
    ]
    assert dial.get("AppData").startswith("Local/101@agents,15,U(callback-whisper^new_connection^")
    [end] = [
        i
        for i, m in enumerate(events)
        if m.get("Event") == "DialEnd" and m.get("Context") == "callback-agent"
    ]
    whisper = [
        i
        for i, m in enumerate(events)
        if m.get("Event") == "Newexten" and m.get("Context") == "callback-whisper"
    ]
    assert whisper and whisper[-1] < end
    assert events[end].get("DialStatus") == "ANSWER"
