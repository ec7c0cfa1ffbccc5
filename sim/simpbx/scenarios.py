"""The captures' scenarios, scripted: the same callers doing the same things on the same PBX.

Each scenario of the recordings (tests/fixtures, ../shared/ami-captures; the IVR's overflow
choice 7 has none) as a script for the simulator; customer_first is the dialer's
customer-first Originates of tests/fixtures/customer_first.jsonl. ``play`` runs one on a
clock (a ManualClock by default, so it takes milliseconds) and returns the recording; fed to
the dialer, it must lead to the same conclusions as the real capture
(tests/test_sim_scenarios.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from callback_dialer.ami.asterisk import CALLBACK_AGENT_VAR, CALLBACK_ID_VAR, CATEGORY_VAR
from callback_dialer.ami.frames import AmiMessage, encode_message

from . import wire
from .amiserver import response
from .clock import Clock, ManualClock, run_for
from .customers import LastDigitCarrier
from .model import AgentSpec, CallerScript, IvrSpec, PbxSpec
from .originate import OriginateRequest, Origination
from .pbx import SimPbx
from .recording import Recorder

Script = Callable[[SimPbx, Recorder | None], None]

# The captures' clock: 2026-11-23 ~10:30 Moscow time.
CAPTURE_EPOCH = 1_795_345_800.0


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    script: Script
    duration: float
    spec: PbxSpec = field(default_factory=PbxSpec)


def _at(pbx: SimPbx, delay: float, fn: Callable[..., Any], *args: Any) -> None:
    pbx.scheduler.call_later(delay, fn, *args)


def _pause_all(pbx: SimPbx, reason: str) -> None:
    for agent in list(pbx.agents.values()):
        if agent.members:
            pbx.pause(agent.interface, True, reason)


def _unpause_all(pbx: SimPbx) -> None:
    for agent in list(pbx.agents.values()):
        if agent.members:
            pbx.pause(agent.interface, False)


def originate(
    pbx: SimPbx, fields: dict[str, str | list[str]], recorder: Recorder | None = None
) -> Origination:
    """Send the PBX an Originate as a client would (recorded as ``out``, answered ``in``)."""
    pairs: list[tuple[str, str]] = [("Action", "Originate")]
    for key, value in fields.items():
        if isinstance(value, list):
            pairs.extend((key, v) for v in value)
        else:
            pairs.append((key, value))
    message = AmiMessage.from_pairs(pairs)
    if recorder is not None:
        recorder.tap("out", encode_message(pairs))
        recorder.tap("in", response(message.get("ActionID"), "Originate successfully queued"))
    origination = Origination(pbx, OriginateRequest.from_message(message))
    pbx.scheduler.run(origination.start)
    return origination


# --------------------------------------------------------------------------- the scripts


def _abandon_in_queue(pbx: SimPbx, rec: Recorder | None) -> None:
    _pause_all(pbx, "lunch")
    _at(
        pbx,
        0.006,
        pbx.place_call,
        "+79161234561",
        CallerScript(choice="1", patience=8.25, name="Ivan Petrov"),
    )
    _at(pbx, 12.0, _unpause_all, pbx)


def _answered_by_agent(pbx: SimPbx, rec: Recorder | None) -> None:
    _at(pbx, 0.004, pbx.place_call, "89161234562", CallerScript(choice="2"))


def _hangup_in_ivr(pbx: SimPbx, rec: Recorder | None) -> None:
    _at(pbx, 0.004, pbx.place_call, "84951234563", CallerScript(choice="hangup", choice_after=3.98))


def _keypress_callback(pbx: SimPbx, rec: Recorder | None) -> None:
    _pause_all(pbx, "lunch")
    _at(pbx, 0.004, pbx.place_call, "+79031234564", CallerScript(choice="1", star_after=4.45))
    _at(pbx, 12.0, _unpause_all, pbx)


def _queue_timeout(pbx: SimPbx, rec: Recorder | None) -> None:
    # The capture's harness set QTIMEOUT for the occasion: a global VarSet, no channel.
    pbx.emit(wire.global_varset("QTIMEOUT", "5"))
    _pause_all(pbx, "lunch")
    _at(pbx, 0.004, pbx.place_call, "+79261234567", CallerScript(choice="3"))
    _at(pbx, 16.0, _unpause_all, pbx)
    _at(pbx, 16.01, pbx.emit, wire.global_varset("QTIMEOUT", "300"))


def _overflow(pbx: SimPbx, rec: Recorder | None) -> None:
    """Choice 7: sales (everyone there busy) does not answer in 4 s; support does."""
    pbx.pause("101", True, "lunch")
    pbx.pause("102", True, "lunch", queue="sales")
    _at(pbx, 0.004, pbx.place_call, "+79161234577", CallerScript(choice="7"))


def _overflow_unanswered(pbx: SimPbx, rec: Recorder | None) -> None:
    """Choice 7 with nobody free anywhere: the caller gives up in support."""
    _pause_all(pbx, "meeting")
    _at(pbx, 0.004, pbx.place_call, "+79161234578", CallerScript(choice="7", patience=9.0))


def _agent_states(pbx: SimPbx, rec: Recorder | None) -> None:
    _at(pbx, 0.004, pbx.pause, "102", True, "break")
    _at(pbx, 1.006, pbx.pause, "102", False)
    _at(pbx, 1.007, _login_104, pbx)
    _at(pbx, 2.009, pbx.remove_member, "104", "sales")


def _login_104(pbx: SimPbx) -> None:
    if pbx.agent("104") is None:
        pbx.add_agent(AgentSpec("104", (), membership="dynamic"))
    pbx.add_member("104", "sales")


def _callbacks(pbx: SimPbx, rec: Recorder | None) -> None:
    """The six Originates of the callbacks capture, with the same fields."""

    def cb(action_id: str, agent: str, number: str, callback: str, category: str) -> None:
        originate(
            pbx,
            {
                "ActionID": action_id,
                "Channel": f"Local/{agent}@agents",
                "Context": "callback-outbound",
                "Exten": number,
                "Priority": "1",
                "CallerID": f'"Callback {category}" <{number}>',
                "Variable": [
                    f"{CALLBACK_ID_VAR}={callback}",
                    f"{CATEGORY_VAR}={category}",
                    "AGENT_TALK=6",
                ],
                "Async": "true",
                "Timeout": "15000",
            },
            rec,
        )

    _at(pbx, 0.002, cb, "dialer-2", "101", "79161230001", "cb-1", "new_connection")
    _at(pbx, 0.003, cb, "dialer-3", "102", "79161230002", "cb-2", "support")
    _at(pbx, 0.004, cb, "dialer-4", "103", "79161230004", "cb-3", "billing")
    _at(pbx, 14.017, cb, "dialer-5", "109", "79161230001", "cb-4", "support")
    _at(pbx, 14.018, cb, "dialer-6", "101", "79161230003", "cb-5", "support")
    _at(
        pbx,
        14.0185,
        lambda: originate(
            pbx,
            {
                "ActionID": "dialer-7",
                "Channel": "Local/nosuch@nowhere",
                "Context": "callback-outbound",
                "Exten": "79161230001",
                "Priority": "1",
                "Variable": f"{CALLBACK_ID_VAR}=cb-6",
                "Async": "true",
                "Timeout": "5000",
            },
            rec,
        ),
    )


def _customer_first(pbx: SimPbx, rec: Recorder | None) -> None:
    """The five Originates of the customer_first capture: the dialer's customer-first form
    (Local/<number>@callback-customer/n, then callback-agent rings CALLBACK_AGENT)."""

    def cb(n: int, agent: str, number: str, category: str, label: str) -> None:
        channel_id = f"cbd-cb-{n}-1-{n:06x}"
        originate(
            pbx,
            {
                "ActionID": f"dialer-{n + 1}",
                "Channel": f"Local/{number}@{pbx.spec.customer_context}/n",
                "Context": "callback-agent",
                "Exten": agent,
                "Priority": "1",
                "CallerID": f'"Callback {label}" <{number}>',
                "Timeout": "30000",
                "Variable": [
                    f"{CALLBACK_ID_VAR}=cb-{n}",
                    f"{CATEGORY_VAR}={category}",
                    f"CALLBACK_TRUNK={pbx.spec.trunk}",
                    f"{CALLBACK_AGENT_VAR}=Local/{agent}@agents",
                ],
                "ChannelId": channel_id,
                "OtherChannelId": f"{channel_id}-2",
                "Async": "true",
            },
            rec,
        )

    def customers_stay(seconds: float) -> None:
        # The carrier's CUSTOMER_TALK global: how long an answering customer stays.
        pbx.customers = LastDigitCarrier(talk=seconds)

    _at(pbx, 0.004, cb, 1, "101", "79161230001", "new_connection", "New connection")
    _at(pbx, 0.005, cb, 2, "102", "79161230002", "support", "Support")
    _at(pbx, 0.008, cb, 3, "103", "79161230004", "billing", "Billing")
    _at(pbx, 14.0, customers_stay, 25.0)
    _at(pbx, 14.011, cb, 4, "109", "79161230001", "support", "Support")
    _at(pbx, 14.012, cb, 5, "101", "79161230003", "support", "Support")


# busy_hour, read off the capture: (arrival, number, key, seconds to choose, patience in the
# queue, talk before the caller hangs up). None: waits / lets the agent end the call.
BUSY_HOUR_CALLERS: tuple[tuple[float, str, str | None, float, float | None, float | None], ...] = (
    (0.005, "+79165550000", "2", 1.18, None, 5.25),
    (1.297, "+79165550001", "1", 1.18, None, 3.25),
    (3.441, "+79165550002", "1", 1.18, None, None),
    (5.109, "+79165550003", "hangup", 5.97, None, None),
    (5.685, "+79165550004", "3", 1.18, None, 0.2),
    (6.328, "+79165550005", "1", 1.18, None, None),
    (7.679, "+79165550006", "1", 1.18, None, None),
    (8.429, "+79165550007", "2", 1.18, None, None),
    (10.185, "+79165550008", "1", 1.18, None, None),
    (11.858, "+79165550009", "1", 1.18, 5.2, None),
    (12.454, "+79165550010", "1", 1.18, 5.2, None),
    (13.535, "+79165550011", "2", 1.18, None, None),
    (14.272, "+79165550012", "2", 1.18, None, 3.2),
    (16.406, "+79165550013", "2", 1.18, 3.3, None),
    (18.071, "+79165550014", "2", 1.18, 5.2, None),
    (19.317, "+79165550015", None, 6.0, None, 2.9),
    (19.945, "+79165550016", "1", 1.18, None, None),
    (20.859, "+79165550017", "2", 1.18, None, None),
    (22.215, "+79165550018", "2", 1.18, 12.3, None),
    (23.889, "+79165550019", "3", 1.18, 8.2, None),
    (24.990, "+79165550020", "1", 1.18, None, 4.2),
    (26.890, "+79165550021", "2", 1.18, 3.2, None),
    (28.540, "+79165550022", None, 6.0, 6.9, None),
    (30.793, "+79165550023", "2", 1.18, None, 1.2),
)


def _busy_hour(pbx: SimPbx, rec: Recorder | None) -> None:
    pbx.pause("103", True, "break")
    for at, number, key, after, patience, talk in BUSY_HOUR_CALLERS:
        script = CallerScript(choice=key, choice_after=after, patience=patience, talk=talk)
        _at(pbx, at, pbx.place_call, number, script)
    _at(pbx, 41.87, pbx.pause, "103", False)


def _timeout_spec() -> PbxSpec:
    # The capture's PBX ran this one with QTIMEOUT=5.
    return replace(PbxSpec(), ivr=IvrSpec(queue_timeout=5.0))


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "abandon_in_queue",
            "all agents paused; a caller picks 1, waits 8 s in sales, hangs up",
            _abandon_in_queue,
            14.0,
        ),
        Scenario(
            "answered_by_agent",
            "a caller picks 2 and is answered by agent 102 at once",
            _answered_by_agent,
            18.0,
        ),
        Scenario(
            "hangup_in_ivr",
            "a caller hangs up in the IVR before choosing anything",
            _hangup_in_ivr,
            6.0,
        ),
        Scenario(
            "keypress_callback",
            "a caller in sales presses * to ask for a callback",
            _keypress_callback,
            13.0,
        ),
        Scenario(
            "queue_timeout",
            "the queue times out after 5 s; CallbackRequested TIMEOUT",
            _queue_timeout,
            17.0,
            _timeout_spec(),
        ),
        Scenario(
            "overflow",
            "a caller picks 7: sales does not answer in 4 s, support does",
            _overflow,
            20.0,
        ),
        Scenario(
            "overflow_unanswered",
            "a caller picks 7 and gives up waiting in support",
            _overflow_unanswered,
            20.0,
        ),
        Scenario(
            "agent_states", "pause and unpause, a member added and removed", _agent_states, 4.0
        ),
        Scenario(
            "callbacks",
            "six Originates: answered, busy, congestion, agent never answers, "
            "customer never answers, a channel that cannot be created",
            _callbacks,
            54.0,
        ),
        Scenario(
            "customer_first",
            "five customer-first Originates: customer and agent answer, busy, congestion, "
            "the agent never answers, the customer never answers",
            _customer_first,
            54.0,
        ),
        Scenario(
            "busy_hour",
            "a minute of mixed traffic: 24 callers, 3 agents, one on a break",
            _busy_hour,
            70.0,
        ),
    )
}


async def play(
    scenario: Scenario | str,
    clock: Clock | None = None,
    *,
    pbx: SimPbx | None = None,
    start: float = CAPTURE_EPOCH,
) -> Recorder:
    """Run a scenario to its end and return what the PBX said (and was sent)."""
    if isinstance(scenario, str):
        scenario = SCENARIOS[scenario]
    clock = clock or ManualClock(start=start)
    own = pbx is None
    pbx = pbx or SimPbx(clock, scenario.spec)
    recorder = Recorder(clock)
    pbx.listeners.append(recorder)
    try:
        pbx.scheduler.run(scenario.script, pbx, recorder)
        await run_for(clock, scenario.duration)
    finally:
        pbx.listeners.remove(recorder)
        if own:
            await pbx.close()
    return recorder
