"""Issue 12 on a real Asterisk 22: do live callers wait longer because the dialer is on?

    .venv/bin/python scripts/lab_live_turns.py --prefix /path/to/asterisk-22 --lab /tmp/lab \\
        --ports 5040,5041,4580,4581 [--modes paused,default,old] [--rounds 1]

Starts the two-instance lab of ../shared/asterisk-lab on the given ports (as
``record_fixtures.py --ports`` does), then plays the issue's scenario once per mode, each time
with a fresh dialer (``build_dialer``, in this process, real clock, its own Redis key prefix):
every agent on a break; three callers give up in ``support`` (three callbacks due); four
callers then wait there; 10 s later agents 102 and 103 come back. Modes: ``paused``
(dispatching paused: the dialer only detects), ``default`` (the shipped config), ``old``
(``callback_handicap = "-1s"``: callbacks never wait for live callers, the behaviour before
issue 12). The driver (the PBX's and the carrier's ``driver`` AMI users) times each live
caller from their ``QueueCallerJoin`` to their ``AgentConnect``; the dialer says when it
started each callback and how each ended. Prints one JSON line per mode and a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record_fixtures as rf

from callback_dialer.app import build_dialer
from callback_dialer.clock import RealClock
from callback_dialer.config import parse_config

GAVE_UP = ("+79165550100", "+79165550106", "+79165550107")  # the carrier: 0/6/7 answer
LIVE = ("+79165550200", "+79165550201", "+79165550202", "+79165550203")
ALWAYS = {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
MODES = {
    "paused": {"enabled": False},
    "default": {},
    "old": {"callback_handicap": "-1s"},
}


def dialer_config(port: int, redis_url: str, prefix: str, dispatch: dict[str, Any]) -> Any:
    return parse_config(
        {
            "ami": {
                "host": "127.0.0.1",
                "port": port,
                "username": "dialer",
                "secret": rf.SECRETS["pbx", "dialer"],
                "ping_interval": "30s",
            },
            "redis": {"url": redis_url, "key_prefix": prefix},
            "hours": {"weekly": ALWAYS, "holidays": []},
            "web": {"enabled": False},
            # the lab's customers talk 5 s (CUSTOMER_TALK), its agents 6 s (TALK)
            "dispatch": {"min_talk_seconds": 3, **dispatch},
        },
        "lab",
    )


async def play(mode: str, redis_url: str) -> dict[str, Any]:
    prefix = f"lab-turns-{mode}-{secrets.token_hex(3)}"
    config = dialer_config(rf.PBX_PORT, redis_url, prefix, MODES[mode])
    dialer = build_dialer(
        config, clock=RealClock(), redis_url=redis_url, spool=Path(tempfile.mkdtemp()) / "s.jsonl"
    )
    starts: list[tuple[float, str, str]] = []
    start = dialer.dispatcher._start

    def recorded(claim: Any, interface: str) -> None:
        starts.append((time.monotonic(), interface, claim.callback.number))
        start(claim, interface)

    dialer.dispatcher._start = recorded
    joins: dict[str, float] = {}
    connects: dict[str, tuple[float, str]] = {}
    unpaused: list[float] = []
    async with rf.Lab() as lab:
        await lab.pause_all(True, "break")

        def watch(message: Any) -> None:
            number = message.get("CallerIDNum")
            if message.event == "QueueCallerJoin" and number in LIVE:
                joins.setdefault(number, time.monotonic())
            elif message.event == "AgentConnect" and number in LIVE:
                connects.setdefault(number, (time.monotonic(), message.get("Interface")))

        lab.pbx.on_event(watch)
        await dialer.start()
        while not (dialer.ami.authenticated and dialer.dispatcher.synced):
            await asyncio.sleep(0.01)
        lab.start_clock(time.monotonic())
        for i, number in enumerate(GAVE_UP):
            await lab.at(1.0 + i)
            await lab.call(rf.Caller(number, "2", patience=4.0))
        for i, number in enumerate(LIVE):
            await lab.at(9.0 + 0.5 * i)
            await lab.call(rf.Caller(number, "2"))
        await lab.at(21.0)
        unpaused.append(time.monotonic())
        for interface in ("Local/102@agents/n", "Local/103@agents/n"):
            await lab.pause(interface, False, "break")
        # until every live caller is served and every callback settled (or 120 s)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            waiting = await dialer.queue.waiting(limit=10) + await dialer.queue.in_progress()
            if len(connects) == len(LIVE) and (mode == "paused" or not waiting):
                break
            await asyncio.sleep(0.2)
        # the last calls end (agents talk 6 s) before the next mode's dialer starts: one that
        # it would find up would be a call it never saw begin
        await asyncio.sleep(10)
        finished = await dialer.queue.finished_between(0, float("inf"))
        still = await dialer.queue.waiting(limit=10) + await dialer.queue.in_progress()
        left = sum(dialer.metrics.left_to_live.values.values())
        await dialer.stop()
        await lab.pause_all(True, "break")
        await asyncio.sleep(2)
    back = unpaused[0]
    holds = {n: round(connects[n][0] - joins[n], 2) for n in LIVE if n in connects and n in joins}
    return {
        "mode": mode,
        "live_hold_seconds": [holds.get(n) for n in LIVE],
        "agents_to_live": {n: connects[n][1] for n in LIVE if n in connects},
        "first_live_connects_after_unpause": sorted(
            round(connects[n][0] - back, 3) for n in LIVE if n in connects
        )[:2],
        "callbacks_started_after_unpause": [
            (round(t - back, 3), agent, number) for t, agent, number in starts
        ],
        "callbacks_finished": {cb.number: cb.state.value for cb in finished},
        "callbacks_still_open": {cb.number: cb.state.value for cb in still},
        "agents_left_to_live": left,
    }


def plain_kit(source: Path, lab: Path) -> Path:
    """LAB/kit: the lab's scripts and configs as they are (agent first needs nothing more)."""
    kit = lab / "kit"
    if kit.exists():
        shutil.rmtree(kit)
    kit.mkdir(parents=True)
    for name in ("start.sh", "up.sh", "down.sh"):
        shutil.copy(source / name, kit / name)
        (kit / name).chmod(0o755)
    for name in ("common", "pbx", "carrier"):
        shutil.copytree(source / name, kit / name)
    return kit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", type=Path, required=True)
    parser.add_argument("--lab", type=Path, required=True)
    parser.add_argument("--ports", required=True, metavar="PBX_AMI,CARRIER_AMI,PBX_IAX,CAR_IAX")
    parser.add_argument("--kit", type=Path, default=rf.find_kit())
    parser.add_argument("--modes", default="paused,default,old")
    parser.add_argument("--rounds", type=int, default=1, help="play every mode this often")
    parser.add_argument(
        "--redis",
        default=os.environ.get("CALLBACK_DIALER_BENCH_REDIS", "redis://127.0.0.1:6379/14"),
    )
    args = parser.parse_args(argv)
    ports = [int(p) for p in args.ports.split(",")]
    rf.PBX_PORT, rf.CARRIER_PORT = ports[0], ports[1]
    kit = plain_kit(args.kit, args.lab)
    rf.read_secrets(kit)
    env = {**os.environ, "PREFIX": str(args.prefix)}
    for role, ami, iax, peer in (
        ("pbx", ports[0], ports[2], ports[3]),
        ("carrier", ports[1], ports[3], ports[2]),
    ):
        subprocess.run(
            [str(kit / "start.sh"), role, str(args.lab / role), str(ami), str(iax), str(peer)],
            env=env,
            check=True,
        )
    results = []
    try:
        time.sleep(1)
        for _ in range(args.rounds):
            for mode in args.modes.split(","):
                result = asyncio.run(play(mode, args.redis))
                print(json.dumps(result), flush=True)
                results.append(result)
    finally:
        rf.lab_command(kit, "down.sh", args.prefix, args.lab)
    for mode in args.modes.split(","):
        holds = [h for r in results if r["mode"] == mode for h in r["live_hold_seconds"] if h]
        if holds:
            print(
                f"{mode}: live holds {sorted(holds)} mean {sum(holds) / len(holds):.1f} s",
                file=sys.stderr,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
