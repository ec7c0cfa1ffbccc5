"""kill -9 the dialer while two callbacks talk, restart it, and check from outside that their
outcomes are recorded once and nobody is called a second time: on a real Asterisk lab
(../shared/asterisk-lab, started beforehand with start.sh on the ports given here).

    .venv/bin/python scripts/lab_adoption.py --prefix /path/to/asterisk-22 \\
        --pbx-rundir LAB/pbx --carrier-rundir LAB/carrier --ami-port 5050 \\
        --out tests/fixtures/adopt_after_kill.jsonl

Each dialer (``callback-dialer run``, a process of its own) reaches the PBX's AMI through a
recording proxy on a free loopback port, so the capture holds exactly what the restarted
dialer's connection carried (its CoreShowChannels listing of the two talking calls, the
events that ended them), in the format of tests/fixtures (``CaptureWriter``). The first run's
connection goes to ``OUT`` with ``.first`` before its suffix. Two callbacks are added by hand
(``add_manual``: the queue, not a caller, is under test here), agents talk ``--agent-talk``
seconds (the PBX's global TALK), customers ``--customer-talk`` (the carrier's
CUSTOMER_TALK). Prints one JSON line: what each callback's record says and how many
Originates each dialer sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis.asyncio as aioredis

from callback_dialer.ami.capture import CaptureWriter
from callback_dialer.clock import RealClock
from callback_dialer.config import parse_config
from callback_dialer.queue.store import CallbackQueue

REPO = Path(__file__).resolve().parent.parent
NUMBERS = ("+79161230011", "+79161230021")  # the carrier: a last digit 1 answers and talks


class RecordingProxy:
    """A loopback TCP proxy to the PBX's AMI that writes both directions, one message a line."""

    def __init__(self, target_port: int, out: Path) -> None:
        self.target_port, self.out = target_port, out
        self.server: asyncio.Server | None = None
        self.originates = 0
        self.connections = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, client_r, client_w) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:  # Asterisk restarting: the dialer sees a refused link, as without us
            client_w.close()
            return
        # One file per connection (the fixtures' format): OUT, then OUT.2.jsonl, ...
        self.connections += 1
        n = self.connections
        path = self.out if n == 1 else self.out.with_suffix(f".{n}.jsonl")
        handle = path.open("w", encoding="utf-8")
        writer = CaptureWriter(handle)

        async def pipe(reader, sink, direction: str) -> None:
            buffer, greeted = "", direction == "out"
            try:
                while data := await reader.read(65536):
                    sink.write(data)
                    buffer += data.decode("utf-8", "replace")
                    if not greeted and "\r\n" in buffer:
                        line, _, buffer = buffer.partition("\r\n")
                        writer(direction, line + "\r\n")
                        greeted = True
                    while "\r\n\r\n" in buffer:
                        message, _, buffer = buffer.partition("\r\n\r\n")
                        if direction == "out" and message.lower().startswith("action: originate"):
                            self.originates += 1
                        writer(direction, message + "\r\n\r\n")
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(client_r, up_w, "out"), pipe(up_r, client_w, "in"))
        handle.close()


def lab_cli(prefix: str, rundir: str, command: str) -> str:
    return subprocess.run(
        [f"{prefix}/sbin/asterisk", "-C", f"{rundir}/etc/asterisk.conf", "-rx", command],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def write_config(path: Path, ami_port: int, key_prefix: str, instance: str) -> Path:
    path.write_text(
        f"""
[ami]
host = "127.0.0.1"
port = {ami_port}
username = "dialer"
secret = "labsecret"
ping_interval = "5m"

[redis]
url = "redis://127.0.0.1:6379/13"
key_prefix = "{key_prefix}"

[queue]
spool_file = "{path.parent}/spool.jsonl"

[leader]
instance = "{instance}"

[dispatch]
min_talk_seconds = 10
wrapup_seconds = 5
queues = {{ sales = ["new_connection"], support = ["support", "billing", "other"] }}

[[dispatch.trunks]]
name = "carrier"
max_calls = 10
numbers = ["*"]
dial = "IAX2/{{trunk}}/{{number}}"

[web]
enabled = false

[logging]
format = "json"
""",
        "utf-8",
    )
    return path


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--pbx-rundir", required=True)
    ap.add_argument("--carrier-rundir", required=True)
    ap.add_argument("--ami-port", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--agent-talk", type=int, default=60)
    ap.add_argument("--customer-talk", type=int, default=25)
    ap.add_argument("--kill-after-talk", type=float, default=4.0)
    ap.add_argument(
        "--fault",
        choices=("kill", "restart"),
        default="kill",
        help="kill: kill -9 the dialer and start it again; restart: `core restart now` on the "
        "PBX while the same dialer runs",
    )
    args = ap.parse_args()

    lab_cli(args.prefix, args.pbx_rundir, f"dialplan set global TALK {args.agent_talk}")
    lab_cli(
        args.prefix, args.carrier_rundir, f"dialplan set global CUSTOMER_TALK {args.customer_talk}"
    )
    work = args.out.parent / f".lab-{secrets.token_hex(3)}"
    work.mkdir(parents=True, exist_ok=True)
    key_prefix = f"lab-adopt-{secrets.token_hex(4)}"
    first_out = args.out.with_suffix(".first.jsonl")
    proxies = [RecordingProxy(args.ami_port, first_out), RecordingProxy(args.ami_port, args.out)]
    ports = [await p.start() for p in proxies]
    configs = [
        write_config(work / f"run{i}.toml", port, key_prefix, "lab-dialer")
        for i, port in enumerate(ports)
    ]
    config = parse_config(
        __import__("tomllib").loads(configs[0].read_text("utf-8")), str(configs[0])
    )
    client = aioredis.Redis.from_url("redis://127.0.0.1:6379/13")
    queue = CallbackQueue(client, config, RealClock())

    def start(i: int) -> subprocess.Popen:
        log = (work / f"run{i}.log").open("w")
        return subprocess.Popen(
            [str(REPO / ".venv/bin/callback-dialer"), "run", "--config", str(configs[i])],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "CALLBACK_DIALER_AMI_SECRET": "labsecret"},
        )

    ids = [(await queue.add_manual(n, "support", "lab", name="Lab")).id for n in NUMBERS]
    first = start(0)
    deadline = time.monotonic() + 60
    while True:
        states = [await queue.get(i) for i in ids]
        if all(cb and cb.stage == "talking" for cb in states):
            break
        assert first.poll() is None and time.monotonic() < deadline, "no two calls talking"
        await asyncio.sleep(0.2)
    await asyncio.sleep(args.kill_after_talk)
    channels = lab_cli(args.prefix, args.pbx_rundir, "core show channels concise")
    faulted = time.time()
    if args.fault == "kill":
        first.send_signal(signal.SIGKILL)
        first.wait()
        running = start(1)
    else:
        # The PBX goes down and comes back with no calls; the dialer stays (and reconnects).
        lab_cli(args.prefix, args.pbx_rundir, "core restart now")
        running = first
    deadline = time.monotonic() + args.customer_talk + 60
    while True:
        states = [await queue.get(i) for i in ids]
        if all(cb and cb.state.value != "dialing" for cb in states):
            break
        assert running.poll() is None and time.monotonic() < deadline, "outcomes not recorded"
        await asyncio.sleep(0.5)
    await asyncio.sleep(15)  # a second call, if there were one, would be placed by now
    running.send_signal(signal.SIGTERM)
    running.wait(timeout=30)
    states = [await queue.get(i) for i in ids]
    report = {
        "fault": args.fault,
        "fault_at": faulted,
        "channels_at_fault": channels.strip().splitlines(),
        "originates": {"first_run": proxies[0].originates, "second_run": proxies[1].originates},
        "callbacks": [
            {
                "id": cb.id,
                "number": cb.number,
                "state": cb.state.value,
                "attempts": [a.to_json() for a in cb.attempt_log],
                "history": [(e.event, e.reason) for e in await queue.history(cb.id)],
            }
            for cb in states
        ],
    }
    print(json.dumps(report, indent=1))
    await client.aclose()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
