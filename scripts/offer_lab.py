#!/usr/bin/env python3
"""Run the generated dialplan's callback offer on a real Asterisk, with the real dialer, and
record what crossed the wires (tests/fixtures/offer_*.jsonl, agi_offer.jsonl).

A development tool, never run by CI: it needs Asterisk installed under PREFIX, the two-instance
lab of ../shared/asterisk-lab, a redis-server on 127.0.0.1:6379, and for spoken prompts the
Debian packages asterisk-core-sounds-en-gsm and asterisk-core-sounds-ru-gsm.

    .venv/bin/python scripts/offer_lab.py --prefix /work/ast/p22 --run /work/lab/i14a \\
        --ami 5070 --carrier-ami 5071 --iax 4610 --carrier-iax 4611 --agi 4612 \\
        --out tests/fixtures [--language ru]

What it does, in order:

1. Renders the lab into RUN/pbx and RUN/carrier as the lab's start.sh does (its ports), with
   four changes, all on our side: the PBX's dialplan is ``callback-dialer dialplan`` for the
   lab config below (trunk ``carrier``, ``dial = "IAX2/{trunk}/{number}"``) followed by the lab's
   own ``[agents]`` context (the agent phones); its queues leave through
   ``callback-queue-exit``; a ``labdriver`` AMI user reads the dialplan events; both
   instances read Asterisk's core sounds from /usr/share/asterisk/sounds (the lab installs
   none). ``--language ru`` sets ``language = ru`` on the PBX's trunk peer.
2. Starts both instances, a redis key prefix of its own, and the real dialer
   (``callback-dialer run``) with its FastAGI server on ``--agi``. The dialplan's
   ``CALLBACK_AGI_URL`` points at a recording proxy on ``--agi + 1`` that forwards to it: the
   AGI exchange is recorded byte for byte.
3. Records the PBX's AMI (user ``dialer``) with ``callback-dialer record`` while it plays the
   callers below. Each caller is an Originate on the carrier into ``[lab-caller]`` (it just
   holds the line); the keys are pressed with PlayDTMF on the carrier's channel the moment the
   PBX's dialplan reaches the app that reads them (WaitExten, Read), seen on the labdriver AMI.
4. Waits for the dialer to call back every accepted offer, then prints, per caller, the ETA
   the IVR promised and the real time from taking the offer to the callback's Dial.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from record_fixtures import Ami, find_kit  # noqa: E402

from callback_dialer.ami.frames import AmiMessage  # noqa: E402
from callback_dialer.config import parse_config  # noqa: E402
from callback_dialer.ivr.dialplan import render_dialplan  # noqa: E402

SOUNDS = Path("/usr/share/asterisk/sounds")


@dataclass
class Caller:
    name: str
    number: str  # the caller ID, digits
    ivr: str  # the IVR key
    reads: list[str]  # what the caller types at each Read, in order ("" : nothing)
    star_after: float | None = None  # presses * this long after joining the queue
    expect: str = ""  # the number we should call back ("" : none)
    # filled in while it runs
    uniqueid: str = ""
    pbx_channel: str = ""
    read_count: int = 0
    offered_eta: str = ""
    accepted_at: float | None = None
    called_back_at: float | None = None
    called_number: str = ""
    events: list[str] = field(default_factory=list)


def lab_config(args: argparse.Namespace, prefix: str) -> dict:
    return {
        "ami": {"port": args.ami, "username": "dialer", "secret": "labsecret"},
        "redis": {"url": "redis://127.0.0.1:6379/13", "key_prefix": prefix},
        "hours": {
            "weekly": {
                d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
            }
        },
        "dispatch": {
            "trunks": [
                {
                    "name": "carrier",
                    "max_calls": 10,
                    "numbers": ["*"],
                    "dial": "IAX2/{trunk}/{number}",
                }
            ],
            "wrapup_seconds": 2,
            "min_talk_seconds": 3,
            "agent_cooldown": "10s",
            "tick_seconds": 2,
        },
        "retry": {"delays": ["1m"]},
        "ivr": {
            "offer_after": 20.0 if args.scenario == "door" else 150.0,
            "agi_host": "127.0.0.1",
            "agi_port": args.agi,
            "agi_address": f"127.0.0.1:{args.agi + 1}",
        },
        "web": {"enabled": False},
        "queue": {"spool_file": str(Path(args.run) / "spool.jsonl")},
        "logging": {"format": "json"},
    }


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def write_toml(data: dict, path: Path) -> None:
    lines = []
    for section, body in data.items():
        lines.append(f"[{section}]")
        for key, value in body.items():
            lines.append(f"{key} = {toml_value(value)}")
        lines.append("")
    path.write_text("\n".join(lines))


def render_role(
    kit: Path, role: str, run: Path, prefix: Path, ami: int, iax: int, peer: int
) -> Path:
    lab = run / role
    if lab.exists():
        shutil.rmtree(lab)
    for sub in ("etc", "var/lib", "spool", "run", "log", "agi-bin", "data"):
        (lab / sub).mkdir(parents=True, exist_ok=True)
    for f in [*(kit / "common").glob("*.conf"), *(kit / role).glob("*.conf")]:
        text = (
            f.read_text()
            .replace("@ASTLAB@", str(lab))
            .replace("@PREFIX@", str(prefix))
            .replace("@AMIPORT@", str(ami))
            .replace("@IAXPORT@", str(iax))
            .replace("@PEERPORT@", str(peer))
        )
        (lab / "etc" / f.name).write_text(text)
    conf = lab / "etc" / "asterisk.conf"
    conf.write_text(re.sub(r"astdatadir => .*", f"astdatadir => {lab / 'data'}", conf.read_text()))
    # Everything of the installed data folder (documentation: Stasis will not start without
    # it), and Asterisk's core sounds where the installation has none.
    for item in (prefix / "var" / "lib" / "asterisk").iterdir():
        if item.name != "sounds":
            (lab / "data" / item.name).symlink_to(item)
    installed = prefix / "var" / "lib" / "asterisk" / "sounds"
    if SOUNDS.is_dir():
        (lab / "data" / "sounds").symlink_to(SOUNDS)
    elif installed.is_dir():
        (lab / "data" / "sounds").symlink_to(installed)
    return lab


def pbx_dialplan(config_data: dict, kit: Path) -> str:
    lab = render_dialplan(parse_config(config_data, "lab"))
    agents = (kit / "pbx" / "extensions.conf").read_text()
    agents = agents[agents.index("; Agent phones") : agents.index("; Callbacks: the agent")]
    return (
        "[general]\nstatic = yes\nwriteprotect = no\n\n"
        + lab
        + "\n; ---------------------------------------- the lab's agent phones (asterisk-lab)\n"
        + agents
    )


LAB_CALLER = """
; scripts/offer_lab.py: a subscriber who calls the PBX and holds the line; the keys come
; from the driver (PlayDTMF on this channel), the hangup from the PBX (or after 240 s).
[lab-caller]
exten => s,1,Wait(240)
 same => n,Hangup()
"""

LABDRIVER = """
[labdriver]
secret = labdriversecret
deny = 0.0.0.0/0.0.0.0
permit = 127.0.0.1/255.255.255.255
read = all
write = all
"""


async def start_asterisk(prefix: Path, lab: Path, port: int) -> None:
    log = open(lab / "log" / "console.log", "w")  # noqa: SIM115
    subprocess.Popen(
        [str(prefix / "sbin" / "asterisk"), "-C", str(lab / "etc" / "asterisk.conf"), "-f", "-n"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    for _ in range(100):
        with contextlib.suppress(OSError):
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{lab} did not open AMI {port}")


def stop_asterisk(prefix: Path, lab: Path) -> None:
    subprocess.run(
        [
            str(prefix / "sbin" / "asterisk"),
            "-C",
            str(lab / "etc" / "asterisk.conf"),
            "-rx",
            "core stop now",
        ],
        capture_output=True,
        timeout=30,
    )


class AgiRecorder:
    """A TCP proxy in front of the dialer's FastAGI server that writes what crosses it."""

    def __init__(self, listen: int, target: int, out: Path) -> None:
        self.listen, self.target, self.out = listen, target, out
        self.file = out.open("w")
        self.t0 = time.monotonic()
        self.conns = 0
        self.server: asyncio.Server | None = None

    def write(self, conn: int, direction: str, data: bytes) -> None:
        line = {
            "t": round(time.monotonic() - self.t0, 4),
            "conn": conn,
            "dir": direction,
            "raw": data.decode("utf-8", errors="replace"),
        }
        self.file.write(json.dumps(line, ensure_ascii=False) + "\n")
        self.file.flush()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.listen)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.conns += 1
        conn = self.conns
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return

        async def pump(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, direction: str
        ) -> None:
            # Line by line: each AGI line is one record.
            while line := await src.readline():
                self.write(conn, direction, line)
                dst.write(line)
                await dst.drain()
            dst.close()

        await asyncio.gather(
            pump(reader, up_w, "asterisk"), pump(up_r, writer, "dialer"), return_exceptions=True
        )

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        self.file.close()


class Driver:
    def __init__(self, pbx: Ami, carrier: Ami, callers: list[Caller]) -> None:
        self.pbx, self.carrier = pbx, carrier
        self.callers = {c.number: c for c in callers}
        self.by_channel: dict[str, Caller] = {}
        self.t0 = time.monotonic()
        self.dials: list[tuple[float, str]] = []
        self._tasks: set[asyncio.Task] = set()
        pbx.on_event(self.on_pbx)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def call(self, caller: Caller) -> None:
        caller.uniqueid = f"labcaller-{caller.name}-{int(time.time())}"
        await self.carrier.action(
            {
                "Action": "Originate",
                "Channel": "IAX2/pbx",
                "Context": "lab-caller",
                "Exten": "s",
                "Priority": "1",
                "CallerID": f'"{caller.name}" <{caller.number}>',
                "ChannelId": caller.uniqueid,
                "Async": "true",
            }
        )

    async def keys(self, caller: Caller, digits: str, delay: float = 0.6) -> None:
        await asyncio.sleep(delay)
        for digit in digits:
            await self.carrier.action(
                {
                    "Action": "PlayDTMF",
                    "Channel": caller.uniqueid,
                    "Digit": digit,
                    "Duration": "120",
                }
            )
            await asyncio.sleep(0.35)

    def on_pbx(self, m: AmiMessage) -> None:
        event = m.event
        channel = m.get("Channel") or ""
        caller = self.by_channel.get(channel)
        if caller is None and event == "Newchannel":
            c = self.callers.get(m.get("CallerIDNum") or "")
            if c is not None and channel.startswith("IAX2/carrier") and not c.pbx_channel:
                c.pbx_channel = channel
                self.by_channel[channel] = c
            return
        if event == "DialBegin":
            dial = m.get("DialString") or ""
            self.dials.append((self.now(), dial))
            for c in self.callers.values():
                if c.expect and dial.endswith("/" + c.expect) and c.called_back_at is None:
                    c.called_back_at = self.now()
                    c.called_number = dial.rsplit("/", 1)[-1]
            return
        if caller is None:
            return
        if event == "Newexten":
            app, data = m.get("Application") or "", m.get("AppData") or ""
            if app == "WaitExten":
                self._spawn(self.keys(caller, caller.ivr))
            elif app == "Read":
                i = caller.read_count
                caller.read_count += 1
                if i < len(caller.reads) and caller.reads[i]:
                    typed = caller.reads[i]
                    self._spawn(self.keys(caller, typed + ("#" if len(typed) > 1 else "")))
            elif app == "AGI" and "/register," in data:
                caller.accepted_at = self.now()
            caller.events.append(f"{self.now():7.2f} {app}({data[:60]})")
        elif event == "QueueCallerJoin" and caller.star_after is not None:
            self._spawn(self.keys(caller, "*", caller.star_after))
        elif event == "VarSet" and m.get("Variable") == "CALLBACK_ETA" and m.get("Value"):
            caller.offered_eta = m.get("Value") or ""


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prefix", required=True, type=Path)
    ap.add_argument("--run", required=True, type=Path)
    ap.add_argument("--ami", type=int, default=5070)
    ap.add_argument("--carrier-ami", type=int, default=5071)
    ap.add_argument("--iax", type=int, default=4610)
    ap.add_argument("--carrier-iax", type=int, default=4611)
    ap.add_argument("--agi", type=int, default=4612)
    ap.add_argument("--scenario", choices=("door", "star"), default="door")
    ap.add_argument("--talk", type=int, default=100, help="agents' talk time (TALK)")
    ap.add_argument("--language", default="")
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures")
    ap.add_argument("--name", default="offer_lab")
    ap.add_argument("--keep", action="store_true", help="leave the lab running")
    args = ap.parse_args()
    kit = find_kit()
    assert kit is not None, "no ../shared/asterisk-lab"
    run: Path = args.run
    run.mkdir(parents=True, exist_ok=True)
    key_prefix = f"offerlab-{int(time.time())}"
    config_data = lab_config(args, key_prefix)
    write_toml(config_data, run / "dialer.toml")

    pbx = render_role(kit, "pbx", run, args.prefix, args.ami, args.iax, args.carrier_iax)
    carrier = render_role(
        kit, "carrier", run, args.prefix, args.carrier_ami, args.carrier_iax, args.iax
    )
    (pbx / "etc" / "extensions.conf").write_text(pbx_dialplan(config_data, kit))
    queues = pbx / "etc" / "queues.conf"
    queues.write_text(
        queues.read_text().replace("context = queue-exit", "context = callback-queue-exit")
    )
    with (pbx / "etc" / "manager.conf").open("a") as f:
        f.write(LABDRIVER)
    with (carrier / "etc" / "extensions.conf").open("a") as f:
        f.write(LAB_CALLER)
    if args.language:
        iax = pbx / "etc" / "iax.conf"
        iax.write_text(
            iax.read_text().replace(
                "context = ivr-in", f"context = ivr-in\nlanguage = {args.language}"
            )
        )

    await start_asterisk(args.prefix, pbx, args.ami)
    await start_asterisk(args.prefix, carrier, args.carrier_ami)
    env = {**os.environ, "CALLBACK_DIALER_AMI_SECRET": "labsecret"}
    cli = [str(REPO / ".venv" / "bin" / "callback-dialer")]
    dialer_log = (run / "dialer.log").open("w")
    dialer = subprocess.Popen(
        [*cli, "run", "--config", str(run / "dialer.toml")],
        stdout=dialer_log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=run,
        start_new_session=True,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    agi = AgiRecorder(args.agi + 1, args.agi, args.out / f"agi_{args.name}.jsonl")
    await agi.start()
    record = subprocess.Popen(
        [
            *cli,
            "record",
            str(args.out / f"{args.name}.jsonl"),
            "--seconds",
            "600",
            "--config",
            str(run / "dialer.toml"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    driver_pbx = Ami("labdriver", args.ami, ("labdriver", "labdriversecret"))
    driver_carrier = Ami("carrier", args.carrier_ami, ("driver", "driversecret"))
    try:
        await driver_pbx.connect()
        await driver_carrier.connect()
        await asyncio.sleep(4)  # the dialer connects and resyncs
        # Both support agents are busy with two warm-up calls (TALK s each) while the callers
        # come. "door": the expected wait (about a third of a handle time) is longer than
        # offer_after, so the door offers at once. "star": offer_after is longer than that
        # wait, the callers queue and press * after 2 s. The garbage caller types two numbers
        # the phone policy refuses, is refused, and hangs up: a missed call like any other,
        # called back on the caller ID.
        star = 2.0 if args.scenario == "star" else None
        callers = [
            Caller("confirm", "79165550101", "2", ["1"], star_after=star, expect="79165550101"),
            Caller(
                "other",
                "79165550202",
                "2",
                ["2", "89035550211", "1"],
                star_after=star,
                expect="79035550211",
            ),
            Caller(
                "garbage",
                "79165550301",
                "2",
                ["2", "12", "555"],
                star_after=star,
                expect="79165550301",
            ),
        ]
        warm = [Caller(f"warm{i}", f"7916555090{i}", "2", []) for i in (1, 2)]
        drv = Driver(driver_pbx, driver_carrier, callers + warm)
        await driver_pbx.action({"Action": "Setvar", "Variable": "TALK", "Value": str(args.talk)})
        for w in warm:
            await drv.call(w)
            await asyncio.sleep(1.5)
        await asyncio.sleep(8)  # both answered by agents 102 and 103
        for c in callers:
            await drv.call(c)
            await asyncio.sleep(20)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and any(
            c.expect and c.called_back_at is None for c in callers
        ):
            await asyncio.sleep(1)
        await asyncio.sleep(15)
        for c in callers:
            print(
                f"--- {c.name} ({c.number}) eta={c.offered_eta} accepted_at={c.accepted_at} "
                f"called_back_at={c.called_back_at} to={c.called_number or '-'}"
            )
            for e in c.events:
                print("   ", e)
            if c.accepted_at is not None and c.called_back_at is not None:
                print(
                    f"    promised {c.offered_eta} min, called back after "
                    f"{c.called_back_at - c.accepted_at:.0f} s"
                )
        print("--- every Dial the PBX made:")
        for at, dial in drv.dials:
            print(f"    {at:7.2f} {dial}")
        return 0
    finally:
        await driver_pbx.close()
        await driver_carrier.close()
        record.terminate()
        with contextlib.suppress(Exception):
            record.wait(10)
        dialer.terminate()
        with contextlib.suppress(Exception):
            dialer.wait(20)
        await agi.close()
        if not args.keep:
            stop_asterisk(args.prefix, pbx)
            stop_asterisk(args.prefix, carrier)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
