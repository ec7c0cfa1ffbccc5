"""Configuration: parsed once, typed; a bad key, type or value is one line naming it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from callback_dialer.config import Config, ConfigError, load_config, parse_config
from callback_dialer.web.auth import hash_password

from .conftest import REPO

SHIPPED = REPO / "config" / "dialer.toml"


def test_the_shipped_file_is_valid_and_spells_out_every_default() -> None:
    # The commented file is the reference: it must say exactly what the program assumes.
    assert load_config(SHIPPED) == Config()


def problems(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "t.toml")
    return info.value.problems


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"retyr": {}}, "retyr: unknown key in the top level; allowed keys: ami, redis,"),
        ({"ami": {"hots": "x"}}, "ami.hots: unknown key in ami; allowed keys: host, port,"),
        ({"retry": {"max_attempts": "three"}}, "retry.max_attempts: must be a whole number"),
        ({"retry": {"max_attempts": 0}}, "retry.max_attempts: must be at least 1"),
        ({"retry": {"delays": ["5m", "soon"]}}, "retry.delays[1]: expected a number of seconds"),
        ({"ami": {"port": 70000}}, "ami.port: must be at most 65535"),
        ({"web": {"enabled": "yes"}}, "web.enabled: must be true or false"),
        ({"dispatch": {"mode": "robot"}}, "dispatch.mode: must be one of 'agent_first' or"),
        ({"hours": {"timezone": "Mars/Base"}}, "hours.timezone: 'Mars/Base' is not an IANA"),
        ({"hours": {"weekly": {"mon": ["21:00-09:00"]}}}, "ends before it starts"),
        ({"hours": {"weekly": {"monday": ["09:00-18:00"]}}}, "unknown day 'monday'"),
        ({"phone": {"default_region": "XX"}}, "phone.default_region: 'XX' is not a region"),
        ({"categories": [{"name": "a"}, {"name": "a"}]}, "category names must be unique"),
        ({"categories": [{"name": "Bad Name"}]}, "categories[0].name: must match the pattern"),
        (
            {"detection": {"queue_categories": {"sales": "vip"}}},
            "detection.queue_categories.sales: 'vip' is not a category",
        ),
        ({"dispatch": {"queues": {"sales": ["vip"]}}}, "dispatch.queues.sales: 'vip' is not"),
        ({"dispatch": {"exten": "9{phone}"}}, "dispatch.exten: unknown placeholder {phone}"),
        ({"redis": {"url": "http://x"}}, 'redis.url: must start with "redis://"'),
        (
            {"web": {"users": [{"name": "olga", "role": "supervisor"}]}},
            "web.users: user 'olga' has no password_hash",
        ),
        (
            {"webhooks": [{"url": "https://x", "events": ["exploded"]}]},
            "webhooks[0].events: unknown event 'exploded'",
        ),
        ({"sms": {"enabled": True}}, "sms.url must be an http(s) URL"),
        (
            {"web": {"trusted_proxies": ["10.0.0.0/8", "proxy.local"]}},
            "web.trusted_proxies: 'proxy.local' is not an IP address or network",
        ),
        (
            {"web": {"allowed_hosts": ["https://callbacks.example.net:8080"]}},
            "web.allowed_hosts: 'https://callbacks.example.net:8080' is not a host name",
        ),
        ({"web": {"auth": "proxy"}}, 'web.trusted_proxies: with auth = "proxy" the user header'),
        (
            {"web": {"session_idle": "2h", "session_max": "1h"}},
            "web.session_max must not be below web.session_idle",
        ),
        ({"web": {"public": ["metrics", "admin"]}}, "web.public[1]: must be one of 'healthz'"),
        ({"web": {"target_share": 1.5}}, "web.target_share: must be at most 1"),
        (
            {
                "dispatch": {
                    "mode": "customer_first",
                    "customer_channel": "Local/{exten}@callback-customer",
                }
            },
            "customer_channel 'Local/{exten}@callback-customer' needs the /n option",
        ),
        ({"redis": {"sentinels": ["10.0.0.1"]}}, 'redis.sentinels: expected "host:port"'),
        (
            {"redis": {"sentinels": ["a:26379"], "cluster": True}},
            "redis.sentinels and redis.cluster = true exclude each other",
        ),
        (
            {"redis": {"cluster": True, "wait_replicas": 1}},
            "redis.wait_replicas is for one master with replicas",
        ),
        ({"leader": {"lease": 6, "renew_every": 4}}, "leader.renew_every must be above 0"),
        ({"leader": {"instance": "a b"}}, "leader.instance: may hold only letters"),
    ],
)
def test_each_fault_is_one_line_naming_the_key_and_what_is_allowed(data, expected) -> None:
    found = problems(data)
    assert len(found) == 1, found
    assert expected in found[0]


def test_secrets_come_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("CALLBACK_DIALER_AMI_SECRET", "s3cret")
    monkeypatch.setenv("CALLBACK_DIALER_REDIS_PASSWORD", "pw")
    monkeypatch.setenv("CALLBACK_DIALER_METRICS_TOKEN", "scrape-me")
    config = parse_config({"ami": {"secret": "in-file"}})
    assert config.ami.secret == "s3cret"
    assert config.redis.password == "pw"
    assert config.web.metrics_token == "scrape-me"


def test_the_shipped_file_shows_a_password_hash_as_hash_password_writes_it() -> None:
    shown = re.search(r'password_hash = "([^"]+)"', SHIPPED.read_text("utf-8")).group(1)
    made = hash_password("an example password")
    # The same scheme and parameters: the example is what the command prints, abridged.
    assert shown.removesuffix("...") == made[: len(shown) - 3]


def test_allowed_hosts_are_kept_in_one_spelling() -> None:
    config = parse_config({"web": {"allowed_hosts": ["Callbacks.Example.NET.", "[::1]", "*"]}})
    assert config.web.allowed_hosts == ("callbacks.example.net", "::1", "*")


def test_durations_read_as_seconds() -> None:
    config = parse_config({"retry": {"delays": [90, "90s", "15m", "1h30m", "2d"]}})
    assert config.retry.delays == (90, 90, 900, 5400, 172800)


def test_a_missing_or_broken_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[ami\nhost = 1\n")
    with pytest.raises(ConfigError, match="TOML syntax error"):
        load_config(broken)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callback_dialer", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_config_exits_0_for_a_good_file() -> None:
    done = run_cli("check-config", str(SHIPPED))
    assert done.returncode == 0
    assert "OK" in done.stdout


def test_check_config_exits_1_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[retry]\nmax_attempts = "three"\n')
    done = run_cli("check-config", str(bad))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"config error: {bad}: retry.max_attempts: must be a whole number (got 'three')"
    ]
    assert "Traceback" not in done.stderr


def test_the_dialer_refuses_to_start_on_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[dispatch]\nmode = 'robot'\n")
    done = subprocess.run(
        [sys.executable, "run_dialer.py", "--config", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "dispatch.mode: must be one of" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_run_dialer_help_works() -> None:
    done = subprocess.run(
        [sys.executable, "run_dialer.py", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert "--config" in done.stdout
