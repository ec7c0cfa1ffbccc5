"""Callbacks over an IAX2 trunk with the agent whisper and queue_log, on a real Asterisk lab
running the dialplan `callback-dialer dialplan` generates (../shared/asterisk-lab, started
beforehand on the ports given here, with that dialplan as the PBX's extensions.conf).

    .venv/bin/python scripts/lab_whisper_queue_log.py --prefix /path/to/asterisk-22 \\
        --pbx-rundir LAB/pbx --carrier-rundir LAB/carrier --ami-port 5080 \\
        --carrier-port 5081 --out-dir tests/fixtures
    .venv/bin/python scripts/lab_whisper_queue_log.py ... --print-config   # the dialer's TOML

Three subscribers call in while every agent is paused and hang up in the queue: +79161230011
(sales), +79161230021 (support, twice: one callback, two calls) and +79161230032 (support; the
carrier answers a last digit 2 busy). Then agents 101 (sales; whisper in Russian through
``[whisper] agent_languages``) and 103 (support; English) come back and the dialer
(``callback-dialer run``, its AMI user ``kit`` with the kit's least privilege plus ``agent``)
calls everyone back. Written to OUT-DIR:

- ``whisper_queue_log.jsonl``: the dialer's own AMI session (through a recording proxy), its
  Originates with the whisper's variables and its QueueLog actions with Asterisk's answers;
- ``whisper_queue_log.dialplan.jsonl``: a second session (the lab's ``dialer`` user, which also
  reads the ``dialplan`` class) recorded by ``callback-dialer record``: the Newexten events of
  the whisper on each agent's channel before the customer's Dial;
- ``whisper_queue_log.queue_log``: the PBX's queue_log file (app_queue's lines and ours);
- ``queue_log_refused.jsonl``: a QueueLog sent by the ``nolog`` user (no ``agent`` class);
- ``whisper_queue_log.report.json``: what each callback's record says.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab_adoption import RecordingProxy, lab_cli

from callback_dialer.ami.capture import CaptureWriter
from callback_dialer.ami.frames import FrameDecoder, encode_message
from callback_dialer.clock import RealClock
from callback_dialer.config import parse_config
from callback_dialer.queue.store import CallbackQueue

REPO = Path(__file__).resolve().parent.parent
AGENTS = ("Local/101@agents/n", "Local/102@agents/n", "Local/103@agents/n")
CALLERS = (  # number, IVR digit, seconds held before hanging up
    ("+79161230011", "1", 7),
    ("+79161230021", "2", 6),
    ("+79161230032", "2", 6),
    ("+79161230021", "2", 6),  # the same subscriber again: merged
)


def dialer_toml(ami_port: int, user: str, secret_env: bool, key_prefix: str, work: Path) -> str:
    return f"""
[ami]
host = "127.0.0.1"
port = {ami_port}
username = "{user}"
{"" if secret_env else 'secret = "kitsecret"'}
ping_interval = "5m"

[redis]
url = "redis://127.0.0.1:6379/13"
key_prefix = "{key_prefix}"

[queue]
spool_file = "{work}/spool.jsonl"

[hours.weekly]
mon = ["00:00-24:00"]
tue = ["00:00-24:00"]
wed = ["00:00-24:00"]
thu = ["00:00-24:00"]
fri = ["00:00-24:00"]
sat = ["00:00-24:00"]
sun = ["00:00-24:00"]

[dispatch]
min_talk_seconds = 5
wrapup_seconds = 3
queues = {{ sales = ["new_connection"], support = ["support", "billing", "other"] }}

[[dispatch.trunks]]
name = "carrier"
max_calls = 10
numbers = ["*"]
dial = "IAX2/{{trunk}}/{{number}}"

[retry]
delays = ["10m"]

[whisper]
enabled = true
language = "en"
agent_languages = {{ "Local/101@agents/n" = "ru" }}

[queue_log]
enabled = true

[web]
enabled = false

[logging]
format = "json"
"""


async def ami_session(port: int, user: str, secret: str, actions: list[dict], out: Path) -> None:
    """Log in, send ``actions`` one by one, record everything (CaptureWriter), log off."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    with out.open("w", encoding="utf-8") as handle:
        capture = CaptureWriter(handle)
        capture("in", (await reader.readline()).decode())
        buffer = ""
        login = {"Action": "Login", "Username": user, "Secret": secret, "Events": "off"}
        for n, action in enumerate([login, *actions, {"Action": "Logoff"}], 1):
            data = encode_message({**action, "ActionID": f"lab-{n}"})
            capture("out", data.decode())
            writer.write(data)
            await writer.drain()
            answered = False
            while not answered:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                buffer += chunk.decode()
                while "\r\n\r\n" in buffer:
                    message, _, buffer = buffer.partition("\r\n\r\n")
                    capture("in", message + "\r\n\r\n")
                    answered = answered or f"ActionID: lab-{n}" in message
    writer.close()


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--pbx-rundir", required=True)
    ap.add_argument("--carrier-rundir", required=True)
    ap.add_argument("--ami-port", type=int, required=True)
    ap.add_argument("--carrier-port", type=int, required=True)
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--print-config", action="store_true")
    args = ap.parse_args()
    if args.print_config:
        print(dialer_toml(args.ami_port, "kit", False, "lab", Path("/tmp")))
        return 0
    out = args.out_dir
    work = out / f".lab-{secrets.token_hex(3)}"
    work.mkdir(parents=True, exist_ok=True)
    key_prefix = f"lab-whisper-{secrets.token_hex(4)}"
    lab_cli(args.prefix, args.pbx_rundir, "dialplan set global TALK 40")
    lab_cli(args.prefix, args.carrier_rundir, "dialplan set global CUSTOMER_TALK 12")

    proxy = RecordingProxy(args.ami_port, out / "whisper_queue_log.jsonl")
    port = await proxy.start()
    config_path = work / "dialer.toml"
    config_path.write_text(dialer_toml(port, "kit", True, key_prefix, work), "utf-8")
    observer_path = work / "observer.toml"
    observer_path.write_text(dialer_toml(args.ami_port, "dialer", True, key_prefix, work), "utf-8")
    config = parse_config(tomllib.loads(config_path.read_text("utf-8")), str(config_path))
    client = aioredis.Redis.from_url("redis://127.0.0.1:6379/13")
    queue = CallbackQueue(client, config, RealClock())
    bin_ = str(REPO / ".venv/bin/callback-dialer")
    observer = subprocess.Popen(
        [
            bin_,
            "record",
            str(out / "whisper_queue_log.dialplan.jsonl"),
            "--seconds",
            "400",
            "--config",
            str(observer_path),
        ],
        stdout=(work / "observer.log").open("w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "CALLBACK_DIALER_AMI_SECRET": "labsecret"},
    )
    await asyncio.sleep(1.5)
    await _pause(args.ami_port, AGENTS, True)
    dialer = subprocess.Popen(
        [bin_, "run", "--config", str(config_path)],
        stdout=(work / "dialer.log").open("w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "CALLBACK_DIALER_AMI_SECRET": "kitsecret"},
    )
    # The callers only once the dialer follows the PBX: a call it first meets in its resync
    # is another scenario (detection), not this one.
    deadline = time.monotonic() + 30
    while proxy.connections < 1:
        assert dialer.poll() is None and time.monotonic() < deadline, "the dialer did not connect"
        await asyncio.sleep(0.2)
    await asyncio.sleep(3)
    started = time.time()
    for n, (number, digit, hold) in enumerate(CALLERS):
        await _carrier_call(args.carrier_port, number, digit, hold, n)
        await asyncio.sleep(hold + 4 if n == 2 else 1.5)
    # Every caller gave up; let the first missed call be over a minute old, then agents back.
    await asyncio.sleep(max(0.0, started + 70 - time.time()))
    await _pause(args.ami_port, ("Local/101@agents/n", "Local/103@agents/n"), False)

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        rows = await queue.finished_between(0, float("inf"))
        waiting = await queue.waiting(limit=10)
        if len(rows) >= 2 and all(c.state.value == "scheduled" for c in waiting) and waiting:
            break
        await asyncio.sleep(1)
    await asyncio.sleep(8)  # the last queue_log lines
    dialer.send_signal(signal.SIGTERM)
    dialer.wait(timeout=60)
    await ami_session(
        args.ami_port,
        "nolog",
        "nologsecret",
        [
            {
                "Action": "QueueLog",
                "Queue": "support",
                "UniqueId": "NONE",
                "Event": "CALLBACKTEST",
                "Message": "refused",
            }
        ],
        out / "queue_log_refused.jsonl",
    )
    observer.send_signal(signal.SIGINT)
    observer.wait(timeout=30)
    shutil.copy(Path(args.pbx_rundir) / "log" / "queue_log", out / "whisper_queue_log.queue_log")
    report = {"asterisk": lab_cli(args.prefix, args.pbx_rundir, "core show version").strip()}
    callbacks = []
    for cb in sorted(
        await queue.finished_between(0, float("inf")) + await queue.waiting(limit=10),
        key=lambda c: c.id,
    ):
        callbacks.append(
            {
                "id": cb.id,
                "number": cb.number,
                "category": cb.category,
                "state": cb.state.value,
                "missed_count": cb.missed_count,
                "call_id": cb.call_id,
                "queue": cb.queue,
                "attempts": [a.to_json() for a in cb.attempt_log],
                "history": [(e.event, e.reason) for e in await queue.history(cb.id)],
            }
        )
    report["callbacks"] = callbacks
    report["originates"] = proxy.originates
    (out / "whisper_queue_log.report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    # The lab's throwaway keys go with it.
    async for key in client.scan_iter(match="{" + key_prefix + "}*", count=1000):
        await client.delete(key)
    await client.aclose()
    return 0


async def _actions(port: int, user: str, secret: str, actions: list[dict]) -> None:
    """Unrecorded: log in as ``user``, send ``actions`` one by one (each answered), log off."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()
    decoder = FrameDecoder()
    login = {"Action": "Login", "Username": user, "Secret": secret, "Events": "off"}
    for i, action in enumerate([login, *actions, {"Action": "Logoff"}]):
        writer.write(encode_message({**action, "ActionID": f"c-{i}"}))
        await writer.drain()
        answered = False
        while not answered:
            chunk = await reader.read(4096)
            if not chunk:
                break
            answered = any(f.get("ActionID") == f"c-{i}" for f in decoder.feed(chunk))
    writer.close()


async def _carrier_call(port: int, number: str, digit: str, hold: float, n: int) -> None:
    """A subscriber calling the PBX: the carrier's ``driver`` originates into ``caller``."""
    call = {
        "Action": "Originate",
        "Channel": "IAX2/pbx",
        "Context": "caller",
        "Exten": "s",
        "Priority": "1",
        "CallerID": number,
        "ChannelId": f"caller-{n + 1}-{secrets.token_hex(2)}",
        "Async": "true",
        "Variable": [f"DIGIT={digit}", f"HOLD={hold}"],
    }
    await _actions(port, "driver", "driversecret", [call])


async def _pause(port: int, interfaces: tuple[str, ...], paused: bool) -> None:
    """The PBX's ``driver``: QueuePause in every queue of the member."""
    await _actions(
        port,
        "driver",
        "driversecret",
        [
            {
                "Action": "QueuePause",
                "Interface": i,
                "Paused": "true" if paused else "false",
                "Reason": "lunch",
            }
            for i in interfaces
        ],
    )


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
