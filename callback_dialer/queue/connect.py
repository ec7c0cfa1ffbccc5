"""Where Redis is, in one place: one server, the master that Sentinel names, or a Cluster.

Every part that talks to Redis gets its client here: the dialer and its status page (asyncio)
and the rq side (a synchronous client that returns bytes, as rq needs). So a failover moves
all of them together: with ``[redis] sentinels`` each new connection asks the sentinels for
the current master, and a connection to a master that was demoted fails (redis-py closes it on
the replica's READONLY answer) and is made again to the new one.

With ``[redis] cluster = true`` ``url`` names one node; the client learns the others and sends
each command to the node that holds its key's slot. Every key of ours is in one slot (the
``{prefix}`` hash tag, see keys.py), so the queue's multi-key scripts stay legal. rq does not
work on a cluster (rq 2.x's worker cannot run on a cluster client, and the jobs bridge hands
events over in one MULTI/EXEC spanning our cursor key and rq's keys, which lie in other
slots): ``sync_client`` refuses, so the side jobs say so instead of failing at their first
job.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.connection import SSLConnection as AsyncSSLConnection
from redis.asyncio.connection import parse_url as parse_async_url
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.connection import parse_url
from redis.sentinel import Sentinel

from ..config import Config

AsyncClient = aioredis.Redis | AsyncRedisCluster


class ClusterNotSupported(RuntimeError):
    """rq (the side jobs) cannot use a Redis Cluster."""


def _url_parts(url: str, parse: Any) -> dict[str, Any]:
    """What a URL says besides where the server is: database, user, password, TLS."""
    parts = parse(url)
    out: dict[str, Any] = {"db": int(parts.get("db") or 0)}
    for key in ("username", "password"):
        if parts.get(key):
            out[key] = parts[key]
    connection_class = parts.get("connection_class")
    if connection_class is not None and issubclass(
        connection_class, (AsyncSSLConnection, redis.SSLConnection)
    ):
        out["ssl"] = True
    return out


def async_client(config: Config, url: str | None = None) -> AsyncClient:
    """The dialer's client (``url`` instead of ``[redis] url``, for tests and the demo)."""
    r = config.redis
    url = url or r.url
    timeouts = {
        "socket_timeout": r.socket_timeout,
        "socket_connect_timeout": r.socket_timeout,
    }
    password = r.password or None
    if r.sentinels:
        parts = _url_parts(url, parse_async_url)
        if password:
            parts["password"] = password
        sentinel = AsyncSentinel(
            r.sentinel_addresses(),
            sentinel_kwargs={"password": r.sentinel_password or None, **timeouts},
            **timeouts,
        )
        return sentinel.master_for(r.service_name, health_check_interval=30, **parts, **timeouts)
    if r.cluster:
        return AsyncRedisCluster.from_url(url, password=password, **timeouts)
    return aioredis.Redis.from_url(url, password=password, health_check_interval=30, **timeouts)


def sync_client(config: Config, socket_timeout: float | None = None) -> redis.Redis:
    """A bytes-returning synchronous client for rq and the job keys.

    ``socket_timeout`` None: a worker's blocking pop waits longer than any sensible timeout.
    """
    r = config.redis
    if r.cluster:
        raise ClusterNotSupported(
            "the side jobs (rq: webhooks, SMS, scheduled reports) cannot use a Redis Cluster: "
            "rq's worker does not run on a cluster client, and the hand-off to rq is one "
            "MULTI/EXEC over keys in different slots; see README, Redis HA"
        )
    password = r.password or None
    if r.sentinels:
        parts = _url_parts(r.url, parse_url)
        if password:
            parts["password"] = password
        connect_timeout = {"socket_connect_timeout": r.socket_timeout}
        sentinel = Sentinel(
            r.sentinel_addresses(),
            sentinel_kwargs={
                "password": r.sentinel_password or None,
                "socket_timeout": r.socket_timeout,
                **connect_timeout,
            },
            socket_timeout=socket_timeout,
            **connect_timeout,
        )
        return sentinel.master_for(
            r.service_name, socket_timeout=socket_timeout, health_check_interval=30, **parts
        )
    return redis.Redis.from_url(
        r.url,
        password=password,
        socket_connect_timeout=r.socket_timeout,
        socket_timeout=socket_timeout,
        health_check_interval=30,
    )


async def close_async_client(client: AsyncClient) -> None:
    """Close the client and, with Sentinel, its connections to the sentinels."""
    await client.aclose()
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    if manager is not None:
        await manager.aclose()


def where(config: Config) -> str:
    """Where Redis is, for logs and messages (no password)."""
    r = config.redis
    if r.sentinels:
        return f"sentinel {r.service_name} via {', '.join(r.sentinels)}"
    location = r.url.split("@")[-1]
    return f"cluster via {location}" if r.cluster else location
