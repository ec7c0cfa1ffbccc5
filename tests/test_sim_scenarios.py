"""The captures' scenarios played by the simulator: the dialer's detection path must conclude
from them exactly what it concludes from the real recordings, and every call must show the
same per-channel event sequence as in the recording."""

from __future__ import annotations

from pathlib import Path

import pytest
from simpbx.ami import PbxAmi
from simpbx.clock import run_for
from simpbx.pbx import SimPbx
from simpbx.scenarios import SCENARIOS, play

from callback_dialer.app import build_dialer
from callback_dialer.clock import ManualClock, ScaledClock
from callback_dialer.detect.replay import replay_capture

from .helpers.compare import (
    channel_shapes,
    originate_responses,
    queue_bridge_race_settled,
    read_messages,
)
from .test_dispatch import until

pytestmark = pytest.mark.captures

CAPTURED = [
    "abandon_in_queue",
    "answered_by_agent",
    "hangup_in_ivr",
    "keypress_callback",
    "queue_timeout",
    "agent_states",
    "callbacks",
    "busy_hour",
]


async def conclusions(config, path: Path, redis_client) -> list[tuple[str, str, str, int]]:
    rows = await replay_capture(config, path, redis_client, clock=ManualClock())
    return sorted((r["number"], r["category"], r["source"], r["missed_count"]) for r in rows)


@pytest.mark.parametrize("name", CAPTURED)
async def test_a_simulated_scenario_leads_to_the_real_captures_conclusions(
    name, captures, config, redis_client, tmp_path
) -> None:
    real = await conclusions(config, captures / f"{name}.jsonl", redis_client)
    simulated = (await play(name)).write(tmp_path / f"{name}.jsonl")
    assert await conclusions(config, simulated, redis_client) == real


@pytest.mark.parametrize(
    "name",
    [
        "abandon_in_queue",
        "answered_by_agent",
        "hangup_in_ivr",
        "keypress_callback",
        "queue_timeout",
        "callbacks",
    ],
)
async def test_every_channel_goes_through_the_captured_event_sequence(name, captures) -> None:
    # AgentComplete and the clearing of BRIDGEPEER come from two Asterisk threads at the same
    # instant, in either order from one recording to the next: compared in one order. Any
    # other difference in any channel's sequence fails.
    real = queue_bridge_race_settled(read_messages(captures / f"{name}.jsonl"))
    simulated = queue_bridge_race_settled(read_messages((await play(name)).events()))
    assert channel_shapes(simulated) == channel_shapes(real)
    assert originate_responses(simulated) == originate_responses(real)


async def test_busy_hour_serves_and_loses_the_same_callers(captures) -> None:
    def outcome(shapes: dict[str, dict[str, list[str]]]) -> dict[str, tuple[str, ...]]:
        # Per caller: how the call went, in the trunk channel's own queue events.
        keep = ("QueueCallerJoin", "AgentConnect", "AgentComplete", "QueueCallerAbandon")
        return {
            key: tuple(e for e in roles["trunk"] if e.split(":")[0] in keep)
            for key, roles in shapes.items()
        }

    real = channel_shapes(read_messages(captures / "busy_hour.jsonl"))
    simulated = channel_shapes(read_messages((await play("busy_hour")).events()))
    assert outcome(simulated) == outcome(real)
    assert len(real) == 24


async def test_overflow_to_support_is_a_served_new_subscriber(
    config, redis_client, tmp_path
) -> None:
    recording = await play("overflow")
    shapes = channel_shapes(read_messages(recording.events()))
    trunk = shapes["+79161234577"]["trunk"]
    assert [e for e in trunk if e.startswith(("QueueCaller", "AgentConnect"))] == [
        "QueueCallerJoin",
        "QueueCallerAbandon",
        "QueueCallerLeave",  # sales, after 4 s
        "QueueCallerJoin",
        "QueueCallerLeave",
        "AgentConnect",
    ]  # support answers
    assert "UserEvent:CallbackRequested:TIMEOUT" not in trunk
    assert await conclusions(config, recording.write(tmp_path / "o.jsonl"), redis_client) == []


async def test_overflow_nobody_answers_is_a_lost_new_subscriber(
    config, redis_client, tmp_path
) -> None:
    path = (await play("overflow_unanswered")).write(tmp_path / "o.jsonl")
    assert await conclusions(config, path, redis_client) == [
        ("+79161234578", "new_connection", "abandon", 1)
    ]


# --------------------------------------------------------------------------- live, over TCP

SPEED = 50.0


@pytest.mark.parametrize("name", ["busy_hour", "keypress_callback"])
async def test_the_running_dialer_cannot_tell_the_simulator_from_the_capture(
    name, captures, make_config, redis_url, redis_client, tmp_path
) -> None:
    clock = ScaledClock(SPEED)
    scenario = SCENARIOS[name]
    pbx = SimPbx(clock, scenario.spec)
    ami = await PbxAmi.serve(pbx, secret="s3cret")
    config = make_config(
        ami={
            "port": ami.port,
            "secret": "s3cret",
            "reconnect_min_delay": 0.05,
            "reconnect_max_delay": 0.2,
        },
        dispatch={"enabled": False},
    )
    dialer = build_dialer(config, clock=clock, redis_url=redis_url, spool=tmp_path / "spool.jsonl")
    await dialer.start()
    try:
        await until(lambda: dialer.ami.authenticated)
        # The dialer learned the agents from our QueueStatus answer.
        await until(lambda: len(dialer.pipeline.agents.agents) == 3)
        pbx.scheduler.run(scenario.script, pbx, None)
        await run_for(clock, scenario.duration)
        await dialer.pipeline.sink.drain(5)
        rows = await dialer.queue.waiting(limit=100) + await dialer.queue.in_progress()
        live = sorted((c.number, c.category, c.source.value, c.missed_count) for c in rows)
        assert live == await conclusions(config, captures / f"{name}.jsonl", redis_client)
        assert dialer.pipeline.router.handler_errors == 0
        assert pbx.scheduler.errors == 0
    finally:
        await dialer.stop()
        await ami.stop()
        await pbx.close()
