"""Asterisk keeps each callback's fate (issue 13, item 2): a callback call that ends while no
dialer runs is settled from the record the dialplan wrote; without one it is never redialled
before its normal retry delay, and the page says "outcome unknown".

The dialer that placed the call runs in a process of its own and is killed (SIGKILL) while
the agent and the customer talk; the call then ends with nobody listening. The simulator
writes what the shipped dialplan's ``callback-record-fate`` writes (or, for an older
dialplan, nothing).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from simpbx.ami import PbxAmi
from simpbx.clock import run_for
from simpbx.model import AgentSpec, CallerScript, CustomerResponse, FixedAgent, PbxSpec, QueueSpec
from simpbx.pbx import SimPbx

from callback_dialer.ami.asterisk import DialStatus
from callback_dialer.app import Dialer, build_dialer
from callback_dialer.clock import ManualClock, ScaledClock
from callback_dialer.dispatch.fates import FateError, outcome_of, parse_fate
from callback_dialer.dispatch.outcome import OutcomeKind, Reason
from callback_dialer.queue.models import State
from callback_dialer.queue.store import CallbackQueue

from .conftest import REPO
from .helpers.wait import until

SPEED = 10.0
FAMILY = "callback-dialer"
NUMBER = "+79161112001"


class Talks:
    """Every customer answers at once and talks 30 s (simulated)."""

    def respond(self, number: str, now: float) -> CustomerResponse:
        return CustomerResponse(DialStatus.ANSWER, ring=1, talk=30)


class Rig:
    def __init__(self, tmp_path: Path, make_config: Any, *, records: bool) -> None:
        self.tmp_path, self.make_config = tmp_path, make_config
        self.clock = ScaledClock(SPEED)
        self.pbx = SimPbx(
            self.clock,
            PbxSpec(
                queues=(QueueSpec("sales"), QueueSpec("support")),
                agents=(AgentSpec("101", ("sales",), behaviour=FixedAgent(talk=300)),),
                records_family=FAMILY if records else "",
            ),
            customers=Talks(),
        )
        self.ami: PbxAmi | None = None
        self.processes: list[subprocess.Popen] = []
        self.dialers: list[Dialer] = []

    def originates(self) -> list[Any]:
        assert self.ami is not None
        return [m for _, m in self.ami.server.actions if m.get("Action") == "Originate"]

    async def config(self) -> Any:
        if self.ami is None:
            self.ami = await PbxAmi.serve(self.pbx, secret="s3cret")
        return self.make_config(
            ami={
                "port": self.ami.port,
                "secret": "s3cret",
                "reconnect_min_delay": 0.05,
                "reconnect_max_delay": 0.2,
            },
            dispatch={"wrapup_seconds": 5, "tick_seconds": 5, "min_talk_seconds": 10},
            leader={"lease": 3.0, "renew_every": 1.0},
            # A claim outlives the dead dialer unless a test lets it run out on purpose.
            queue={"lease_seconds": "1h"},
        )

    async def first_dialer_killed_mid_talk(self) -> float:
        """A missed call, called back by a dialer in its own process, which is SIGKILLed while
        agent and customer talk; returns the (simulated) time it died."""
        config = await self.config()
        path = self.tmp_path / "first.json"
        path.write_text(json.dumps(config.model_dump(mode="json")), "utf-8")
        log = self.tmp_path / "first.log"
        process = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "tests" / "helpers" / "dialer_process.py"),
                str(path),
                str(self.tmp_path / "spool-first.jsonl"),
                str(SPEED),
                repr(time.time()),
                repr(self.clock.now()),
            ],
            cwd=REPO,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.processes.append(process)
        assert self.ami is not None
        deadline = time.monotonic() + 30
        while not any(m.get("Action") == "DBGetTree" for _, m in self.ami.server.actions):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the first dialer never connected"
            await asyncio.sleep(0.05)
        self.pbx.scheduler.run(self.pbx.pause, "101", True, "meeting")
        self.pbx.place_call(NUMBER, CallerScript(choice="1", patience=6))
        await run_for(self.clock, 10)
        self.pbx.scheduler.run(self.pbx.pause, "101", False)
        deadline = time.monotonic() + 30
        while not self.originates():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            await asyncio.sleep(0.05)
        await run_for(self.clock, 10)  # the agent answers, the customer too; they talk
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert process.poll() is not None
        return self.clock.now()

    async def dialer(self) -> Dialer:
        dialer = build_dialer(
            await self.config(), clock=self.clock, spool=self.tmp_path / "spool-second.jsonl"
        )
        self.dialers.append(dialer)
        await dialer.start()
        return dialer

    async def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()
        for dialer in self.dialers:
            await dialer.stop()
        if self.ami is not None:
            await self.ami.stop()
        await self.pbx.close()


@pytest.fixture
async def rigs(tmp_path, make_config) -> AsyncIterator[Any]:
    made: list[Rig] = []

    def make(records: bool) -> Rig:
        rig = Rig(tmp_path, make_config, records=records)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        await rig.close()


async def only_callback(dialer: Dialer) -> Any:
    found = await dialer.queue.for_number(NUMBER)
    assert len(found) == 1
    return found[0]


async def test_a_callback_that_ended_while_no_dialer_ran_is_settled_from_its_record(
    rigs,
) -> None:
    rig = rigs(records=True)
    await rig.first_dialer_killed_mid_talk()
    assert len(rig.originates()) == 1
    await run_for(rig.clock, 30)  # the customer hangs up; nobody listens
    assert len(rig.pbx.astdb.tree(FAMILY, "fates")) == 1
    second = await rig.dialer()
    # The dead leader's lease runs out (3 s); then the fates are read (the ready hook, the
    # next sweep, or now).
    await until(second.leadership.may_act, timeout=10)
    await until(lambda: second.dispatcher.synced, timeout=10)
    assert second.fates is not None
    await second.fates.catch_up("test")
    cb = await only_callback(second)
    assert cb.state is State.DONE
    (attempt,) = cb.attempt_log
    assert attempt.outcome == "answered" and 15 < attempt.talk_seconds < 45
    assert rig.pbx.astdb.tree(FAMILY, "fates") == []
    await run_for(rig.clock, 60)
    assert len(rig.originates()) == 1  # never called again
    assert second.metrics.records.get("fates", "applied") == 1


async def test_a_record_settles_the_claim_even_after_its_lease_ran_out(rigs, redis_client) -> None:
    rig = rigs(records=True)
    await rig.first_dialer_killed_mid_talk()
    await run_for(rig.clock, 30)
    # The dead dialer's claim runs out before anyone reads the record: the queue keeps the
    # lapsed claim, "outcome unknown", scheduled after the retry delay ...
    later = CallbackQueue(redis_client, await rig.config(), ManualClock(rig.clock.now() + 7200))
    await later.housekeeping(held=[])
    (lapsed,) = await later.for_number(NUMBER)
    assert (lapsed.state, lapsed.reason) == (State.SCHEDULED, "outcome_unknown")
    # ... and the record, read by the next leader, still settles that claim.
    second = await rig.dialer()
    await until(second.leadership.may_act, timeout=10)
    await until(lambda: second.dispatcher.synced, timeout=10)
    assert second.fates is not None
    await second.fates.catch_up("test")
    cb = await only_callback(second)
    assert cb.state is State.DONE
    assert [a.outcome for a in cb.attempt_log] == ["outcome_unknown", "answered"]
    assert len(rig.originates()) == 1


async def test_without_a_record_the_callback_waits_its_retry_delay_marked_outcome_unknown(
    rigs, redis_client
) -> None:
    rig = rigs(records=False)  # an older dialplan: no fate records
    await rig.first_dialer_killed_mid_talk()
    await run_for(rig.clock, 30)
    # The dead dialer's claim runs out (lease_seconds is an hour here: an hour later).
    lapsed_at = rig.clock.now() + 7200
    later = CallbackQueue(redis_client, await rig.config(), ManualClock(lapsed_at))
    await later.housekeeping(held=[])
    second = await rig.dialer()
    await until(lambda: second.dispatcher.synced, timeout=10)
    cb = await only_callback(second)
    assert (cb.state, cb.reason) == (State.SCHEDULED, "outcome_unknown")
    assert cb.next_at == pytest.approx(lapsed_at + second.config.retry.delay_after(1), abs=1)
    assert [(a.outcome, a.counted) for a in cb.attempt_log] == [("outcome_unknown", False)]
    await run_for(rig.clock, 60)
    assert len(rig.originates()) == 1  # not before the retry delay
    waiting = await second.status.waiting(10)
    assert [(c.number, c.reason) for c in waiting] == [(NUMBER, "outcome_unknown")]


def test_a_fate_is_judged_as_a_live_call_would_be() -> None:
    def fate(dial: str, answered: str) -> Any:
        value = f"v=1&claim=ab12&dial={dial}&answered={answered}&agent=x&end=1796128246.968"
        return outcome_of(parse_fate("cb-1", value), min_talk=10)

    assert (fate("ANSWER", "25000").kind, fate("ANSWER", "25000").talk) == (OutcomeKind.DONE, 25)
    assert (fate("ANSWER", "4000").kind, fate("ANSWER", "4000").reason) == (
        OutcomeKind.RETRY,
        Reason.SHORT_CALL,
    )
    assert fate("BUSY", "").reason == Reason.BUSY
    assert fate("NOANSWER", "").reason == Reason.NO_ANSWER
    assert fate("CONGESTION", "").reason == Reason.CONGESTION
    assert fate("CHANUNAVAIL", "").reason == Reason.UNAVAILABLE
    assert fate("", "").reason == Reason.FAILED_DIAL
    for bad in ("v=1&dial=BUSY&end=1", "v=2&claim=a&end=1", "v=1&claim=a&end=soon", "x"):
        with pytest.raises(FateError):
            parse_fate("cb-1", bad)
