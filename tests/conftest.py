"""Shared fixtures: a real Redis (database 13, a fresh key prefix per test), clocks, config."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from callback_dialer.clock import ManualClock
from callback_dialer.config import Config, parse_config
from callback_dialer.queue.keys import Keys
from callback_dialer.queue.store import CallbackQueue

from .helpers.redis_process import RedisProcess

REPO = Path(__file__).resolve().parents[1]
TEST_REDIS = os.environ.get("CALLBACK_DIALER_TEST_REDIS", "redis://127.0.0.1:6379/13")
ALWAYS_OPEN = {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


# Our own recordings of a real Asterisk 22.9.0 (tests/fixtures/README.md says how each was made).
FIXTURES = REPO / "tests" / "fixtures"


def find_captures() -> Path | None:
    """The shared AMI captures: $CALLBACK_DIALER_CAPTURES, else ``shared/ami-captures`` beside
    the checkout or beside any folder above it (a CI clone may sit deeper than ../)."""
    env = os.environ.get("CALLBACK_DIALER_CAPTURES")
    if env:
        return Path(env) if Path(env).is_dir() else None
    for parent in REPO.parents:
        candidate = parent / "shared" / "ami-captures"
        if candidate.is_dir():
            return candidate
    return None


def capture_sources() -> dict[str, Path]:
    """Every recording of the scenarios on this machine, by test id: the repo's own fixtures
    always; the shared captures too when present, a second recording (another Asterisk build,
    other Uniqueids, other thread timings) that the same tests must hold on."""
    sources = {"fixtures": FIXTURES}
    shared = find_captures()
    if shared is not None and shared.resolve() != FIXTURES.resolve():
        sources["shared"] = shared
    return sources


CAPTURE_SOURCES = capture_sources()


# The files whose tests wait longest (real processes, real seconds of simulated calls), started
# first: with four workers the suite then ends when the bulk does, not a few minutes later
# with one worker still on the fault suite's storm.
_LONGEST_FIRST = (
    "test_faults.py",
    "test_two_dialers.py",
    "test_redis_ha.py",
    "test_live_turns_sim.py",
    "test_sim_end_to_end.py",
    "test_catchup.py",
    "test_demo.py",
    "test_web_browser.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test (or a fixture it uses) asking for ``captures`` runs once per recording."""
    if "captures" in metafunc.fixturenames:
        metafunc.parametrize("captures", list(CAPTURE_SOURCES.values()), ids=list(CAPTURE_SOURCES))


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = redis.Redis.from_url(TEST_REDIS, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.exit(f"no Redis at {TEST_REDIS} ({exc}); scripts/test starts one", returncode=3)
    finally:
        client.close()
    return TEST_REDIS


@pytest.fixture
def key_prefix(redis_url: str) -> Any:
    prefix = "test-" + secrets.token_hex(6)
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=Keys(prefix).pattern(), count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def make_config(key_prefix: str, redis_url: str) -> Callable[..., Config]:
    """Config with this test's Redis and key prefix, always-open calling hours, and any
    overrides given as nested dicts."""

    def build(**sections: Any) -> Config:
        data: dict[str, Any] = {
            "redis": {"url": redis_url, "key_prefix": key_prefix},
            "hours": {"weekly": ALWAYS_OPEN},
            "web": {"auth": "none"},
            # Any free port: tests run side by side, and beside a lab dialer on 4573.
            "ivr": {"agi_port": 0},
        }
        for name, value in sections.items():
            if isinstance(value, dict) and isinstance(data.get(name), dict):
                data[name] = {**data[name], **value}
            else:
                data[name] = value
        return parse_config(data, "test")

    return build


@pytest.fixture
def config(make_config: Callable[..., Config]) -> Config:
    return make_config()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def queue(redis_client: aioredis.Redis, config: Config, clock: ManualClock) -> CallbackQueue:
    return CallbackQueue(redis_client, config, clock)


@pytest.fixture
def own_redis(tmp_path: Path) -> Any:
    """A redis-server of the test's own, for outages that must not disturb anything else."""
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    server.stop()
