#!/usr/bin/env python3
"""The catch-up on a real Asterisk: the shipped dialplan's AstDB records, the dialer away.

A development tool, never run by CI (it needs an installed Asterisk; it builds nothing). It
starts the two-instance lab of ../shared/asterisk-lab on the ports given, with the PBX's
dialplan replaced by what ``callback-dialer dialplan`` generates (the IAX2 trunk ``carrier``),
plus the lab's ``[agents]`` phones; queues.conf gets ``context = callback-queue-exit`` and
``setinterfacevar = yes``, as config/asterisk/queues.conf has them. Then:

1. traffic while no dialer runs: callers abandon the sales queue, hang up in the IVR, get
   served in support, call twice, press ``*``, call anonymously or too briefly;
2. a recorded AMI session of the ``dialer`` user reads what the dialplan wrote, exactly as the
   dialer's AstDB helper asks (DBGetTree, DBGet, DBDel, DBPut, DBDelTree, found and not
   found), places two callbacks (agent first, with CALLBACK_CLAIM) and reads their fates:
   ``OUT/catchup.jsonl``, what tests/test_catchup_fixtures.py replays;
3. the real dialer (``run_dialer.py``) starts, catches up, and the callbacks in Redis are
   printed and checked against what a live dialer makes of the same traffic;
4. more traffic with the dialer running, a SIGKILL mid-traffic, a restart: checked the same.

    .venv/bin/python scripts/record_catchup.py --prefix /work/ast/p22 --run /work/lab/i16/22 \\
        --ports 5060,5061,4600,4601 --out tests/fixtures/catchup/22
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record_fixtures as rf

from callback_dialer.config import parse_config
from callback_dialer.ivr.dialplan import render_dialplan
from callback_dialer.queue.keys import Keys

REPO = Path(__file__).resolve().parents[1]
FAMILY = "callback-dialer"
NAME = "Иван & Co=100% Ваня"  # a caller ID name the record must carry unharmed

A, B, C, D = "+79161110001", "+79161110002", "+79161110003", "+79161110004"
G, H, K = "+79161110007", "+79161110008", "+79161110009"
E1, E2 = "+79161110011", "+79161110012"

EXPECTED = {
    A: [("pending", "new_connection", "abandon", "1")],
    B: [("pending", "other", "ivr_hangup", "1")],
    D: [("pending", "new_connection", "abandon", "2")],
    H: [("done", "new_connection", "abandon", "1")],
    K: [("pending", "new_connection", "explicit", "1")],
}


def dialer_config() -> dict:
    return {
        "dispatch": {"trunks": [{"name": "carrier", "dial": "IAX2/{trunk}/{number}"}]},
    }


def prepare_kit(lab: Path, run: Path) -> Path:
    kit = run / "kit"
    if kit.exists():
        shutil.rmtree(kit)
    kit.mkdir(parents=True)
    shutil.copy(lab / "start.sh", kit / "start.sh")
    for name in ("common", "pbx", "carrier"):
        shutil.copytree(lab / name, kit / name)
    original = (lab / "pbx" / "extensions.conf").read_text()
    agents = original[original.index("; Agent phones") : original.index("; Callbacks:")]
    rendered = render_dialplan(parse_config(dialer_config(), "lab"))
    rendered = rendered.replace("[globals]\n", "[globals]\nQTIMEOUT = 300\nTALK = 6\n", 1)
    (kit / "pbx" / "extensions.conf").write_text(
        "[general]\nstatic = yes\nwriteprotect = no\n\n"
        + rendered
        + "\n; ---- the lab's agent phones (../shared/asterisk-lab/pbx/extensions.conf)\n"
        + agents
    )
    queues = (lab / "pbx" / "queues.conf").read_text()
    queues = queues.replace(
        "context = queue-exit", "context = callback-queue-exit\nsetinterfacevar = yes"
    )
    (kit / "pbx" / "queues.conf").write_text(queues)
    for path in kit.rglob("*"):
        path.chmod(0o755 if path.is_dir() or path.suffix == ".sh" else 0o644)
    return kit


def start(kit: Path, prefix: Path, run: Path, ports: list[int]) -> None:
    pbx_ami, carrier_ami, pbx_iax, carrier_iax = ports
    env = {**os.environ, "PREFIX": str(prefix)}
    for role, ami, iax, peer in (
        ("pbx", pbx_ami, pbx_iax, carrier_iax),
        ("carrier", carrier_ami, carrier_iax, pbx_iax),
    ):
        subprocess.run(
            [str(kit / "start.sh"), role, str(run / role), str(ami), str(iax), str(peer)],
            env=env,
            check=True,
        )


def stop(prefix: Path, run: Path) -> None:
    for role in ("pbx", "carrier"):
        conf = run / role / "etc" / "asterisk.conf"
        if conf.exists():
            subprocess.run(
                [str(prefix / "sbin" / "asterisk"), "-C", str(conf), "-rx", "core stop now"],
                capture_output=True,
            )


def cli(prefix: Path, run: Path, command: str) -> str:
    conf = run / "pbx" / "etc" / "asterisk.conf"
    return subprocess.run(
        [str(prefix / "sbin" / "asterisk"), "-C", str(conf), "-rx", command],
        capture_output=True,
        text=True,
    ).stdout


async def away_traffic(lab: rf.Lab) -> None:
    """Phase 1: every kind of caller, with nobody listening but the driver."""
    for agent in ("Local/101@agents/n", "Local/102@agents/n"):
        await lab.pause(agent, True, "meeting", queue="sales")
    await lab.call(rf.Caller(A, "1", name=NAME, patience=7))
    await lab.call(rf.Caller(B, "", hold=4))
    await lab.call(rf.Caller(C, "2"))
    await lab.call(rf.Caller(D, "1", patience=7))
    await lab.call(rf.Caller("anonymous", "1", patience=7))
    await lab.call(rf.Caller(G, "", hold=0.3))
    await lab.call(rf.Caller(H, "1", patience=7))
    await lab.call(rf.Caller(K, "1", star_after=3))
    await asyncio.sleep(15)
    await lab.call(rf.Caller(D, "1", patience=7))
    await lab.call(rf.Caller(H, "2"))
    await asyncio.sleep(18)


async def recorded_session(out: Path) -> None:
    """Phase 2: the dialer's AstDB actions on a real Asterisk, recorded."""
    async with rf.Session(out) as ami:
        listing = await ami.action(
            {"Action": "DBGetTree", "Family": FAMILY, "Key": "calls"}, complete="DBGetTreeComplete"
        )
        print("DBGetTree:", listing.get("Response"))
        await ami.action({"Action": "DBGet", "Family": FAMILY, "Key": "calls/nosuch"})
        await ami.action({"Action": "DBDel", "Family": FAMILY, "Key": "calls/nosuch"})
        await ami.action({"Action": "DBGetTree", "Family": "nosuch"}, complete="DBGetTreeComplete")
        await ami.action({"Action": "DBPut", "Family": FAMILY, "Key": "probe", "Val": "a b&c"})
        await ami.action(
            {"Action": "DBGet", "Family": FAMILY, "Key": "probe"}, complete="DBGetComplete"
        )
        await ami.action({"Action": "DBDel", "Family": FAMILY, "Key": "probe"})
        await ami.action({"Action": "DBDelTree", "Family": "nosuch"})
        # Two callbacks as the dispatcher places them: their fates, from callback-record-fate.
        for agent, number, cb, claim in (
            ("101", "79161230001", "cb-901", "a1b2c3"),
            ("103", "79161230002", "cb-902", "d4e5f6"),
        ):
            originate = rf.agent_first(agent, number, cb, "support")
            originate["Variable"] = [
                f"CALLBACK_ID={cb}",
                "CALLBACK_CATEGORY=support",
                "CALLBACK_TRUNK=carrier",
                f"CALLBACK_CLAIM={claim}",
                "CALLBACK_WHISPER=0",
            ]
            await ami.action(originate)
        await asyncio.sleep(16)
        await ami.action(
            {"Action": "DBGetTree", "Family": FAMILY, "Key": "fates"}, complete="DBGetTreeComplete"
        )
        for cb in ("cb-901", "cb-902"):
            await ami.action({"Action": "DBDel", "Family": FAMILY, "Key": f"fates/{cb}"})


def write_config(path: Path, port: int, prefix: str) -> Path:
    path.write_text(f"""\
[ami]
host = "127.0.0.1"
port = {port}
username = "dialer"
secret = "{rf.SECRETS["pbx", "dialer"]}"
reconnect_min_delay = 0.2
reconnect_max_delay = 1
[redis]
url = "redis://127.0.0.1:6379/13"
key_prefix = "{prefix}"
[dispatch]
enabled = false
[[dispatch.trunks]]
name = "carrier"
dial = "IAX2/{{trunk}}/{{number}}"
[hours.weekly]
mon = ["00:00-24:00"]
tue = ["00:00-24:00"]
wed = ["00:00-24:00"]
thu = ["00:00-24:00"]
fri = ["00:00-24:00"]
sat = ["00:00-24:00"]
sun = ["00:00-24:00"]
[web]
enabled = false
[logging]
format = "json"
""")
    return path


def start_dialer(config: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "run_dialer.py"), "--config", str(config)],
        cwd=REPO,
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
    )


async def wait_for(log: Path, text: str, count: int = 1, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while log.read_text().count(text) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {text!r} in {log}")
        await asyncio.sleep(0.2)


def callbacks(prefix: str) -> dict[str, list[tuple[str, ...]]]:
    client = redis.Redis.from_url("redis://127.0.0.1:6379/13", decode_responses=True)
    out: dict[str, list[tuple[str, ...]]] = {}
    for key in client.scan_iter(match=Keys(prefix).pattern()):
        if key.count(":") == 2 and ":cb:" in key:
            cb = client.hgetall(key)
            out.setdefault(cb["number"], []).append(
                (cb["state"], cb["category"], cb["source"], cb["missed_count"])
            )
    client.close()
    return out


async def main_async(args: argparse.Namespace) -> int:
    ports = [int(p) for p in args.ports.split(",")]
    lab_source = rf.find_kit()
    assert lab_source is not None, "no ../shared/asterisk-lab"
    args.run.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    kit = prepare_kit(lab_source, args.run)
    rf.read_secrets(kit)
    rf.PBX_PORT, rf.CARRIER_PORT = ports[0], ports[1]
    stop(args.prefix, args.run)
    start(kit, args.prefix, args.run, ports)
    prefix = f"lab-i16-{args.out.name}-{int(time.time())}"
    summary: dict = {"asterisk": rf.asterisk_version(args.prefix), "prefix": prefix}
    try:
        await asyncio.sleep(2)
        async with rf.Lab() as lab:
            await away_traffic(lab)
        summary["records_written"] = cli(args.prefix, args.run, f"database show {FAMILY}")
        await recorded_session(args.out / "catchup.jsonl")
        # Phase 3: the dialer comes back.
        config = write_config(args.run / "dialer.toml", ports[0], prefix)
        log = args.run / "dialer.log"
        log.write_text("")
        dialer = start_dialer(config, log)
        await wait_for(log, "AstDB call records read")
        await asyncio.sleep(1)
        found = callbacks(prefix)
        summary["after_restart"] = found
        summary["left_in_astdb"] = cli(args.prefix, args.run, f"database show {FAMILY}/calls")
        ok3 = {n: v for n, v in found.items()} == EXPECTED
        # Phase 4: killed mid-traffic, restarted.
        async with rf.Lab() as lab:
            await lab.call(rf.Caller(E1, "1", patience=7))
            await lab.call(rf.Caller(E2, "2"))
            await asyncio.sleep(4)
            dialer.send_signal(signal.SIGKILL)
            dialer.wait()
            await asyncio.sleep(14)
        dialer = start_dialer(config, log)
        await wait_for(log, "AstDB call records read", count=2)
        await asyncio.sleep(1)
        found = callbacks(prefix)
        summary["after_kill"] = {n: found.get(n) for n in (E1, E2)}
        ok4 = found.get(E1) == [("pending", "new_connection", "abandon", "1")] and E2 not in found
        dialer.send_signal(signal.SIGTERM)
        dialer.wait(timeout=20)
        summary["ok"] = {"restart": ok3, "kill": ok4}
    finally:
        stop(args.prefix, args.run)
    (args.out / "summary.json").write_text(
        json.dumps(summary, ensure_ascii=False, indent=1, default=list) + "\n"
    )
    print(json.dumps(summary, ensure_ascii=False, indent=1, default=list))
    return 0 if all(summary.get("ok", {}).values()) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", type=Path, required=True)
    parser.add_argument("--run", type=Path, required=True, help="a scratch folder for the lab")
    parser.add_argument("--ports", required=True, help="PBX AMI, carrier AMI, PBX IAX, carrier IAX")
    parser.add_argument("--out", type=Path, required=True)
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
