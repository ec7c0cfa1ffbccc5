"""`callback-dialer worker` as an operator runs it: a TOML file, secrets from the environment."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest
import redis
from rq.job import Job

from callback_dialer.config import load_config
from callback_dialer.jobs.bridge import JobsBridge
from callback_dialer.jobs.common import retry_policy
from callback_dialer.jobs.webhooks import verify_signature
from callback_dialer.queue.models import Source
from callback_dialer.queue.store import CallbackQueue

from .conftest import REPO
from .test_jobs_support import Receiver, hand_over_all, purge_rq


@pytest.fixture(autouse=True)
def _rq_cleanup(redis_url, key_prefix):
    yield
    purge_rq(redis_url, key_prefix)


def write_config(path, redis_url, key_prefix, hook_url) -> None:
    path.write_text(
        f"""
[redis]
url = "{redis_url}"
key_prefix = "{key_prefix}"

[reports]
enabled = false

[jobs]
max_tries = 2
retry_delays = ["1s"]

[[webhooks]]
url = "{hook_url}"
secret = "env:TEST_CRM_SECRET"
events = ["created"]
""",
        encoding="utf-8",
    )


async def cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callback_dialer",
        *args,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode, out.decode(), err.decode()


async def test_the_worker_command_delivers_with_the_secret_from_the_environment(
    tmp_path,
    redis_url,
    key_prefix,
    redis_client,
    clock,
) -> None:
    receiver = await Receiver().start()
    path = tmp_path / "dialer.toml"
    write_config(path, redis_url, key_prefix, receiver.url())
    config = load_config(path)
    queue = CallbackQueue(redis_client, config, clock)
    bridge = JobsBridge(redis_client, config, queue, clock)
    await bridge.prime()
    await queue.add_missed(
        number="+79161234567",
        category="support",
        source=Source.ABANDON,
        missed_at=clock.now(),
        call_id="c1",
    )
    await hand_over_all(bridge)
    await bridge.close()
    env = {k: v for k, v in os.environ.items() if k != "TEST_CRM_SECRET"}
    code, _, err = await cli(
        "worker", "--burst", "--config", str(path), env={**env, "TEST_CRM_SECRET": "from-env"}
    )
    await receiver.stop()
    assert code == 0, err
    [got] = receiver.requests
    assert verify_signature("from-env", got.headers["X-Callback-Dialer-Signature"], got.body)
    assert '"event": "worker_started"' in err  # structlog JSON lines, not rq's own format


async def test_a_missing_secret_stops_the_worker_with_one_line(
    tmp_path, redis_url, key_prefix
) -> None:
    path = tmp_path / "dialer.toml"
    write_config(path, redis_url, key_prefix, "https://crm.example/hook")
    env = {k: v for k, v in os.environ.items() if k != "TEST_CRM_SECRET"}
    code, _, err = await cli("worker", "--burst", "--config", str(path), env=env)
    assert code == 1
    assert err.strip() == (
        "config error: worker: webhooks[0].secret: environment variable TEST_CRM_SECRET is not set"
    )


def test_retry_waits_follow_the_config_in_order_with_the_last_repeating(
    make_config, redis_url
) -> None:
    # rq reads its interval list from the end (index = len - retries left): the policy must
    # spell out one wait per retry, or the first wait would repeat instead of the last.
    config = make_config(jobs={"max_tries": 6, "retry_delays": ["10s", "1m", "1.5s"]})
    policy = retry_policy(config.jobs)
    conn = redis.Redis.from_url(redis_url)
    job = Job.create(
        "callback_dialer.jobs.webhooks.deliver_webhooks", args=("x",), connection=conn, retry=policy
    )
    waits = []
    while job.retries_left:
        waits.append(job.get_retry_interval())
        job.retries_left -= 1
    conn.close()
    assert waits == [10, 60, 2, 2, 2]  # five retries after the first try
    assert retry_policy(make_config(jobs={"max_tries": 1}).jobs) is None
