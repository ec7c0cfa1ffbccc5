"""The dialer as a user runs it: `run_dialer.py --config FILE`, a real process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
from simpbx.amiserver import AmiServer

from callback_dialer.ami.frames import AmiMessage
from callback_dialer.detect.agents import AgentBook
from callback_dialer.detect.tracker import CallTracker
from callback_dialer.dispatch.estimate import estimate_minutes
from callback_dialer.queue.keys import Keys
from callback_dialer.queue.models import Source

from .conftest import REPO
from .helpers.ports import refusing_port
from .helpers.wait import until


def write_config(
    path: Path, *, ami_port: int, redis_url: str, prefix: str, extra: str = ""
) -> Path:
    path.write_text(f"""
[ami]
port = {ami_port}
secret = "s3cret"
reconnect_min_delay = "100ms"
reconnect_max_delay = "500ms"
[redis]
url = "{redis_url}"
key_prefix = "{prefix}"
[detection]
min_call_seconds = 0
[dispatch]
enabled = false
[web]
enabled = false
[ivr]
agi_port = 0
[queue]
spool_file = "{path.parent / "spool.jsonl"}"
[hours.weekly]
mon = ["00:00-24:00"]
tue = ["00:00-24:00"]
wed = ["00:00-24:00"]
thu = ["00:00-24:00"]
fri = ["00:00-24:00"]
sat = ["00:00-24:00"]
sun = ["00:00-24:00"]
{extra}
""")
    return path


def start(config: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "run_dialer.py", "--config", str(config)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


async def stop(process: subprocess.Popen) -> tuple[int, str]:
    # In a thread: the AMI server of the test shares this event loop and must keep serving.
    process.send_signal(signal.SIGTERM)
    try:
        _, err = await asyncio.to_thread(process.communicate, timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        raise AssertionError("the dialer did not stop on SIGTERM:\n" + err) from None
    return process.returncode, err


async def test_the_dialer_runs_detects_a_missed_call_and_stops_cleanly(
    captures,
    tmp_path,
    redis_url,
    key_prefix,
) -> None:
    server = await AmiServer(secret="s3cret").start()
    config = write_config(
        tmp_path / "dialer.toml",
        ami_port=server.port,
        redis_url=redis_url,
        prefix=key_prefix,
        extra="""
[[webhooks]]
url = "http://127.0.0.1:9/hooks"
secret = "x"
""",
    )
    process = start(config)
    try:
        await until(lambda: server.logins == 1, timeout=20)
        # After both lists of the resync: this server knows nothing of the calls it plays, so a
        # call begun before the channel list was asked for would rightly count as vanished.
        await server.wait_action("QueueStatus")
        await server.wait_action("CoreShowChannels")
        await server.play_capture(captures / "abandon_in_queue.jsonl", speed=20)
        client = redis.Redis.from_url(redis_url)
        keys = Keys(key_prefix)
        deadline = time.monotonic() + 10
        while not client.hget(keys.open(), "+79161234561"):
            assert time.monotonic() < deadline, "the missed call never reached Redis"
            await asyncio.sleep(0.05)
        # The side-jobs bridge took the events over (its cursor moved past them).
        while not client.get(keys.jobs_cursor()):
            assert time.monotonic() < deadline, "the jobs bridge never handed over"
            await asyncio.sleep(0.05)
        client.close()
    except AssertionError as failure:
        # What the dialer logged is the only way to tell why, so it goes with the failure.
        _, err = await stop(process)
        await server.stop()
        raise AssertionError(f"{failure}\n--- the dialer's log:\n{err}") from None
    except BaseException:
        await stop(process)
        await server.stop()
        raise
    code, err = await stop(process)
    await server.stop()
    assert code == 0, err
    assert "stopped" in err
    assert "Traceback" not in err
    assert len(server.actions_named("Logoff")) == 1  # it said goodbye to Asterisk


async def test_asterisk_down_at_start_is_not_fatal(tmp_path, redis_url, key_prefix) -> None:
    with refusing_port() as down:
        port = down.getsockname()[1]
        config = write_config(
            tmp_path / "dialer.toml", ami_port=port, redis_url=redis_url, prefix=key_prefix
        )
        process = start(config)
        await asyncio.sleep(2.5)
    try:
        assert process.poll() is None, "the dialer gave up while Asterisk was down"
        late = await AmiServer(secret="s3cret", port=port).start()
        await until(lambda: late.logins == 1, timeout=10)
        await late.stop()
    finally:
        code, err = await stop(process)
    assert code == 0
    assert "AMI connection attempt failed" in err
    assert "retry_in" in err


async def test_estimate_counts_callbacks_ahead_and_agents_serving(queue, config) -> None:
    clock = queue.clock
    book = AgentBook(config, clock)
    tracker = CallTracker(config, lambda fact: None)
    for extension in ("101", "102"):
        book.on_member(
            AmiMessage(
                {
                    "Event": "QueueMember",
                    "Queue": "sales",
                    "Location": f"PJSIP/{extension}",
                    "Name": extension,
                    "Status": "1",
                    "Paused": "0",
                    "InCall": "0",
                }
            )
        )
    ids = []
    for i in range(5):
        result = await queue.add_missed(
            number=f"+7916000000{i}",
            category="new_connection",
            source=Source.ABANDON,
            missed_at=clock.now() - 100 + i,
        )
        ids.append(result.id)
    last = await queue.get(ids[-1])
    first = await queue.get(ids[0])
    kw = {"queue": queue, "agents": book, "tracker": tracker, "config": config, "clock": clock}
    # Four ahead of the last, two agents free, 300 s each until handle times are known: two
    # start at once, the other two after the first agent frees (100 s) and the next (150 s):
    # 100 + 2 * 150 = 400 s -> "about 10 minutes". The first starts at once: "about 5".
    assert await estimate_minutes(last, **kw) == 10
    assert await estimate_minutes(first, **kw) == 5
    support = await queue.add_missed(
        number="+79160000009", category="support", source=Source.ABANDON, missed_at=clock.now()
    )
    nobody = await queue.get(support.id)
    assert await estimate_minutes(nobody, **kw) == 60  # nobody serves support


def test_the_shipped_dialplan_is_what_the_shipped_config_renders() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "callback_dialer", "dialplan", "--config", "config/dialer.toml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (REPO / "config" / "asterisk" / "extensions.conf").read_text()


def test_the_dialplan_follows_the_categories(make_config) -> None:
    from callback_dialer.ivr.dialplan import render_dialplan

    config = make_config(
        categories=[{"name": "vip", "ivr_digit": "9", "label": "VIP"}, {"name": "other"}],
        detection={"queue_categories": {}},
        dispatch={"queues": {"premium": ["vip"], "support": ["other"]}},
    )
    text = render_dialplan(config)
    assert (
        "exten => 9,1,Set(CALLBACK_CATEGORY=vip)\n"
        " same => n,GosubIf(${DB_EXISTS(callback-outage/cat-vip)}?callback-outage-notice,s,1)\n"
        " same => n,Set(CALLBACK_QUEUE=premium)\n"
        " same => n,Gosub(callback-door,s,1(premium))\n"
        " same => n,Queue(premium,"
    ) in text
    assert (
        "exten => t,1,Set(CALLBACK_CATEGORY=other)\n same => n,Set(CALLBACK_QUEUE=support)\n"
        " same => n,Gosub(callback-door,s,1(support))\n"
        " same => n,Queue(support," in text
    )
    assert "CALLBACK_CATEGORY=new_connection" not in text
    # The self-service sample takes a digit no category uses.
    assert "exten => 8,1,Set(CALLBACK_SKIP=balance)" in text


async def test_metrics_render_even_when_one_gauge_cannot_be_read() -> None:
    from callback_dialer.metrics import Metrics

    metrics = Metrics()

    async def broken():
        raise ConnectionError("Redis unreachable")

    async def fine():
        return [((), 1.0)]

    metrics.gauge("callback_dialer_queue_depth", "x", (), broken)
    metrics.gauge("callback_dialer_ami_connected", "x", (), fine)
    metrics.not_queued.inc("anonymous")
    text = await metrics.render()
    assert "callback_dialer_ami_connected 1" in text
    assert 'callback_dialer_calls_not_queued_total{reason="anonymous"} 1' in text
    assert "# callback_dialer_queue_depth not readable: ConnectionError" in text
