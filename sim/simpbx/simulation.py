"""One call to have a simulated call centre running: PBX, AMI socket, traffic and ledger.

clock = ScaledClock(120)
sim = await Simulation.start(clock, agents=5, port=5038, secret="secret")
...  # point the dialer at 127.0.0.1:5038, sharing ``clock``
await sim.run()       # until the planned day is over (or sim.stop() at any time)
print(sim.ledger.summary())
await sim.stop()
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .ami import PbxAmi
from .clock import Clock, run_for
from .ledger import Ledger
from .pbx import SimPbx
from .profile import TrafficProfile
from .recording import Recorder
from .traffic import DayPlan, TrafficRunner, pbx_spec, plan_day


def with_agents(profile: TrafficProfile, count: int) -> TrafficProfile:
    """The same profile with ``count`` agents (shared among its groups as before)."""
    return profile.model_copy(update={"agents": profile.agents.model_copy(update={"count": count})})


@dataclass
class Simulation:
    clock: Clock
    profile: TrafficProfile
    plan: DayPlan
    pbx: SimPbx
    ami: PbxAmi | None
    runner: TrafficRunner
    ledger: Ledger
    recorder: Recorder | None = None
    _record_handle: IO[str] | None = None

    @property
    def port(self) -> int:
        return self.ami.port if self.ami is not None else 0

    @classmethod
    async def start(
        cls,
        clock: Clock,
        *,
        profile: TrafficProfile | None = None,
        agents: int | None = None,
        start: float | None = None,
        hours: float = 24.0,
        seed: int | None = None,
        serve: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        username: str = "dialer",
        secret: str = "secret",
        record_to: Path | None = None,
    ) -> Simulation:
        """Plan ``hours`` of traffic from ``start`` (default: the clock's now), build the PBX
        for it, put it on an AMI socket (``serve``; port 0 picks a free one) and set the day
        going. ``record_to`` writes everything the PBX says, and the clients' actions, as a
        capture file while it happens."""
        profile = profile or TrafficProfile()
        if agents is not None:
            profile = with_agents(profile, agents)
        begin = clock.now() if start is None else start
        plan = plan_day(profile, begin, hours=hours, seed=seed)
        pbx = SimPbx(clock, pbx_spec(profile, plan))
        ledger = Ledger()
        runner = TrafficRunner(pbx, plan, profile, ledger)
        recorder, handle = None, None
        if record_to is not None:
            handle = record_to.open("w", encoding="utf-8")
            recorder = Recorder(clock, handle, keep=False)
            pbx.listeners.append(recorder)
        ami = None
        if serve:
            ami = await PbxAmi.serve(pbx, host=host, port=port, username=username, secret=secret)
            if recorder is not None:
                ami.taps.append(recorder.tap)
        runner.start()
        return cls(
            clock=clock,
            profile=profile,
            plan=plan,
            pbx=pbx,
            ami=ami,
            runner=runner,
            ledger=ledger,
            recorder=recorder,
            _record_handle=handle,
        )

    async def run(self) -> None:
        """Until the end of the planned day, and a quarter of an hour for the last calls."""
        remaining = self.plan.end + 900 - self.clock.now()
        if remaining > 0:
            await run_for(self.clock, remaining, step=60)

    async def stop(self) -> None:
        if self.ami is not None:
            await self.ami.stop()
        await self.pbx.close()
        if self._record_handle is not None:
            self._record_handle.close()
            self._record_handle = None
