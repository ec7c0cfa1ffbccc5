"""Two dialers on one PBX and one Redis: only the leader dispatches, a standby takes over when
the leader dies or freezes, and nobody is rung twice.

Everything is real but the PBX: the simulator (speaking AMI over TCP, one AMI server per
dialer so each one's actions can be told apart, both on one simulated Asterisk), the Redis
of the tests, and the dialer as ``build_dialer`` makes it, in this process or, to be killed
with SIGKILL or frozen with SIGSTOP, in a process of its own.

What every test holds, from the PBX's side (the simulator's ledger and the actions its AMI
servers received) and from Redis's:

- no agent has two Originates at once (their first legs never overlap in time);
- no customer is rung while on another call with us, nor after they were served;
- every caller who abandoned is called back exactly once (the tests' customers all answer
  and talk long enough), except the calls a killed leader had under way: those are left to
  the adoption of the previous run's calls and are never rung again here;
- the standby sends no Originate while it stands by, nor does a leader after its lease.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from simpbx.ami import PbxAmi
from simpbx.clock import run_for
from simpbx.ledger import Ledger
from simpbx.model import AgentSpec, CallerScript, CustomerResponse, FixedAgent, PbxSpec, QueueSpec
from simpbx.pbx import SimPbx

from callback_dialer.ami.asterisk import DialStatus
from callback_dialer.ami.frames import AmiMessage
from callback_dialer.app import Dialer, build_dialer
from callback_dialer.clock import ScaledClock
from callback_dialer.config import Config
from callback_dialer.queue.keys import Keys
from callback_dialer.queue.models import State

from .conftest import REPO
from .helpers.wait import until

SPEED = 10.0
LEASE, RENEW = 3.0, 1.0  # seconds, real: the standby must take over within LEASE
AGENTS = ("101", "102", "103", "104", "105", "106")


class AllAnswer:
    """Every customer answers after two rings and talks 15 s: served by one callback."""

    def respond(self, number: str, now: float) -> CustomerResponse:
        return CustomerResponse(DialStatus.ANSWER, ring=2, talk=15)


class Watched:
    """One AMI server on the shared PBX, for one dialer: when each Originate arrived."""

    def __init__(self, ami: PbxAmi, clock: ScaledClock) -> None:
        self.ami = ami
        self.originates: list[tuple[float, float, AmiMessage]] = []  # (sim time, real, action)
        self.actions: list[tuple[float, AmiMessage]] = []  # (real time, action)
        ami.server.action_taps.append(self._seen)
        self._clock = clock

    def _seen(self, session: int, message: AmiMessage) -> None:
        self.actions.append((time.monotonic(), message))
        if message.get("Action") == "Originate":
            self.originates.append((self._clock.now(), time.monotonic(), message))

    def originates_after(self, real: float) -> list[AmiMessage]:
        return [m for _, at, m in self.originates if at > real]

    def actions_after(self, real: float) -> set[str]:
        return {m.get("Action") for at, m in self.actions if at > real}


class Rig:
    def __init__(self, tmp_path: Path, make_config, redis_url: str) -> None:
        self.tmp_path, self.make_config, self.redis_url = tmp_path, make_config, redis_url
        self.clock = ScaledClock(SPEED)
        agents = tuple(
            AgentSpec(ext, ("sales", "support"), behaviour=FixedAgent(talk=15)) for ext in AGENTS
        )
        self.pbx = SimPbx(
            self.clock,
            PbxSpec(queues=(QueueSpec("sales"), QueueSpec("support")), agents=agents),
            customers=AllAnswer(),
        )
        self.ledger = Ledger()
        self.pbx.observers.append(self.ledger)
        self.servers: dict[str, Watched] = {}
        self.dialers: list[Dialer] = []
        self.processes: list[subprocess.Popen] = []

    async def server_for(self, name: str) -> Watched:
        watched = Watched(await PbxAmi.serve(self.pbx, secret="s3cret"), self.clock)
        self.servers[name] = watched
        return watched

    async def config(self, name: str) -> Config:
        server = await self.server_for(name)
        return self.make_config(
            ami={
                "port": server.ami.port,
                "secret": "s3cret",
                "reconnect_min_delay": 0.05,
                "reconnect_max_delay": 0.2,
            },
            dispatch={"wrapup_seconds": 5, "tick_seconds": 5, "max_concurrent": 20},
            # Claims outlive the test: a dead leader's claims stay its own here.
            queue={"lease_seconds": "1h"},
            leader={"instance": name, "lease": LEASE, "renew_every": RENEW},
        )

    async def dialer(self, name: str) -> Dialer:
        dialer = build_dialer(
            await self.config(name),
            clock=self.clock,
            redis_url=self.redis_url,
            spool=self.tmp_path / f"spool-{name}.jsonl",
        )
        self.dialers.append(dialer)
        await dialer.start()
        await until(lambda: dialer.ami.authenticated and len(dialer.pipeline.agents.agents) == 6)
        return dialer

    async def process(self, name: str) -> subprocess.Popen:
        """A dialer in its own process; returns once it holds the leader lease."""
        config = await self.config(name)
        path = self.tmp_path / f"{name}.json"
        path.write_text(json.dumps(config.model_dump(mode="json")), "utf-8")
        log = (self.tmp_path / f"{name}.log").open("w")
        process = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "tests" / "helpers" / "dialer_process.py"),
                str(path),
                str(self.tmp_path / f"spool-{name}.jsonl"),
                str(SPEED),
                repr(time.time()),
                repr(self.clock.now()),
            ],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.processes.append(process)
        client = aioredis.Redis.from_url(self.redis_url)
        leader_key = Keys(config.redis.key_prefix).leader()
        try:
            deadline = time.monotonic() + 30
            while (await client.hget(leader_key, "holder")) != name.encode():
                assert process.poll() is None, (self.tmp_path / f"{name}.log").read_text()
                assert time.monotonic() < deadline, "the dialer process never led"
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()
        return process

    def log_of(self, name: str) -> str:
        return (self.tmp_path / f"{name}.log").read_text("utf-8")

    # ---- traffic

    async def storm(self, callers: int) -> list[str]:
        """``callers`` subscribers ring while every agent is on a break, and give up."""
        for ext in AGENTS:
            self.pbx.scheduler.run(self.pbx.pause, ext, True, "meeting")
        numbers = [f"+7916555{n:04d}" for n in range(callers)]
        for number in numbers:
            self.pbx.place_call(number, CallerScript(choice="2", patience=8))
        await run_for(self.clock, 20)
        missed = {s.number for s in self.ledger.subscribers() if s.missed}
        assert len(missed) == callers
        return numbers

    def agents_back(self) -> None:
        for ext in AGENTS:
            self.pbx.scheduler.run(self.pbx.pause, ext, False)

    async def states(self) -> dict[str, list]:
        dialer = self.dialers[0]
        rows = (
            await dialer.queue.waiting(limit=1000)
            + await dialer.queue.in_progress()
            + await dialer.queue.finished_between(0, float("inf"))
        )
        out: dict[str, list] = defaultdict(list)
        for cb in rows:
            out[cb.number].append(cb)
        return out

    # ---- what must never happen

    def agent_overlaps(self) -> list[tuple[str, str, str]]:
        """Pairs of Originates whose first legs (the agent's phone) overlapped."""
        ended = {leg.action_id: leg.ended_at for leg in self.ledger.agent_legs()}
        by_agent: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
        for watched in self.servers.values():
            for at, _, message in watched.originates:
                action = message.get("ActionID")
                by_agent[message.get("Channel")].append(
                    (at, ended.get(action, float("inf")), action)
                )
        out = []
        for agent, legs in by_agent.items():
            legs.sort()
            busy_until, busy_with = float("-inf"), ""
            for start, end, action in legs:
                if start < busy_until:
                    out.append((agent, busy_with, action))
                if end > busy_until:
                    busy_until, busy_with = end, action
        return out

    def assert_nobody_rung_twice(self) -> None:
        assert self.agent_overlaps() == []
        assert self.ledger.callbacks_to_served() == ()
        assert self.ledger.concurrent_calls() == ()
        for sub in self.ledger.subscribers():
            answered = [cb for cb in sub.callbacks if cb.status == "ANSWER"]
            assert len(answered) <= 1, (sub.number, sub.callbacks)

    async def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
                process.kill()
            process.wait()
        for dialer in self.dialers:
            for callback_id in list(dialer.dispatcher.inflight):
                dialer.dispatcher.inflight[callback_id].hand_over()
            await dialer.stop()
        for watched in self.servers.values():
            await watched.ami.stop()
        await self.pbx.close()


@pytest.fixture
async def rig(tmp_path, make_config, redis_url) -> AsyncIterator[Rig]:
    made = Rig(tmp_path, make_config, redis_url)
    yield made
    await made.close()


async def served_all(rig: Rig, numbers: list[str], but: frozenset[str] = frozenset()) -> bool:
    states = await rig.states()
    return all(
        len(states[n]) == 1 and states[n][0].state is State.DONE for n in numbers if n not in but
    )


async def test_a_storm_with_two_dialers_calls_everyone_back_once_through_the_leader(rig) -> None:
    first = await rig.dialer("alpha")
    second = await rig.dialer("beta")
    assert first.leadership.may_act() and not second.leadership.may_act()
    assert second.status.dispatch_state().blocked_by == "standby"
    assert second.status.dispatch_state().leader == "alpha"
    numbers = await rig.storm(30)
    # Both detected every missed call; the call ids made one callback each.
    states = await rig.states()
    assert sorted(states) == sorted(numbers) and all(len(v) == 1 for v in states.values())
    counted = [sum(d.metrics.missed_calls.values.values()) for d in (first, second)]
    assert sum(counted) == 30  # each call counted by whichever instance stored it first
    rig.agents_back()
    deadline = time.monotonic() + 60
    while not await served_all(rig, numbers):
        assert time.monotonic() < deadline, "not everyone was called back"
        await asyncio.sleep(0.2)
    assert len(rig.servers["alpha"].originates) == 30
    assert rig.servers["beta"].originates == []  # the standby never dialled
    rig.assert_nobody_rung_twice()
    for sub in rig.ledger.subscribers():
        assert [cb.status for cb in sub.callbacks] == ["ANSWER"]


async def test_the_leader_killed_hard_is_replaced_within_the_lease(rig) -> None:
    leader = await rig.process("leader")
    standby = await rig.dialer("standby")
    assert standby.status.dispatch_state().leader == "leader"
    numbers = await rig.storm(24)
    rig.agents_back()
    # Kill it while it is busy: some callbacks talking, more waiting for an agent.
    await until(lambda: len(rig.servers["leader"].originates) >= 8, timeout=30)
    leader.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    killed_at = rig.clock.now()
    await until(standby.leadership.may_act, timeout=LEASE + 2)
    takeover = time.monotonic() - killed
    assert takeover <= LEASE + 0.3, takeover
    assert standby.leadership.token == 2
    # The dead leader's callback calls are the new leader's now: those still up are adopted
    # and followed to their end, those that ended meanwhile are settled from the fate the
    # dialplan recorded. A claim it held before its call reached Asterisk (no channel, no
    # fate) stays its own until its lease runs out (an hour here): never rung here meanwhile.
    await until(lambda: standby.dispatcher.synced, timeout=10)
    states = await rig.states()
    orphans = frozenset(
        n
        for n, cbs in states.items()
        if cbs[0].claimed_by == "leader" and cbs[0].stage in ("claimed", "ringing_agent")
    )
    assert len(orphans) <= len(AGENTS)
    deadline = time.monotonic() + 60
    while not await served_all(rig, numbers, but=orphans):
        if time.monotonic() > deadline:
            states = await rig.states()
            open_ones = {n: cbs for n, cbs in states.items() if cbs[0].state is not State.DONE}
            raise AssertionError(f"the new leader did not call everyone back: {open_ones}")
        await asyncio.sleep(0.2)
    await run_for(rig.clock, 30)  # time for a doubled call to show up, if there were one
    rig.assert_nobody_rung_twice()
    assert all(at >= killed_at for at, _, _ in rig.servers["standby"].originates)
    rung_after = {m.get("Exten") for m in rig.servers["standby"].originates_after(killed)}
    assert not rung_after & {n.lstrip("+") for n in orphans}
    print(f"\ntakeover after SIGKILL: {takeover:.2f} s (lease {LEASE:g} s)")


async def test_a_leader_frozen_past_its_lease_never_acts_on_its_old_token(rig) -> None:
    leader = await rig.process("leader")
    standby = await rig.dialer("standby")
    numbers = await rig.storm(24)
    rig.agents_back()
    await until(lambda: len(rig.servers["leader"].originates) >= 6, timeout=30)
    os.kill(leader.pid, signal.SIGSTOP)
    frozen = time.monotonic()
    await until(standby.leadership.may_act, timeout=LEASE + 2)
    takeover = time.monotonic() - frozen
    assert takeover <= LEASE + 0.3, takeover
    # The new leader dispatches while the old one is frozen ...
    await until(lambda: len(rig.servers["standby"].originates) >= 3, timeout=30)
    await asyncio.sleep(LEASE)
    os.kill(leader.pid, signal.SIGCONT)
    woke = time.monotonic()
    # ... and the old one, woken with everything it had in flight, learns it was replaced
    # and sends nothing: no Originate, no claim, nothing hung up of the calls it had made.
    deadline = time.monotonic() + 10
    while "leader lease taken over by another dialer" not in rig.log_of("leader"):
        assert time.monotonic() < deadline, rig.log_of("leader")[-3000:]
        await asyncio.sleep(0.1)
    states = await rig.states()
    orphans = frozenset(n for n, cbs in states.items() if cbs[0].claimed_by == "leader")
    deadline = time.monotonic() + 60
    while not await served_all(rig, numbers, but=orphans):
        assert time.monotonic() < deadline, "the new leader did not call everyone back"
        await asyncio.sleep(0.2)
    assert rig.servers["leader"].originates_after(woke) == []
    # Reading (and deleting) the dialplan's call records is detection, which every instance
    # does, leader or not; none of it dials, claims or hangs up.
    assert rig.servers["leader"].actions_after(woke) <= {
        "Ping",
        "Status",
        "Logoff",
        "DBGetTree",
        "DBDel",
    }
    rig.assert_nobody_rung_twice()
    print(f"\ntakeover after SIGSTOP: {takeover:.2f} s (lease {LEASE:g} s)")
