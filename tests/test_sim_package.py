"""The simulator as a package of its own: what it takes from the product when it runs, and that
it runs on the product's clocks as on its own (one clock object shared by both sides)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import simpbx
from simpbx.clock import run_for

from callback_dialer.clock import ManualClock, ScaledClock

# The wire codec and Asterisk's vocabulary, and the packages that hold them.
MAY_LOAD = {
    "callback_dialer",
    "callback_dialer.ami",
    "callback_dialer.ami.frames",
    "callback_dialer.ami.asterisk",
}


def test_importing_the_simulator_loads_only_the_codec_and_the_vocabulary_of_the_product() -> None:
    # At run time, not only in the source: a package __init__ of the product that starts
    # importing its transport (panoramisk) or config would drag it into every simulator.
    probe = (
        "import json, sys, simpbx, simpbx.simulation, simpbx.scenarios;"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('callback_dialer', 'panoramisk', 'phonenumbers', 'redis', 'aiohttp'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert set(json.loads(out)) <= MAY_LOAD


async def test_a_scenario_plays_the_same_on_the_dialers_clock_as_on_its_own() -> None:
    own = await simpbx.play("answered_by_agent")  # simpbx's ManualClock
    # A clock run_for could not move would wait for ever: bounded in real time.
    shared = await asyncio.wait_for(
        simpbx.play("answered_by_agent", ManualClock(start=own.origin)), 30
    )
    assert [r.to_json() for r in shared.records] == [r.to_json() for r in own.records]


async def test_run_for_waits_on_a_clock_it_cannot_move() -> None:
    clock = ScaledClock(1000.0)
    start = clock.now()
    await run_for(clock, 5.0)  # 5 ms of real time
    assert clock.now() - start >= 5.0
