"""The fault suite: each fault caused for real against the simulator, and what it cost.

One ``Fault`` a row: a simulated PBX speaking AMI over TCP (one AMI server per dialer, one
Asterisk behind them), dialers as processes of their own (tests/helpers/dialer_process.py, to
be killed with SIGKILL), the tests' redis-server (or one of the fault's own, to be killed and
started again), callbacks waiting, then the fault at a stage of a call: the dialer killed
while the agent rings, while the customer rings, while they talk, between an Originate and
its response; the AMI link cut at each stage; the PBX restarted mid-talk; Redis killed and
restarted mid-talk; the leader killed with a standby; two instances under a storm of abandons.

Measured from outside, per fault: ``lost`` (callbacks owed and not called back by the end),
``customers_twice`` (customers reached twice: a second call after one they talked in long
enough), ``agents_twice`` (an agent rung by two of our Originates at once), ``recover_s`` (real
seconds from the fault to the first Originate sent again, or to the adoption of the calls).
``tests/test_faults.py`` runs every row and holds the first three at zero;
``bench/fault_suite.py`` prints the table.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis
from simpbx.ami import PbxAmi
from simpbx.clock import run_for
from simpbx.ledger import Ledger
from simpbx.model import (
    AgentSpec,
    CallerScript,
    CustomerResponse,
    FixedAgent,
    PbxSpec,
    QueueSpec,
)
from simpbx.pbx import SimPbx

from callback_dialer.ami.asterisk import DialStatus
from callback_dialer.ami.frames import AmiMessage
from callback_dialer.clock import ScaledClock
from callback_dialer.config import Config, parse_config
from callback_dialer.queue.keys import Keys
from callback_dialer.queue.models import Source, State
from callback_dialer.queue.store import CallbackQueue

REPO = Path(__file__).resolve().parents[2]
SPEED = 10.0
LEASE, RENEW = 1.5, 0.5  # the leader lease, real seconds
MIN_TALK = 10.0
ALWAYS = {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


@dataclass
class FaultResult:
    name: str
    callbacks: int
    lost: int
    customers_twice: int
    agents_twice: int
    recover_s: float | None
    seconds: float
    notes: str = ""

    def row(self) -> str:
        recover = "—" if self.recover_s is None else f"{self.recover_s:.1f} s"
        return (
            f"| {self.name} | {self.callbacks} | {self.lost} | {self.customers_twice} | "
            f"{self.agents_twice} | {recover} | {self.notes} |"
        )


class Customers:
    """Every customer answers after ``ring`` seconds and talks ``talk``."""

    def __init__(self, ring: float, talk: float) -> None:
        self.ring, self.talk = ring, talk

    def respond(self, number: str, now: float) -> CustomerResponse:
        return CustomerResponse(DialStatus.ANSWER, ring=self.ring, talk=self.talk)


class OwnRedis:
    """A redis-server of the fault's own (AOF, fsync always), to be killed and restarted."""

    def __init__(self, folder: Path) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.folder = folder
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                os.environ.get("REDIS_SERVER", "redis-server"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        import socket

        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@dataclass
class Rig:
    folder: Path
    redis_url: str
    agents: int = 2
    agent_ring: float = 2.0
    customer_ring: float = 2.0
    talk: float = 200.0  # long enough for a restart on a loaded machine (up to 10 s)
    retry_delay: str = "20s"
    clock: ScaledClock = field(init=False)
    key_prefix: str = field(default_factory=lambda: "faults-" + secrets.token_hex(4))

    def __post_init__(self) -> None:
        self.clock = ScaledClock(SPEED)
        names = [str(101 + i) for i in range(self.agents)]
        specs = tuple(
            AgentSpec(
                ext,
                ("sales", "support"),
                behaviour=FixedAgent(delay=self.agent_ring, talk=600),
            )
            for ext in names
        )
        self.pbx = SimPbx(
            self.clock,
            PbxSpec(queues=(QueueSpec("sales"), QueueSpec("support")), agents=specs),
            customers=Customers(self.customer_ring, self.talk),
        )
        self.ledger = Ledger()
        self.pbx.observers.append(self.ledger)
        self.servers: dict[str, PbxAmi] = {}
        self.originates: list[tuple[float, float, str, AmiMessage]] = []  # sim, real, dialer
        self.processes: dict[str, subprocess.Popen] = {}
        self.on_originate: Callable[[str, AmiMessage], None] | None = None
        self.numbers: list[str] = []

    # ---- parts

    async def server(self, name: str) -> PbxAmi:
        if name not in self.servers:
            ami = await PbxAmi.serve(self.pbx, secret="s3cret")

            def seen(session: int, message: AmiMessage, name: str = name) -> None:
                if message.get("Action") == "Originate":
                    self.originates.append((self.clock.now(), time.monotonic(), name, message))
                    if self.on_originate is not None:
                        self.on_originate(name, message)

            ami.server.action_taps.append(seen)
            self.servers[name] = ami
        return self.servers[name]

    def config(self, name: str, port: int) -> Config:
        return parse_config(
            {
                "ami": {
                    "port": port,
                    "secret": "s3cret",
                    "reconnect_min_delay": 0.05,
                    "reconnect_max_delay": 0.3,
                    "ping_interval": 1,
                    "ping_timeout": 1,
                    "action_timeout": 2,
                },
                "redis": {
                    "url": self.redis_url,
                    "key_prefix": self.key_prefix,
                    "socket_timeout": 1,
                },
                "hours": {"weekly": ALWAYS},
                "retry": {"delays": [self.retry_delay]},
                "dispatch": {
                    "min_talk_seconds": MIN_TALK,
                    "wrapup_seconds": 3,
                    "agent_cooldown": 10,
                    "tick_seconds": 5,
                    "max_concurrent": 50,
                    "agent_ring_seconds": 40,
                },
                "queue": {"lease_seconds": "90s"},
                "leader": {"instance": name, "lease": LEASE, "renew_every": RENEW},
                "web": {"enabled": False},
                "ivr": {"agi_enabled": False},  # faults run side by side: no fixed port
                "logging": {"format": "json"},
            }
        )

    async def start(self, name: str, *, lead: bool = True) -> subprocess.Popen:
        """The dialer ``name`` in a process of its own; returns once it leads (``lead``) or
        once it has logged in to the PBX."""
        ami = await self.server(name)
        logins = ami.server.logins
        path = self.folder / f"{name}.json"
        path.write_text(json.dumps(self.config(name, ami.port).model_dump(mode="json")), "utf-8")
        log = (self.folder / f"{name}.log").open("a")
        process = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "tests" / "helpers" / "dialer_process.py"),
                str(path),
                str(self.folder / f"spool-{name}.jsonl"),
                str(SPEED),
                repr(time.time()),
                repr(self.clock.now()),
            ],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.processes[name] = process
        deadline = time.monotonic() + 30
        while ami.server.logins <= logins or (lead and await self.leader() != name):
            if process.poll() is not None:
                raise RuntimeError(self.log_of(name)[-3000:])
            if time.monotonic() > deadline:
                raise RuntimeError(f"dialer {name} did not come up")
            await asyncio.sleep(0.05)
        return process

    def kill(self, name: str) -> None:
        process = self.processes[name]
        os.kill(process.pid, signal.SIGKILL)
        process.wait()

    def log_of(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text("utf-8") if path.exists() else ""

    async def leader(self) -> str:
        client = aioredis.Redis.from_url(self.redis_url)
        try:
            holder = await client.hget(Keys(self.key_prefix).leader(), "holder")
        except Exception:
            return ""
        finally:
            await client.aclose()
        return holder.decode() if holder else ""

    def queue(self) -> CallbackQueue:
        config = self.config("observer", 5038)  # never connects: the queue only
        return CallbackQueue(aioredis.Redis.from_url(self.redis_url), config, self.clock)

    # ---- work

    async def owe(self, count: int) -> list[str]:
        """``count`` callbacks waiting (missed calls stored, as detection does)."""
        queue = self.queue()
        start = len(self.numbers)
        for n in range(start, start + count):
            number = "+7916" + f"{int(self.key_prefix[-4:], 16) % 1000:03d}{n:04d}"
            await queue.add_missed(
                number=number,
                category="support",
                source=Source.ABANDON,
                missed_at=self.clock.now() - 60,
                call_id=f"fault-{n}",
            )
            self.numbers.append(number)
        await queue.redis.aclose()
        return self.numbers[start:]

    async def stage_reached(self, stage: str, count: int = 1, timeout: float = 30) -> None:
        queue = self.queue()
        deadline = time.monotonic() + timeout
        try:
            while True:
                rows = await queue.in_progress()
                if sum(1 for cb in rows if cb.stage == stage) >= count:
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no {count} callbacks at {stage}")
                await asyncio.sleep(0.02)
        finally:
            await queue.redis.aclose()

    async def settle(self, timeout: float) -> dict[str, list]:
        """Until every number owed is done (or ``timeout`` real seconds); their callbacks."""
        queue = self.queue()
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    states = {n: await queue.for_number(n) for n in self.numbers}
                except Exception:
                    states = {}
                if states and all(
                    cbs and all(cb.state is State.DONE for cb in cbs) for cbs in states.values()
                ):
                    return states
                if time.monotonic() > deadline:
                    return states
                await asyncio.sleep(0.2)
        finally:
            await queue.redis.aclose()

    def first_originate_after(self, real: float) -> float | None:
        later = [at for _, at, _, _ in self.originates if at > real]
        return min(later) - real if later else None

    # ---- what must never happen

    def agents_twice(self) -> int:
        ended = {leg.action_id: leg.ended_at for leg in self.ledger.agent_legs()}
        by_agent: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for at, _, _, message in self.originates:
            end = ended.get(message.get("ActionID"), float("inf"))
            by_agent[message.get("Channel")].append((at, end))
        overlaps = 0
        for legs in by_agent.values():
            legs.sort()
            busy_until = float("-inf")
            for start, end in legs:
                if start < busy_until:
                    overlaps += 1
                busy_until = max(busy_until, end)
        return overlaps

    def customers_twice(self) -> int:
        """Customers called again after a call in which they talked long enough."""
        calls: dict[str, list] = defaultdict(list)
        for cb in self.ledger.callbacks():
            calls[cb.number].append(cb)
        twice = 0
        for legs in calls.values():
            legs.sort(key=lambda c: c.rang_at)
            reached = [i for i, c in enumerate(legs) if c.status == "ANSWER" and c.talk >= MIN_TALK]
            if reached and len(legs) > reached[0] + 1:
                twice += 1
        return twice + len(self.ledger.concurrent_calls())

    def lost(self, states: dict[str, list]) -> int:
        return sum(
            1
            for n in self.numbers
            if not states.get(n) or not any(cb.state is State.DONE for cb in states[n])
        )

    async def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
                process.kill()
            process.wait()
        for ami in self.servers.values():
            await ami.stop()
        await self.pbx.close()


# ---------------------------------------------------------------------- the faults


async def _kill_at(rig: Rig, stage: str) -> tuple[float | None, str]:
    await rig.start("alpha")
    await rig.owe(rig.agents)
    await rig.stage_reached(stage)
    rig.kill("alpha")
    killed = time.monotonic()
    await rig.start("alpha")  # the service manager starts it again: same name
    return time.monotonic() - killed, "restarted"


def adopted_in(log: str) -> int:
    """Calls adopted, as the dialer's log says."""
    return sum(
        int(m.group(1))
        for line in log.splitlines()
        if "adopted the callback calls" in line
        for m in [re.search(r"adopted=(\d+)", line)]
        if m
    )


async def kill_ringing_agent(rig: Rig) -> tuple[float | None, str]:
    return await _kill_at(rig, "ringing_agent")


async def kill_ringing_customer(rig: Rig) -> tuple[float | None, str]:
    return await _kill_at(rig, "ringing_customer")


async def kill_talking(rig: Rig) -> tuple[float | None, str]:
    return await _kill_at(rig, "talking")


async def kill_before_originate_response(rig: Rig) -> tuple[float | None, str]:
    await rig.start("alpha")
    fired: list[float] = []

    def kill_now(name: str, message: AmiMessage) -> None:
        if not fired:
            # The Originate is written and read, its response not yet sent: SIGKILL now.
            os.kill(rig.processes["alpha"].pid, signal.SIGKILL)
            fired.append(time.monotonic())

    rig.on_originate = kill_now
    await rig.owe(rig.agents)
    deadline = time.monotonic() + 20
    while not fired and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    rig.on_originate = None
    rig.processes["alpha"].wait()
    await rig.start("alpha")
    return time.monotonic() - fired[0], "restarted"


async def _cut_at(rig: Rig, stage: str) -> tuple[float | None, str]:
    await rig.start("alpha")
    await rig.owe(rig.agents)
    await rig.stage_reached(stage)
    cut = time.monotonic()
    logins = rig.servers["alpha"].server.logins
    await rig.servers["alpha"].cut(down_for=1.0)
    while rig.servers["alpha"].server.logins <= logins:
        await asyncio.sleep(0.02)
    return time.monotonic() - cut, "link back, resynchronised"


async def cut_ringing_agent(rig: Rig) -> tuple[float | None, str]:
    return await _cut_at(rig, "ringing_agent")


async def cut_ringing_customer(rig: Rig) -> tuple[float | None, str]:
    return await _cut_at(rig, "ringing_customer")


async def cut_talking(rig: Rig) -> tuple[float | None, str]:
    return await _cut_at(rig, "talking")


async def pbx_restart_talking(rig: Rig) -> tuple[float | None, str]:
    await rig.start("alpha")
    await rig.owe(rig.agents)
    await rig.stage_reached("talking", count=rig.agents)
    restarted = time.monotonic()
    logins = rig.servers["alpha"].server.logins
    await rig.servers["alpha"].restart(down_for=1.0)
    while rig.servers["alpha"].server.logins <= logins:
        await asyncio.sleep(0.02)
    return time.monotonic() - restarted, "cut calls retried by policy"


async def leader_killed_with_standby(rig: Rig) -> tuple[float | None, str]:
    await rig.start("alpha")
    await rig.start("beta", lead=False)
    await rig.owe(rig.agents)
    await rig.stage_reached("talking")
    rig.kill("alpha")
    killed = time.monotonic()
    while await rig.leader() != "beta":
        await asyncio.sleep(0.02)
    return time.monotonic() - killed, "standby took over"


async def storm_two_instances(rig: Rig, callers: int = 120, per_minute: int = 1000):
    await rig.start("alpha")
    await rig.start("beta", lead=False)
    for ext in [str(101 + i) for i in range(rig.agents)]:
        rig.pbx.scheduler.run(rig.pbx.pause, ext, True, "meeting")
    gap = 60.0 / per_minute
    for n in range(callers):
        number = "+7916" + f"{int(rig.key_prefix[-4:], 16) % 1000:03d}{n:04d}"
        rig.numbers.append(number)
        rig.pbx.place_call(number, CallerScript(choice="2", patience=3))
        await asyncio.sleep(gap / SPEED)
    deadline = time.monotonic() + 60
    while len({s.number for s in rig.ledger.subscribers() if s.missed}) < callers:
        if time.monotonic() > deadline:
            raise RuntimeError("the storm's callers did not all give up")
        await asyncio.sleep(0.1)
    for ext in [str(101 + i) for i in range(rig.agents)]:
        rig.pbx.scheduler.run(rig.pbx.pause, ext, False)
    return None, f"{callers} abandons at {per_minute}/min, 2 dialers"


async def redis_restart_talking(rig: Rig, own: OwnRedis) -> tuple[float | None, str]:
    await rig.start("alpha")
    await rig.owe(rig.agents)
    await rig.stage_reached("talking")
    own.kill()
    killed = time.monotonic()
    await asyncio.sleep(1.0)
    own.start()
    return time.monotonic() - killed, "Redis down 1 s, AOF"


@dataclass(frozen=True)
class Fault:
    name: str
    run: Callable[..., Awaitable[tuple[float | None, str]]]
    rig: dict = field(default_factory=dict)
    own_redis: bool = False
    settle: float = 60.0  # at most, real seconds: a loaded machine is slow, not wrong


FAULTS = (
    Fault("kill -9 while the agent rings", kill_ringing_agent, {"agent_ring": 15}),
    Fault("kill -9 while the customer rings", kill_ringing_customer, {"customer_ring": 12}),
    Fault("kill -9 while talking", kill_talking),
    Fault("kill -9 between Originate and its response", kill_before_originate_response),
    Fault("AMI cut while the agent rings", cut_ringing_agent, {"agent_ring": 12}),
    Fault("AMI cut while the customer rings", cut_ringing_customer, {"customer_ring": 12}),
    Fault("AMI cut while talking", cut_talking),
    Fault("PBX restart mid-talk", pbx_restart_talking, {"retry_delay": "10s"}),
    Fault("Redis restart mid-talk", redis_restart_talking, own_redis=True),
    Fault("leader killed with a standby", leader_killed_with_standby),
    Fault(
        "two instances, storm of 1,000 abandons/min",
        storm_two_instances,
        # A talk well past min_talk_seconds: at 10x a loaded machine's 0.3 s lag is 3 s of
        # talk, and a 12 s talk measured as 9 was retried as a short call (seen).
        {"agents": 30, "talk": 20, "customer_ring": 0.5, "agent_ring": 0.3},
        settle=120.0,
    ),
)


async def run_fault(
    fault: Fault, redis_url: str, *, settle: float | None = None, **options
) -> FaultResult:
    folder = Path(tempfile.mkdtemp(prefix="fault-"))
    own = OwnRedis(folder) if fault.own_redis else None
    if own is not None:
        own.start()
        redis_url = own.url
    rig = Rig(folder, redis_url, **fault.rig)
    started = time.monotonic()
    try:
        if own is not None:
            recover, notes = await fault.run(rig, own)
        else:
            recover, notes = await fault.run(rig, **options)
        states = await rig.settle(settle or fault.settle)
        await run_for(rig.clock, 5)  # room for a doubled call to show, if there were one
        adopted = sum(adopted_in(rig.log_of(name)) for name in rig.processes)
        if adopted:
            notes += f"; {adopted} calls adopted"
        return FaultResult(
            fault.name,
            len(rig.numbers),
            rig.lost(states),
            rig.customers_twice(),
            rig.agents_twice(),
            recover,
            time.monotonic() - started,
            notes,
        )
    finally:
        await rig.close()
        if own is not None:
            own.kill()


TABLE_HEAD = (
    "| fault | callbacks | lost | customers called twice | agents rung twice | "
    "time to recover | how |\n| --- | --- | --- | --- | --- | --- | --- |"
)
