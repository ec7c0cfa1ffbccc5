"""The leader lease in Redis: which dialer dispatches, and the fencing token that proves it.

One hash (``Keys.leader()``) holds the holder's instance name, a token that only grows (one
more at every acquisition; the key never expires, so the count never starts again) and the
moment the holding ends, in Redis's own clock. ``tick`` renews the caller's holding, takes a
free or run-out lease, or says who holds it; ``release`` ends the caller's holding at once
(an orderly stop: a standby need not wait for the lease to run out).

The fence: the queue's claim, renew and settle scripts compare the caller's ``Fence`` (the
holding it last had) with the lease and refuse a stale one (``NotLeader``), so a dialer that
was replaced while frozen cannot claim, ring or record anything with its old holding, even
before it learns it was replaced. The instance name is compared as well as the token: should a
failover lose the last increment (an asynchronous replica), a new holder could get a number
an old one had, but never with the old one's name.

This module only talks to Redis; ``dispatch/leadership.py`` decides when to call it and what
being leader means.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..config import Config
from .connect import AsyncClient
from .keys import Keys, lua_prelude


@dataclass(frozen=True, slots=True)
class Fence:
    """A holding of the lease: who, and which one."""

    instance: str
    token: int

    def to_json(self) -> dict[str, Any]:
        return {"instance": self.instance, "token": str(self.token)}


@dataclass(frozen=True, slots=True)
class LeaseState:
    """What Redis answered: ``acquired``/``renewed`` (the caller holds it for ``seconds``),
    ``held`` (``holder`` does, for ``seconds`` more), ``released``, ``not_holder``."""

    result: str
    holder: str
    token: int
    seconds: float

    @property
    def ours(self) -> bool:
        return self.result in ("acquired", "renewed")


class LeaseUnavailable(Exception):
    """Redis did not answer the lease script; nothing is known about the holding."""


class LeaderLease:
    def __init__(self, redis: AsyncClient, config: Config) -> None:
        self.redis = redis
        self.keys = Keys(config.redis.key_prefix)
        self.wait_replicas = config.redis.wait_replicas
        self.wait_ms = int(config.redis.wait_timeout * 1000)
        source = resources.files(__package__).joinpath("lua", "lease.lua").read_text("utf-8")
        self._script = redis.register_script(lua_prelude() + _PARSE + source)

    async def _run(self, payload: dict[str, Any], *, durable: bool = False) -> dict[str, Any]:
        keys, args = [self.keys.leader()], [self.keys.tag, json.dumps(payload)]
        try:
            if durable and self.wait_replicas:
                # WAIT on the connection that wrote: a new holding's token must survive a
                # failover, or two holdings could share one.
                pipe = self.redis.pipeline(transaction=False)
                await self._script(keys=keys, args=args, client=pipe)
                pipe.wait(self.wait_replicas, self.wait_ms)
                raw, _ = await pipe.execute()
            else:
                raw = await self._script(keys=keys, args=args)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise LeaseUnavailable(f"Redis unreachable: {exc}") from exc
        except RedisError as exc:
            raise LeaseUnavailable(f"Redis refused the lease script: {exc}") from exc
        return json.loads(raw.decode() if isinstance(raw, bytes) else raw)

    async def tick(self, instance: str, holding: Fence | None, lease: float) -> LeaseState:
        """Renew ``holding``, or take the lease if it is free or ran out, or learn its holder."""
        payload = {
            "op": "tick",
            "instance": instance,
            "token": str(holding.token) if holding else "",
            "lease_ms": int(lease * 1000),
        }
        return _state(await self._run(payload, durable=True))

    async def release(self, holding: Fence) -> LeaseState:
        payload = {"op": "release", "instance": holding.instance, "token": str(holding.token)}
        return _state(await self._run(payload))

    async def read(self) -> tuple[str, int]:
        """(holder, token) as stored now; ("", 0) when nobody ever led."""
        try:
            raw = await self.redis.hmget(self.keys.leader(), ["holder", "token"])
        except (RedisError, OSError) as exc:
            raise LeaseUnavailable(f"Redis unreachable: {exc}") from exc
        holder, token = (v.decode() if isinstance(v, bytes) else (v or "") for v in raw)
        return holder, int(token or 0)


# lease.lua needs only the arguments, not the queue's shared library.
_PARSE = "local P = cjson.decode(ARGV[2])\n"


def _state(out: dict[str, Any]) -> LeaseState:
    return LeaseState(
        result=out["result"],
        holder=out.get("holder", ""),
        token=int(out.get("token") or 0),
        seconds=float(out.get("ms") or 0) / 1000.0,
    )
