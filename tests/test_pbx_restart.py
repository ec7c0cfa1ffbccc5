"""Asterisk restarted while a callback talks: the call is cut, and the attempt ends as not
reached (retried by the retry policy), never as done unless the talk reached
``min_talk_seconds``.

On recorded traffic: ``restart_mid_talk`` (tests/fixtures; ``core restart now`` on the lab
4 s into a talk, every channel hung up, then ``Shutdown``, then the link closed), played by the
recorded-traffic PBX for our own Originate. In the simulator: its ``restart``, the same
sequence, with real AMI sockets closed and refused while it is down.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from simpbx.ami import PbxAmi
from simpbx.amiserver import AmiServer
from simpbx.model import AgentSpec, CustomerResponse, FixedAgent, PbxSpec, QueueSpec
from simpbx.pbx import SimPbx

from callback_dialer.ami.asterisk import DialStatus
from callback_dialer.app import build_dialer
from callback_dialer.clock import ScaledClock
from callback_dialer.queue.models import Source, Stage, State

from .conftest import FIXTURES
from .helpers.recorded_pbx import RecordedPbx, load_scenarios
from .helpers.wait import until, until_async

RECORDED = FIXTURES / "restart_mid_talk.jsonl"


def _shutdown_frame() -> str:
    for line in RECORDED.read_text("utf-8").splitlines():
        record = json.loads(line)
        if record["dir"] == "in" and record["raw"].startswith("Event: Shutdown"):
            return record["raw"]
    raise AssertionError("no Shutdown in the recording")


async def _settled(queue, callback_id: str):
    async def left_dialing() -> bool:
        cb = await queue.get(callback_id)
        return cb is not None and cb.state is not State.DIALING

    await until_async(left_dialing, timeout=15)
    return await queue.get(callback_id)


@pytest.mark.parametrize(("min_talk", "expected"), [(10, State.SCHEDULED), (3, State.DONE)])
async def test_a_recorded_restart_mid_talk_is_a_retry_unless_the_talk_reached_the_minimum(
    make_config, redis_url, tmp_path, min_talk, expected
) -> None:
    speed = 5.0
    server = await AmiServer(secret="s3cret").start()
    pbx = RecordedPbx(server, speed=speed)
    pbx.add_agent("103", ["support"])
    # cb-1 of the recording: agent 103, the customer answered, cut 5.1 s into the talk.
    pbx.scenarios["pbx_restart"] = load_scenarios(RECORDED, {"pbx_restart": "cb-1"})["pbx_restart"]
    pbx.default_outcome = "pbx_restart"
    config = make_config(
        ami={"port": server.port, "secret": "s3cret", "reconnect_min_delay": 0.05},
        dispatch={"min_talk_seconds": min_talk, "wrapup_seconds": 5},
    )
    dialer = build_dialer(
        config, clock=ScaledClock(speed), redis_url=redis_url, spool=tmp_path / "s.jsonl"
    )
    await dialer.start()
    try:
        await until(lambda: dialer.ami.authenticated and dialer.pipeline.agents.agents)
        created = await dialer.queue.add_missed(
            number="+79161230011",
            category="support",
            source=Source.ABANDON,
            missed_at=dialer.clock.now() - 60,
            call_id="restart-1",
        )
        await until(lambda: created.id in dialer.dispatcher.inflight, timeout=10)
        # Every recorded frame of our call played, the hang-ups too.
        await until(lambda: pbx.played and not pbx.playing, timeout=15)
        await server.send_raw(_shutdown_frame().encode())
        await server.stop_listening()  # the PBX is down ...
        cb = await _settled(dialer.queue, created.id)
        await server.start()  # ... and back
        await until(lambda: dialer.ami.authenticated, timeout=10)
        (attempt,) = cb.attempt_log
        assert 4.5 <= attempt.talk_seconds <= 6.5  # the recording's talk: 5.1 s
        assert cb.state is expected
        if expected is State.SCHEDULED:
            # Not reached: a counted attempt, the next one when the retry policy says.
            assert (attempt.outcome, attempt.counted, cb.attempts) == ("short_call", True, 1)
            assert cb.next_at >= dialer.clock.now() + 60
        else:
            assert attempt.outcome == "answered"
        assert len(server.actions_named("Originate")) == 1
    finally:
        await dialer.stop()
        await pbx.stop()
        await server.stop()


class Talks:
    """Every customer answers at once and would talk for ten minutes."""

    def respond(self, number: str, now: float) -> CustomerResponse:
        return CustomerResponse(DialStatus.ANSWER, ring=1, talk=600)


@pytest.mark.parametrize(("cut_after", "expected"), [(4, "short_call"), (15, "answered")])
async def test_the_simulator_restarted_mid_talk_cuts_the_call_and_the_attempt_ends_by_policy(
    make_config, redis_url, tmp_path, cut_after, expected
) -> None:
    speed = 10.0
    clock = ScaledClock(speed)
    pbx = SimPbx(
        clock,
        PbxSpec(
            queues=(QueueSpec("support"),),
            agents=(AgentSpec("101", ("support",), behaviour=FixedAgent(talk=600)),),
        ),
        customers=Talks(),
    )
    ami = await PbxAmi.serve(pbx, secret="s3cret")
    config = make_config(
        ami={
            "port": ami.port,
            "secret": "s3cret",
            "reconnect_min_delay": 0.05,
            "reconnect_max_delay": 0.2,
        },
        dispatch={"min_talk_seconds": 10, "wrapup_seconds": 5},
    )
    dialer = build_dialer(config, clock=clock, redis_url=redis_url, spool=tmp_path / "s.jsonl")
    await dialer.start()
    try:
        await until(lambda: dialer.ami.authenticated and dialer.pipeline.agents.agents)
        created = await dialer.queue.add_missed(
            number="+79161230011",
            category="support",
            source=Source.ABANDON,
            missed_at=clock.now() - 60,
            call_id="restart-sim",
        )

        def talking() -> bool:
            attempt = dialer.dispatcher.inflight.get(created.id)
            return attempt is not None and attempt.stage is Stage.TALKING

        await until(talking, timeout=10)
        began = clock.now()
        await asyncio.sleep(cut_after / speed)
        await ami.restart(down_for=0.3)
        cut_at = clock.now()
        cb = await _settled(dialer.queue, created.id)
        (attempt,) = cb.attempt_log
        assert attempt.outcome == expected
        assert attempt.talk_seconds <= cut_at - began + 1
        if expected == "short_call":
            assert cb.state is State.SCHEDULED and attempt.counted
        else:
            assert cb.state is State.DONE
        # Back up: the dialer reconnects and calls nobody while the retry is not due.
        await until(lambda: dialer.ami.authenticated, timeout=10)
        await asyncio.sleep(0.5)
        assert len(ami.server.actions_named("Originate")) == 1
    finally:
        await dialer.stop()
        await ami.stop()
        await pbx.close()
