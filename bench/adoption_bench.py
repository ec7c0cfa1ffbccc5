"""How long a restarted dialer takes to adopt the calls a killed run left up: 1,000 by default.

    .venv/bin/python bench/adoption_bench.py --calls 1000 --rounds 3

Against the real redis-server of the tests (db 13, a fresh key prefix per round) and an AMI
peer on loopback (the simulator's ``AmiServer``) that answers ``CoreShowChannels`` with
``calls`` talking agent-first calls, three channels each as Asterisk 22 lists them (the
agent's Local ;1 and ;2 carrying ``CALLBACK_ID``, the customer's trunk channel bridged with
;1; see tests/fixtures/adopt_after_kill.jsonl). Redis holds what the killed run left: every
callback claimed by it, in the talking stage. Timed: ``Dispatcher.adopt_calls()`` of a dialer
built by ``build_dialer`` and connected, from the action written to every attempt following
its call: the listing over TCP and its parsing, reading the callbacks, taking the claims
over, the attempts made. Two variants side by side on the same state: the shipped one (one
``adopt`` script for all) and one script call per callback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from simpbx.amiserver import AmiServer  # noqa: E402

from callback_dialer.app import build_dialer  # noqa: E402
from callback_dialer.config import parse_config  # noqa: E402
from callback_dialer.logs import configure_logging  # noqa: E402
from callback_dialer.queue.models import Stage  # noqa: E402

ALWAYS = {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def listing(ids: list[str]) -> list[list[tuple[str, str]]]:
    items = []
    for n, callback_id in enumerate(ids):
        uid = f"cbd-{callback_id}-1-{n:06x}"
        bridge = f"bridge-{n}"
        agent = f"Local/{100 + n % 900}@agents-{n:08x}"
        for channel, unique, var, br in (
            (agent + ";1", uid, callback_id, bridge),
            (agent + ";2", uid + "-2", callback_id, ""),
            (f"IAX2/carrier-{n}", f"1796126709.{n}", "", bridge),
        ):
            items.append(
                [
                    ("Event", "CoreShowChannel"),
                    ("Channel", channel),
                    ("ChannelState", "6"),
                    ("ChannelStateDesc", "Up"),
                    ("Context", "callback-outbound"),
                    ("Uniqueid", unique),
                    ("Linkedid", uid),
                    ("ChanVariable", "CALLBACK_CATEGORY=support" if var else "CALLBACK_CATEGORY="),
                    ("ChanVariable", f"CALLBACK_ID={var}"),
                    ("Application", "Dial"),
                    ("ApplicationData", "IAX2/carrier/79160000000,20"),
                    ("Duration", "00:00:12"),
                    ("BridgeId", br),
                ]
            )
    return items


async def one_round(calls: int, per_call: bool) -> float:
    server = await AmiServer(secret="s3cret").start()
    config = parse_config(
        {
            "ami": {"port": server.port, "secret": "s3cret", "action_timeout": 30},
            "redis": {
                "url": "redis://127.0.0.1:6379/13",
                "key_prefix": "bench-adopt-" + secrets.token_hex(4),
            },
            "hours": {"weekly": ALWAYS},
            "dispatch": {"max_concurrent": 10},
            "web": {"enabled": False},
            "logging": {"level": "error"},
        }
    )
    configure_logging(config.logging)
    dialer = build_dialer(config, spool=Path("/tmp") / f"bench-adopt-{secrets.token_hex(3)}")
    queue = dialer.queue
    ids = []
    for n in range(calls):
        result = await queue.add_manual(f"+7916{n:07d}", "support", "bench")
        ids.append(result.id)
    for _ in ids:
        claim = await queue.claim(["support"], claimer="killed-run", agent="Local/101@agents/n")
        await queue.renew(claim, stage=Stage.TALKING, agent="Local/101@agents/n")
    items = listing(ids)

    async def channels(session, message) -> None:
        session.write(server.list_response("coreshowchannels", message.get("ActionID"), items))

    server.on_action("CoreShowChannels", channels)
    dispatcher = dialer.dispatcher
    # Connected and leading, but the AMI ready hook must not adopt before the timer starts.
    dispatcher.leading = lambda: False
    await dialer.start()
    while not dialer.ami.authenticated or not dispatcher.synced:
        await asyncio.sleep(0.01)
    dispatcher.leading = dialer.leadership.may_act
    if per_call:
        original = queue.adopt

        async def one_by_one(adoptions, **kw):
            out = []
            for a in adoptions:
                out.extend(await original([a], **kw))
            return out

        queue.adopt = one_by_one  # type: ignore[method-assign]
    start = time.perf_counter()
    adopted = await dispatcher.adopt_calls()
    took = time.perf_counter() - start
    assert adopted == calls == len(dispatcher.inflight), (adopted, len(dispatcher.inflight))
    for attempt in list(dispatcher.inflight.values()):
        attempt.hand_over()  # end the round without hanging anything up
    await dialer.stop()
    await server.stop()
    return took


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    results = {}
    for name, per_call in (
        ("one adopt script for all (shipped)", False),
        ("one script per call", True),
    ):
        times = [await one_round(args.calls, per_call) for _ in range(args.rounds)]
        results[name] = {
            "median_s": round(statistics.median(times), 3),
            "max_s": round(max(times), 3),
            "rounds": [round(t, 3) for t in times],
        }
    print(json.dumps({"calls": args.calls, "rounds": args.rounds, **results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
