"""Nothing lost while the dialer is away: the dialplan's AstDB records, read back.

The simulator writes what the shipped dialplan's hangup handler writes (one AstDB entry per
inbound call) and answers DBGetTree / DBGet / DBDel as Asterisk 20 and 22 do. Each test runs
the same traffic twice: once with a dialer listening throughout (what a live dialer makes of
it), once with the dialer gone (killed, its process really gone) or cut off from AMI for a
simulated minute; the callbacks in Redis afterwards must be the same, each caller once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis
from simpbx.ami import PbxAmi
from simpbx.clock import run_for
from simpbx.model import AgentSpec, CallerScript, FixedAgent, PbxSpec, QueueSpec
from simpbx.pbx import SimPbx

from callback_dialer.ami.asterisk import encode_record
from callback_dialer.app import Dialer, build_dialer
from callback_dialer.clock import ScaledClock
from callback_dialer.config import Config
from callback_dialer.queue.keys import Keys

from .conftest import REPO
from .helpers.wait import until

SPEED = 10.0
FAMILY = "callback-dialer"

A, B, C, D = "+79161110001", "+79161110002", "+79161110003", "+79161110004"
F, G, H, K = "+78001234567", "+79161110007", "+79161110008", "+79161110009"


def traffic(pbx: SimPbx) -> float:
    """Callers of every kind; returns how long (simulated) until they have all hung up."""
    place = pbx.place_call
    place(A, CallerScript(choice="1", patience=7))  # abandons the sales queue
    place(B, CallerScript(choice="hangup", choice_after=5))  # hangs up in the IVR
    place(C, CallerScript(choice="2"))  # served by the support agent
    place(D, CallerScript(choice="1", patience=7))  # calls twice: one callback
    place("anonymous", CallerScript(choice="1", patience=7))  # no number: nobody to call
    place(F, CallerScript(choice="1", patience=7))  # blocklisted
    place(G, CallerScript(choice="hangup", choice_after=1))  # too short to be a call
    place(H, CallerScript(choice="1", patience=7))  # missed, then served: nothing owed
    place(K, CallerScript(choice="1", star_after=3))  # asks for a callback with *

    def later() -> None:
        place(D, CallerScript(choice="1", patience=7))
        place(H, CallerScript(choice="2"))

    pbx.scheduler.call_later(20, later)
    return 45.0


class Rig:
    def __init__(self, tmp_path: Path, make_config: Any, redis_url: str, prefix: str) -> None:
        self.tmp_path, self.redis_url = tmp_path, redis_url
        self.clock = ScaledClock(SPEED)
        self.pbx = SimPbx(
            self.clock,
            PbxSpec(
                queues=(QueueSpec("sales"), QueueSpec("support")),
                agents=(
                    AgentSpec("101", ("sales",)),
                    AgentSpec("102", ("support",), behaviour=FixedAgent(talk=5)),
                ),
                records_family=FAMILY,
            ),
        )
        self.pbx.scheduler.run(self.pbx.pause, "101", True, "meeting")
        self.make_config, self.prefix = make_config, prefix
        self.ami: PbxAmi | None = None
        self.dialers: list[Dialer] = []
        self.processes: list[subprocess.Popen] = []

    async def config(self, **extra: Any) -> Config:
        if self.ami is None:
            self.ami = await PbxAmi.serve(self.pbx, secret="s3cret")
        return self.make_config(
            redis={"url": self.redis_url, "key_prefix": self.prefix},
            ami={
                "port": self.ami.port,
                "secret": "s3cret",
                "reconnect_min_delay": 0.05,
                "reconnect_max_delay": 0.2,
            },
            phone={"blocklist": ["+7800*"]},
            dispatch={"enabled": False},
            **extra,
        )

    async def dialer(self, **extra: Any) -> Dialer:
        dialer = build_dialer(
            await self.config(**extra),
            clock=self.clock,
            spool=self.tmp_path / f"spool-{len(self.dialers)}.jsonl",
        )
        self.dialers.append(dialer)
        await dialer.start()
        return dialer

    async def process(self) -> subprocess.Popen:
        """A dialer in a process of its own; returns once it is connected and caught up."""
        config = await self.config()
        path = self.tmp_path / "dialer.json"
        path.write_text(json.dumps(config.model_dump(mode="json")), "utf-8")
        self.log = self.tmp_path / "dialer.log"
        process = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "tests" / "helpers" / "dialer_process.py"),
                str(path),
                str(self.tmp_path / "spool-p.jsonl"),
                str(SPEED),
                repr(time.time()),
                repr(self.clock.now()),
            ],
            cwd=REPO,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.processes.append(process)
        deadline = time.monotonic() + 30
        while "AstDB call records" not in self.log.read_text() and not self._read_once():
            assert process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "the dialer process never connected"
            await asyncio.sleep(0.05)
        return process

    def _read_once(self) -> bool:
        assert self.ami is not None
        return any(m.get("Action") == "DBGetTree" for _, m in self.ami.server.actions)

    def records(self) -> list[str]:
        return [k for k, _ in self.pbx.astdb.tree(FAMILY, "calls")]

    async def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()
        for dialer in self.dialers:
            await dialer.stop()
        if self.ami is not None:
            await self.ami.stop()
        await self.pbx.close()


def callbacks(redis_url: str, prefix: str) -> dict[str, list[tuple[str, ...]]]:
    """Every callback in Redis by number: what a supervisor would compare."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = Keys(prefix)
    out: dict[str, list[tuple[str, ...]]] = {}
    try:
        for key in client.scan_iter(match=keys.pattern()):
            if key.count(":") != 2 or ":cb:" not in key:
                continue
            cb = client.hgetall(key)
            out.setdefault(cb["number"], []).append(
                (cb["state"], cb["category"], cb["source"], cb["missed_count"], cb["reason"])
            )
    finally:
        client.close()
    return out


@pytest.fixture
async def rigs(tmp_path, make_config, redis_url, key_prefix) -> AsyncIterator[Any]:
    made: list[Rig] = []

    def make(name: str) -> Rig:
        folder = tmp_path / name
        folder.mkdir()
        rig = Rig(folder, make_config, redis_url, f"{key_prefix}-{name}")
        made.append(rig)
        return rig

    yield make
    for rig in made:
        await rig.close()
        client = redis.Redis.from_url(redis_url)
        stale = list(client.scan_iter(match=Keys(rig.prefix).pattern(), count=1000))
        if stale:
            client.delete(*stale)
        client.close()


async def live_reference(rigs: Any, redis_url: str) -> dict[str, list[tuple[str, ...]]]:
    """The same traffic with a dialer listening all along."""
    live = rigs("live")
    dialer = await live.dialer()
    await until(lambda: dialer.dispatcher.synced, timeout=20)
    await run_for(live.clock, traffic(live.pbx))
    await until(lambda: dialer.pipeline.sink.backlog == 0, timeout=20)
    await dialer.pipeline.sink.drain(10)
    return callbacks(redis_url, live.prefix)


EXPECTED = {
    A: [("pending", "new_connection", "abandon", "1", "")],
    B: [("pending", "other", "ivr_hangup", "1", "")],
    D: [("pending", "new_connection", "abandon", "2", "")],
    H: [("done", "new_connection", "abandon", "1", "served_inbound")],
    K: [("pending", "new_connection", "explicit", "1", "")],
}


def _no_reason(found: dict[str, list[tuple[str, ...]]]) -> dict[str, list[tuple[str, ...]]]:
    # A merged or new callback's reason says how it came ("created", "merged"): not a fate.
    return {
        n: [(s, c, src, m, r if s == "done" else "") for s, c, src, m, r in v]
        for n, v in found.items()
    }


async def test_a_dialer_killed_during_traffic_makes_the_callbacks_a_live_one_would(
    rigs, redis_url
) -> None:
    reference = _no_reason(await live_reference(rigs, redis_url))
    assert reference == EXPECTED
    away = rigs("away")
    first = await away.process()
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert first.poll() is not None  # really gone: nobody listens to the traffic below
    await run_for(away.clock, traffic(away.pbx))
    assert len(away.records()) == 11  # one record per inbound call, kept by Asterisk
    assert callbacks(redis_url, away.prefix) == {}
    saved = dict(away.pbx.astdb.entries)
    back = await away.dialer()
    await until(lambda: back.dispatcher.synced, timeout=20)
    assert _no_reason(callbacks(redis_url, away.prefix)) == reference
    assert away.records() == []  # read, applied, deleted
    caught = back.records.last
    assert caught is not None and (caught.read, caught.applied, caught.left) == (11, 11, 0)
    # Read again (a crash between storing and deleting): nothing changes, nothing doubles.
    away.pbx.astdb.entries.update(saved)
    again = await back.records.catch_up("test")
    assert (again.read, again.left) == (11, 0)
    assert _no_reason(callbacks(redis_url, away.prefix)) == reference
    assert away.records() == []


async def test_an_ami_cut_of_a_minute_loses_nothing_and_doubles_nothing(rigs, redis_url) -> None:
    reference = _no_reason(await live_reference(rigs, redis_url))
    cut = rigs("cut")
    dialer = await cut.dialer()
    await until(lambda: dialer.dispatcher.synced, timeout=20)
    assert cut.ami is not None
    # Some of the traffic is heard live, the rest happens while the link is down.
    traffic(cut.pbx)
    await run_for(cut.clock, 10)
    await cut.ami.server.stop_listening()
    await until(lambda: not dialer.ami.authenticated, timeout=10)
    await run_for(cut.clock, 60)  # the second calls of D and H come and go meanwhile
    await cut.ami.server.start()
    await until(lambda: dialer.ami.authenticated and dialer.dispatcher.synced, timeout=20)
    await until(lambda: dialer.pipeline.sink.backlog == 0, timeout=20)
    await dialer.records.catch_up("test")  # the sweep, now rather than in a minute
    assert _no_reason(callbacks(redis_url, cut.prefix)) == reference
    assert cut.records() == []
    seen = dialer.metrics.records
    assert seen.get("calls", "applied") >= 1  # ended during the cut: from their records
    assert seen.get("calls", "seen_live") >= 1  # heard live: records only compared
    assert sum(dialer.metrics.records_disagree.values.values()) == 0


async def test_asterisk_without_dbgettree_is_read_through_the_dialplans_index(
    rigs, redis_url
) -> None:
    reference = _no_reason(await live_reference(rigs, redis_url))
    old = rigs("old")
    old.pbx.spec = _spec(old.pbx.spec, records_index=True, has_dbgettree=False)
    await run_for(old.clock, traffic(old.pbx))
    assert old.pbx.astdb.get(FAMILY, "seq") == "11"
    dialer = await old.dialer(records={"index": True})
    await until(lambda: dialer.dispatcher.synced, timeout=20)
    assert _no_reason(callbacks(redis_url, old.prefix)) == reference
    assert old.pbx.astdb.tree(FAMILY, "calls") == []
    assert old.pbx.astdb.tree(FAMILY, "index") == []
    assert old.pbx.astdb.get(FAMILY, "next/calls") == "12"  # the next pass starts after them
    assert dialer.records.store.has_tree is False


async def test_old_and_unreadable_records_are_purged_without_a_callback(rigs, redis_url) -> None:
    rig = rigs("purge")
    now = rig.clock.now()
    db = rig.pbx.astdb
    old = {"num": "+79161119999", "cat": "support", "start": f"{now - 90000:.3f}"}
    db.put(FAMILY, "calls/100.1", encode_record({"v": "1", **old, "end": f"{now - 89990:.3f}"}))
    db.put(FAMILY, "calls/100.2", "v=1&num=%2B79161118888&end=yesterday")
    db.put(FAMILY, "calls/100.3", "garbage")
    fresh = {"num": "+79161117777", "cat": "support", "start": f"{now - 30:.3f}"}
    db.put(FAMILY, "calls/100.4", encode_record({"v": "1", **fresh, "end": f"{now - 20:.3f}"}))
    db.put(FAMILY, "unrelated", "left alone")
    dialer = await rig.dialer(records={"max_age": "1d"})
    await until(lambda: dialer.dispatcher.synced, timeout=20)
    assert rig.records() == []
    assert db.get(FAMILY, "unrelated") == "left alone"
    assert list(callbacks(redis_url, rig.prefix)) == ["+79161117777"]
    assert dialer.metrics.records.get("calls", "purged") == 1
    assert dialer.metrics.records.get("calls", "unreadable") == 2
    assert dialer.metrics.records.get("calls", "applied") == 1


async def test_a_record_that_contradicts_the_live_events_is_counted_not_applied(
    rigs, redis_url
) -> None:
    rig = rigs("doubt")
    dialer = await rig.dialer()
    await until(lambda: dialer.dispatcher.synced, timeout=20)
    call = rig.pbx.place_call(A, CallerScript(choice="1", patience=7))
    await run_for(rig.clock, 12)
    # Followed live to its end (the Hangup event is in) before its record is read.
    await until(lambda: dialer.pipeline.tracker.counters.get("missed") == 1, timeout=10)
    assert await dialer.pipeline.sink.drain(10)
    # Someone's dialplan wrote that an agent answered; the events said the caller abandoned.
    key = f"calls/{call.call_id}"
    value = rig.pbx.astdb.get(FAMILY, key)
    assert value is not None
    rig.pbx.astdb.put(FAMILY, key, value.replace("answered=0", "answered=5000"))
    await dialer.records.catch_up("test")
    assert dialer.metrics.records_disagree.get("missed", "served") == 1
    assert _no_reason(callbacks(redis_url, rig.prefix)) == {A: EXPECTED[A]}
    assert rig.records() == []


def _spec(spec: PbxSpec, **changes: Any) -> PbxSpec:
    import dataclasses

    return dataclasses.replace(spec, **changes)


async def test_a_recorded_call_the_ivr_served_itself_is_owed_nothing(rigs, redis_url) -> None:
    rig = rigs("self")
    now = rig.clock.now()
    base = {"num": A, "cat": "support", "start": f"{now - 40:.3f}", "end": f"{now - 20:.3f}"}
    rig.pbx.astdb.put(FAMILY, "calls/200.1", encode_record({"v": "1", **base, "skip": "balance"}))
    rig.pbx.astdb.put(FAMILY, "calls/200.2", encode_record({"v": "1", **base, "num": B}))
    dialer = await rig.dialer()
    await until(lambda: dialer.dispatcher.synced, timeout=20)
    assert list(callbacks(redis_url, rig.prefix)) == [B]
    assert dialer.pipeline.tracker.counters.get("record:self_service:balance") == 1
