#!/usr/bin/env python3
"""Prove issue 17 on a real Asterisk and record its fixtures: the generated dialplan with its
self-service branch, and an outage declared mid-traffic by UserEvent and by the API.

A development tool, never run by CI (it needs an installed Asterisk and the lab kit of
../shared/asterisk-lab). It builds the lab's PBX from the project's own kit: the dialplan is
exactly what ``callback-dialer dialplan --config scripts/lab/outage_lab.toml`` renders, plus
the lab's ``[agents]`` context (the agents' phones); ``queues.conf`` gets
``context = callback-queue-exit`` and ``manager.conf`` the shipped ``channelvars``.

    .venv/bin/python scripts/record_outage_lab.py --prefix /work/ast/p22 --lab /work/lab/i17

Two captures, each one AMI session of the ``dialer`` user (CaptureWriter, secret masked),
written to tests/fixtures/issue17 (``--out``; a folder of their own, since they hold the
dialplan events of the generated dialplan, which the simulator does not rebuild):

- ``self_service.jsonl``: with every agent paused, +74951110009 presses 9 (the sample IVR's
  self-service option: ``Set(CALLBACK_SKIP=balance)``, a prompt, hang up) and +79031110002
  presses 2 and hangs up in the support queue.
- ``outage.jsonl``: the dialer itself runs (``callback-dialer run`` on the lab config, its
  page on 127.0.0.1:8917) while callers come in, agents paused: a district caller before the
  outage; ``UserEvent(CallbackOutage,Action: declare,...)`` from the dialplan's
  ``callback-outage-control`` (support, +7495123); district support callers, a new subscriber
  from the district, a support caller from elsewhere; an outage declared by the API (billing,
  +7812); a billing caller from +7812; agents back: the dialer calls back the new subscriber
  and the others, never the held; the first outage ended by UserEvent (drop), the second by
  the API (release); the released callback is called. ``outage-summary.json`` (in ``--lab``)
  holds what Redis says at the end: every callback's state and history, both outages.
"""

from __future__ import annotations

import argparse
import asyncio
import http.cookiejar
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import redis

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import record_fixtures as rf  # noqa: E402

from callback_dialer.config import load_config  # noqa: E402
from callback_dialer.ivr.dialplan import render_dialplan  # noqa: E402
from callback_dialer.queue.keys import Keys  # noqa: E402

CONFIG = HERE / "lab" / "outage_lab.toml"
PORTS = (5090, 5091, 4630, 4631)  # PBX AMI, carrier AMI, PBX IAX, carrier IAX
WEB = "http://127.0.0.1:8917"


def build_kit(kit_source: Path, lab: Path) -> Path:
    kit = lab / "kit"
    if kit.exists():
        shutil.rmtree(kit)
    kit.mkdir(parents=True)
    for name in ("start.sh", "up.sh", "down.sh"):
        shutil.copy(kit_source / name, kit / name)
    for name in ("common", "pbx", "carrier"):
        shutil.copytree(kit_source / name, kit / name)
    for path in kit.rglob("*"):
        path.chmod(0o755 if path.is_dir() or path.suffix == ".sh" else 0o644)
    lab_plan = (kit_source / "pbx" / "extensions.conf").read_text()
    agents = lab_plan[lab_plan.index("; Agent phones") : lab_plan.index("; Callbacks:")]
    config = load_config(CONFIG)
    generated = render_dialplan(config)
    (kit / "pbx" / "extensions.conf").write_text(
        "[general]\nstatic = yes\nwriteprotect = no\n\n"
        + generated
        + "\n; ---- the lab's agents (../shared/asterisk-lab/pbx/extensions.conf)\n"
        + agents
    )
    queues = kit / "pbx" / "queues.conf"
    queues.write_text(
        queues.read_text().replace("context = queue-exit", "context = callback-queue-exit")
    )
    manager = kit / "pbx" / "manager.conf"
    manager.write_text(
        re.sub(
            r"(?m)^channelvars = .*$",
            "channelvars = CALLBACK_CATEGORY,CALLBACK_ID,CALLBACK_SKIP",
            manager.read_text(),
        )
    )
    return kit


def start(kit: Path, prefix: Path, lab: Path) -> None:
    env = {**os.environ, "PREFIX": str(prefix)}
    for role, ami, iax, peer in (
        ("pbx", PORTS[0], PORTS[2], PORTS[3]),
        ("carrier", PORTS[1], PORTS[3], PORTS[2]),
    ):
        subprocess.run(
            [str(kit / "start.sh"), role, str(lab / role), str(ami), str(iax), str(peer)],
            env=env,
            check=True,
        )


def stop(prefix: Path, lab: Path) -> None:
    for role in ("pbx", "carrier"):
        conf = lab / role / "etc" / "asterisk.conf"
        if conf.exists():
            subprocess.run(
                [str(prefix / "sbin" / "asterisk"), "-C", str(conf), "-rx", "core stop now"],
                check=False,
                capture_output=True,
            )


def cli(prefix: Path, lab: Path, command: str) -> str:
    conf = lab / "pbx" / "etc" / "asterisk.conf"
    return subprocess.run(
        [str(prefix / "sbin" / "asterisk"), "-C", str(conf), "-rx", command],
        capture_output=True,
        text=True,
        check=False,
    ).stdout


# The page's CSRF token is bound to its cookie: one cookie jar for every request.
OPENER = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


def http_json(method: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(WEB + path, data=data, method=method)
    request.add_header("Accept", "application/json")
    if method != "GET":
        token = http_json("GET", "/api/session")["csrf_token"]
        request.add_header("X-CSRF-Token", token)
        request.add_header("Content-Type", "application/json")
    with OPENER.open(request, timeout=10) as response:
        return json.loads(response.read())


async def user_event(lab: rf.Lab, exten: str, **variables: str) -> None:
    """The dialplan raises the UserEvent: a Local channel into callback-outage-control."""
    await lab.pbx.action(
        {
            "Action": "Originate",
            "Channel": f"Local/{exten}@callback-outage-control",
            "Application": "Wait",
            "Data": "1",
            "Async": "true",
            "Variable": [f"{k}={v}" for k, v in variables.items()],
        }
    )


async def self_service(lab: rf.Lab) -> None:
    await lab.pause_all(True)
    await lab.call(rf.Caller("+74951110009", "9", hold=8))
    await lab.call(rf.Caller("+79031110002", "2", patience=5))
    await asyncio.sleep(12)
    await lab.pause_all(False)
    await asyncio.sleep(1)


async def outage(lab: rf.Lab, prefix: Path, labdir: Path) -> dict:
    steps: dict = {}
    # Callbacks long enough to count as talks ([dispatch] min_talk_seconds): agents talk 25 s,
    # customers 12 s.
    await lab.set_global("TALK", "25")
    await lab.set_global("CUSTOMER_TALK", "12", on_carrier=True)
    await lab.pause_all(True)
    # Before the outage: a district caller hangs up in support (an ordinary callback).
    await lab.call(rf.Caller("+74951230011", "2", patience=4))
    await asyncio.sleep(7)
    # The NOC's extension raises the UserEvent: support in +7495123 is down.
    await user_event(
        lab,
        "declare",
        OUTAGE_ID="noc-1",
        OUTAGE_PREFIXES="+7495123",
        OUTAGE_MESSAGE="Cable cut in district 5. Fix expected by 18:00",
        OUTAGE_UNTIL="18:00",
    )
    await asyncio.sleep(3)
    steps["astdb_after_declare"] = cli(prefix, labdir, "database show callback-outage")
    # District support callers (held), a new subscriber from the district and a support
    # caller from elsewhere (both called back as usual).
    for number in ("+74951230021", "+74951230031", "+74951230041"):
        await lab.call(rf.Caller(number, "2", patience=4))
    await lab.call(rf.Caller("+74951230051", "1", patience=4))
    await lab.call(rf.Caller("+79161230061", "2", patience=4))
    await asyncio.sleep(9)
    # Another system declares a second outage through the API: billing in +7812.
    steps["api_declare"] = http_json(
        "POST",
        "/api/outages",
        {"categories": ["billing"], "prefixes": ["+7812"], "message": "Billing system down"},
    )
    await asyncio.sleep(2)
    await lab.call(rf.Caller("+78121230071", "3", patience=4))
    await lab.call(rf.Caller("+74951230081", "2", patience=4))  # district, held by noc-1
    await asyncio.sleep(9)
    steps["held_before_agents"] = http_json("GET", "/api/callbacks?state=held")["count"]
    # Agents back: the dialer calls back the owed ones, the held wait.
    await lab.pause_all(False)
    await asyncio.sleep(45)
    steps["outages_mid"] = http_json("GET", "/api/outages")
    # The NOC ends the first outage by UserEvent: drop (service is back).
    await user_event(lab, "end", OUTAGE_ID="noc-1", OUTAGE_CHOICE="drop")
    await asyncio.sleep(4)
    steps["astdb_after_first_end"] = cli(prefix, labdir, "database show callback-outage")
    api_id = steps["api_declare"]["outage"]["id"]
    steps["api_end"] = http_json(
        "POST", f"/api/outages/{api_id}/end", {"choice": "release", "per_hour": 3600}
    )
    await asyncio.sleep(30)
    steps["astdb_at_end"] = cli(prefix, labdir, "database show callback-outage")
    return steps


def summary(config_path: Path) -> dict:
    config = load_config(config_path)
    keys = Keys(config.redis.key_prefix)
    conn = redis.Redis.from_url(config.redis.url, decode_responses=True)
    callbacks = {}
    for key in conn.scan_iter(match=keys.tag.replace("{", "\\{").replace("}", "\\}") + ":cb:*"):
        if key.endswith(":history"):
            continue
        cb = conn.hgetall(key)
        history = [f["event"] for _, f in conn.xrange(keys.history(cb["id"]))]
        callbacks[cb["number"]] = {
            "id": cb["id"],
            "category": cb["category"],
            "state": cb["state"],
            "reason": cb.get("reason", ""),
            "outage": cb.get("outage", ""),
            "attempts": cb.get("attempts"),
            "first_dialed_at": cb.get("first_dialed_at"),
            "history": history,
        }
    outages = {oid: conn.hgetall(keys.outage(oid)) for oid in conn.zrange(keys.outages(), 0, -1)}
    stats = {}
    for key in conn.scan_iter(match=keys.tag.replace("{", "\\{").replace("}", "\\}") + ":stats:*"):
        stats[key.rsplit(":", 1)[-1]] = conn.hgetall(key)
    return {"callbacks": callbacks, "outages": outages, "stats": stats}


def clean_redis(config_path: Path) -> None:
    config = load_config(config_path)
    conn = redis.Redis.from_url(config.redis.url)
    pattern = Keys(config.redis.key_prefix).pattern()
    for key in conn.scan_iter(match=pattern):
        conn.delete(key)


async def record(out: Path, labdir: Path, prefix: Path) -> dict:
    async with rf.Lab() as lab:
        await rf.prime()
        async with rf.Session(out / "self_service.jsonl") as ami:
            lab.start_clock(ami.writer.origin)
            await self_service(lab)
        print("self_service recorded", file=sys.stderr)
        clean_redis(CONFIG)
        log = (labdir / "dialer.log").open("w")
        dialer = subprocess.Popen(
            [sys.executable, "-m", "callback_dialer", "run", "--config", str(CONFIG)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "CALLBACK_DIALER_AMI_SECRET": rf.SECRETS["pbx", "dialer"]},
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if urllib.request.urlopen(WEB + "/healthz", timeout=2).status == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline or dialer.poll() is not None:
                    raise RuntimeError(f"the dialer did not come up; see {labdir}/dialer.log")
                await asyncio.sleep(0.3)
            async with rf.Session(out / "outage.jsonl") as ami:
                lab.start_clock(ami.writer.origin)
                steps = await outage(lab, prefix, labdir)
        finally:
            dialer.send_signal(signal.SIGTERM)
            dialer.wait(timeout=30)
        return steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", type=Path, required=True)
    parser.add_argument("--lab", type=Path, required=True)
    parser.add_argument("--kit", type=Path, default=rf.find_kit())
    parser.add_argument("--out", type=Path, default=rf.REPO / "tests" / "fixtures" / "issue17")
    args = parser.parse_args()
    rf.PBX_PORT, rf.CARRIER_PORT = PORTS[0], PORTS[1]
    args.lab.mkdir(parents=True, exist_ok=True)
    print(rf.asterisk_version(args.prefix), file=sys.stderr)
    kit = build_kit(args.kit, args.lab)
    rf.read_secrets(kit)
    start(kit, args.prefix, args.lab)
    try:
        time.sleep(1)
        steps = asyncio.run(record(args.out, args.lab, args.prefix))
        result = {"steps": steps, "redis": summary(CONFIG)}
        (args.lab / "outage-summary.json").write_text(
            json.dumps(result, indent=2, ensure_ascii=False)
        )
        rf.copy_configs(args.lab, args.out / "asterisk")
        print(json.dumps(result["redis"]["callbacks"], indent=1), file=sys.stderr)
    finally:
        stop(args.prefix, args.lab)
    return 0


if __name__ == "__main__":
    sys.exit(main())
