"""What every side job shares: the rq connection and queue, retries, secrets, plain HTTP.

rq needs a Redis client that returns bytes (``decode_responses=True`` breaks it), so everything
here that talks to rq uses ``connect()``. Job functions run inside ``callback-dialer worker``;
they read the worker's configuration through ``worker_config()``, never from job arguments, so
a fixed URL or secret in the config file takes effect for jobs already waiting.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

import redis
from rq import Queue, Retry

from .. import __version__
from ..config import Config, ConfigError, JobsConfig, WebhookConfig
from ..queue.connect import sync_client
from ..queue.keys import Keys

USER_AGENT = f"callback-dialer/{__version__}"
# Statuses that say "try again later" although they are 4xx.
RETRYABLE_4XX = (408, 425, 429)

_worker_config: Config | None = None


def set_worker_config(config: Config) -> None:
    """Called once by ``run_worker``; forked job processes inherit it."""
    global _worker_config
    _worker_config = config


def worker_config() -> Config:
    if _worker_config is None:
        raise RuntimeError("side jobs run inside `callback-dialer worker` (no config was set)")
    return _worker_config


def connect(config: Config, socket_timeout: float | None = None) -> redis.Redis:
    """A bytes-returning client for rq and the job keys (rq breaks on decoded responses),
    to the one server or the master Sentinel names (queue/connect.py).

    No ``socket_timeout`` for a worker: rq's own blocking pop waits longer than any sensible
    timeout. The dialer side passes one, so a hung Redis cannot hold its hand-off forever.
    """
    return sync_client(config, socket_timeout=socket_timeout)


class _OurQueue(Queue):
    """rq's Queue, with job ids that start with our key prefix (``Keys.rq_id_prefix``), so that
    every rq key of an installation can be told apart from another's in a shared Redis."""

    id_prefix = ""

    def create_job(self, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("job_id"):
            kwargs["job_id"] = f"{self.id_prefix}-{uuid.uuid4().hex}"
        return super().create_job(*args, **kwargs)


def rq_queue(config: Config, connection: redis.Redis) -> Queue:
    keys = Keys(config.redis.key_prefix)
    queue = _OurQueue(keys.rq_queue_name(config.jobs.queue_name), connection=connection)
    queue.id_prefix = keys.rq_id_prefix()
    return queue


def rq_worker_name(config: Config) -> str:
    """A worker name that carries our prefix too (rq keeps ``rq:worker:<name>``)."""
    return f"{Keys(config.redis.key_prefix).rq_id_prefix()}-{socket.gethostname()}-{os.getpid()}"


def forget_rq_keys(config: Config, connection: redis.Redis) -> int:
    """Delete every rq key of this installation: its queue's keys and registries (named after
    the queue), its jobs, results and workers (named with ``rq_id_prefix``), and their entries
    in rq's global sets. For a throwaway installation (the demo) when it ends; returns how many
    keys went."""
    keys = Keys(config.redis.key_prefix)
    marks = (keys.rq_queue_name(config.jobs.queue_name), keys.rq_id_prefix() + "-")
    doomed: set[bytes] = set()
    for mark in marks:
        glob = re.sub(r"([*?\[\]\\])", r"\\\1", mark)
        doomed.update(connection.scan_iter(match=f"rq:*{glob}*", count=1000))
    for shared in ("rq:queues", "rq:workers"):
        members = [m for m in connection.smembers(shared) if any(k.encode() in m for k in marks)]
        if members:
            connection.srem(shared, *members)
    found = sorted(doomed)
    for i in range(0, len(found), 500):
        connection.delete(*found[i : i + 500])
    return len(found)


def retry_policy(jobs: JobsConfig) -> Retry | None:
    """rq's Retry for ``max_tries`` tries in all, waiting ``retry_delays`` between them.

    rq picks the wait for a retry from the END of its interval list (index = len - retries
    left), so a short list would repeat its first delay, not its last: spell the list out to
    exactly one entry per retry.
    """
    retries = jobs.max_tries - 1
    if retries < 1:
        return None
    return Retry(max=retries, interval=[jobs.delay_before_try(n) for n in range(1, retries + 1)])


def resolve_secret(value: str, where: str) -> str:
    """The text itself, or the environment variable named by ``env:NAME``."""
    if not value.startswith("env:"):
        return value
    name = value[4:]
    found = os.environ.get(name)
    if not found:
        raise ConfigError("environment", [f"{where}: environment variable {name} is not set"])
    return found


def receiver_id(url: str) -> str:
    """A receiver's name in Redis keys: stable across config reordering, fixed by its URL."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def display_url(url: str) -> str:
    """A URL fit for logs, job descriptions and the status page: a password in it or values
    in its query (often an API token) are hidden."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "&".join(
        f"{name}=***" if sep else name
        for name, sep, _ in (item.partition("=") for item in parts.query.split("&") if item)
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def webhooks_by_receiver(config: Config) -> dict[str, WebhookConfig]:
    out: dict[str, WebhookConfig] = {}
    for hook in config.webhooks:
        out.setdefault(receiver_id(hook.url), hook)
    return out


def check_jobs_config(config: Config) -> list[str]:
    """Faults that only show when a job runs (missing env secrets, repeated URLs), early."""
    problems = []
    seen: dict[str, int] = {}
    for index, hook in enumerate(config.webhooks):
        if hook.url in seen:
            problems.append(f"webhooks[{index}].url: the same URL as webhooks[{seen[hook.url]}]")
        seen.setdefault(hook.url, index)
        try:
            resolve_secret(hook.secret, f"webhooks[{index}].secret")
        except ConfigError as exc:
            problems.extend(exc.problems)
    for name, value in config.sms.headers.items():
        try:
            resolve_secret(value, f"sms.headers.{name}")
        except ConfigError as exc:
            problems.extend(exc.problems)
    return problems


def ceil_seconds(value: float) -> int:
    return max(1, math.ceil(value))


# --------------------------------------------------------------------------- HTTP


@dataclass(frozen=True, slots=True)
class HttpOutcome:
    status: int  # 0 when no HTTP answer came at all
    detail: str  # one line: the status text and the start of the body, or the network error

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def refused(self) -> bool:
        """The receiver answered and will answer the same again: retrying cannot help."""
        return (300 <= self.status < 500) and self.status not in RETRYABLE_4XX


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirected POST would silently turn into a GET without the body: report it instead.
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


_opener = urllib.request.build_opener(_NoRedirects())


def _snippet(data: bytes) -> str:
    text = data[:200].decode("utf-8", "replace")
    return " ".join(text.split())


def http_send(
    method: str, url: str, body: bytes | None, headers: dict[str, str], timeout: float
) -> HttpOutcome:
    """One HTTP request; never raises for HTTP or network trouble, says what happened."""
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("User-Agent", USER_AGENT)
    for name, value in headers.items():
        request.add_header(name, value)
    try:
        with _opener.open(request, timeout=timeout) as response:
            return HttpOutcome(response.status, f"{response.status} {response.reason}")
    except urllib.error.HTTPError as exc:
        try:
            body_text = _snippet(exc.read())
        except OSError:
            body_text = ""
        detail = f"{exc.code} {exc.reason}"
        if 300 <= exc.code < 400:
            detail += f" (redirect to {exc.headers.get('Location', '?')}; fix the URL)"
        return HttpOutcome(exc.code, f"{detail}: {body_text}" if body_text else detail)
    except urllib.error.URLError as exc:
        return HttpOutcome(0, f"no answer: {exc.reason}")
    except (TimeoutError, OSError) as exc:
        return HttpOutcome(0, f"no answer: {exc or type(exc).__name__}")
