"""The callback queue: all state in Redis, every multi-key change one Lua script.

Priority, one formula: a ready callback's score is ``first_missed - weight(category)``, the
lowest score is taken first. A category's weight is a head start in seconds: with
``new_connection`` at 1800 a new-subscriber call goes before any support call that waited less
than 30 minutes longer, but not before one that waited longer than that (aging). A weight larger
than any realistic wait (say 10 days) is strict priority. "Call now" pins a callback to the head.

Scheduling: a callback due later sits in one sorted set by due time; every claim (and the
housekeeping tick) promotes the due ones in bounded batches, so nothing scans the whole queue.

Claims: ``claim`` takes the best ready callback among the categories an agent serves and holds it
for a lease. ``renew`` extends it while the call runs; ``settle`` ends it (done, retry, release,
failed). A lease that runs out (the dialer died) puts the callback back, ready, with its history
saying so. A claim's token is the only key to settle it: a callback closed meanwhile ("served")
or reclaimed after an expired lease cannot be touched by the old holder.

Fencing: with several dialers, only the holder of the leader lease (lease.py) may claim,
renew or settle. Those three scripts carry the caller's holding (``fence``) and refuse a stale
one: ``NotLeader``, nothing changed. Everything else (a missed call, a customer served, a
supervisor's action) any instance may write: the enqueue is idempotent by call id, so two
dialers detecting one missed call make one callback.

News: every write that makes a callback ready, schedules it or closes it is told to the
queue's listeners (``on_change``) as a frozen ``QueueChange``, so no writer has to remember
who else must know (the dispatcher wakes for a ready callback, hangs up a closed one).
"""

from __future__ import annotations

import fnmatch
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..clock import Clock
from ..config import Config
from ..hours import CallingHours
from ..logs import get_logger
from ..phone import is_e164
from .connect import AsyncClient
from .keys import Keys, lua_prelude
from .lease import Fence
from .models import (
    SOURCE_RANK,
    Adoption,
    AdoptResult,
    Attempt,
    Callback,
    Claim,
    DispatchControl,
    EnqueueResult,
    HeldBack,
    HistoryEntry,
    Outage,
    OutageEnd,
    OutageState,
    QueueChange,
    Source,
    Stage,
    State,
    WaitingEntry,
)
from .replies import text as _text

log = get_logger(__name__)

QueueListener = Callable[[QueueChange], None]

_SCRIPTS = (
    "enqueue",
    "claim",
    "renew",
    "settle",
    "adopt",
    "resolve",
    "manual",
    "housekeeping",
    "selfserved",
    "outage",
)
# The scripts carrying the caller's holding of the leader lease (refused when stale).
_FENCED = frozenset({"claim", "renew", "settle", "adopt"})
# The writes a failover must not lose: with [redis] wait_replicas they wait for a replica.
_DURABLE = frozenset({"enqueue", "claim", "settle", "adopt", "resolve", "manual", "outage"})

# The holding of the leader lease this dialer last had (None: none); see lease.py.
FenceSource = Callable[[], Fence | None]


class QueueUnavailable(Exception):
    """Redis cannot be reached or answered with an error; nothing was changed by us."""


class NotLeader(Exception):
    """The leader lease has another holding now (or this dialer holds none): the queue refused
    to claim, renew or settle for us. Nothing was changed; the current leader acts instead."""


class QueueInputError(ValueError):
    """A request the queue refuses (unknown category, not an E.164 number, ...)."""


@dataclass(frozen=True, slots=True)
class ResolveResult:
    closed: bool
    id: str = ""
    previous_state: str = ""


@dataclass(frozen=True, slots=True)
class ActionResult:
    ok: bool
    result: str  # ok | not_found | not_open | busy
    callback: Callback | None = None
    previous_state: str = ""


def _load_script(name: str) -> str:
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text("utf-8")


def _decode(raw: dict[Any, Any]) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in raw.items()
    }


class CallbackQueue:
    def __init__(
        self,
        redis: AsyncClient,
        config: Config,
        clock: Clock,
        *,
        fence: FenceSource | None = None,
    ) -> None:
        self.redis = redis
        # Claims, renewals and outcomes carry this dialer's holding of the leader lease.
        self._fence = fence
        self._wait = (config.redis.wait_replicas, int(config.redis.wait_timeout * 1000))
        self.config = config
        self.clock = clock
        self.keys = Keys(config.redis.key_prefix)
        self.hours = CallingHours(config.hours)
        self._weights = {c.name: c.weight for c in config.categories}
        self._ranks = {s.value: r for s, r in SOURCE_RANK.items()}
        prelude = lua_prelude() + _load_script("lib")
        self._scripts = {
            name: redis.register_script(prelude + _load_script(name)) for name in _SCRIPTS
        }
        self._listeners: list[QueueListener] = []

    # ------------------------------------------------------------------ listeners

    def on_change(self, listener: QueueListener) -> Callable[[], None]:
        """Tell ``listener`` of every write that may make a callback dispatchable now (a new or
        merged missed call, call now, a category change, a manual add, a release), that
        schedules one for later, or that closes one (served, cancelled, settled). It runs
        synchronously once the write is stored, so it must not block; a listener that raises
        is logged and the write stands. Returns the function that unsubscribes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _changed(self, change: QueueChange) -> None:
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:
                log.exception("a queue listener failed", callback=change.id, change=change.event)

    def _changed_to(self, cb: Callback, event: str, previous_state: State | None = None) -> None:
        due_at = cb.next_at if cb.state is State.SCHEDULED else None
        self._changed(QueueChange(cb.id, event, cb.state, previous_state, due_at))

    # ------------------------------------------------------------------ plumbing

    async def _run(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        now = payload.setdefault("now", self.clock.now())
        payload.setdefault("actor", "system")
        payload.setdefault("keep_seconds", self.config.queue.keep_finished_days * 86400)
        payload.setdefault("history_max", self.config.queue.history_max_len)
        payload.setdefault("today", self.hours.day_key(now))
        # A lease that runs out on a placed call waits this long (lib.lua recover_leases).
        payload.setdefault("retry_delays", list(self.config.retry.delays))
        payload.setdefault("hour", self.hours.hour(now))
        if name in _FENCED:
            holding = self._fence() if self._fence is not None else None
            payload["fence"] = holding.to_json() if holding is not None else None
        keys, args = [self.keys.open()], [self.keys.tag, json.dumps(payload)]
        replicas, wait_ms = self._wait
        try:
            if replicas and name in _DURABLE:
                # WAIT counts the writes of its own connection: one pipeline, one connection.
                pipe = self.redis.pipeline(transaction=False)
                await self._scripts[name](keys=keys, args=args, client=pipe)
                pipe.wait(replicas, wait_ms)
                raw, acked = await pipe.execute()
                if acked < replicas:
                    log.warning(
                        "a write is not on a replica yet; a failover now could lose it",
                        script=name,
                        replicas=acked,
                        wanted=replicas,
                    )
            else:
                raw = await self._scripts[name](keys=keys, args=args)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise QueueUnavailable(f"Redis unreachable: {exc}") from exc
        except RedisError as exc:
            raise QueueUnavailable(f"Redis refused the {name} script: {exc}") from exc
        if isinstance(raw, bytes):
            raw = raw.decode()
        out = json.loads(raw)
        if out.get("result") == "fenced":
            raise NotLeader(f"the leader lease is not ours: {name} refused")
        return out

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise QueueUnavailable(f"Redis unreachable: {exc}") from exc
        except RedisError as exc:
            raise QueueUnavailable(f"Redis error: {exc}") from exc

    def _check_category(self, category: str) -> None:
        if category not in self._weights:
            allowed = ", ".join(self._weights)
            raise QueueInputError(f"unknown category {category!r}; allowed: {allowed}")

    def score_for(self, first_missed: float, category: str) -> float:
        """The priority formula, for documentation and tests: lower goes first."""
        return first_missed - self._weights.get(category, 0.0)

    # ------------------------------------------------------------------ adding

    async def add_missed(
        self,
        *,
        number: str,
        category: str,
        source: Source,
        missed_at: float,
        call_id: str = "",
        name: str = "",
        queue: str = "",
        actor: str = "system",
        note: str = "",
        area: str = "",
        caller_id: str = "",
        promised_by: float = 0.0,
    ) -> EnqueueResult:
        """A missed call from ``number`` (E.164): a new callback, or merged into its open one.

        ``caller_id``: the number the call came from when the caller asked to be called back
        on ``number`` instead; the callback answers to both (merging, "got through").
        ``promised_by``: when the IVR told the caller we would call (kept from the first
        promise; the page and the API show it beside the real first call).

        ``call_id`` makes it idempotent: the same call reported twice (replay, resync) counts
        once. Outside calling hours the callback is scheduled for the next opening. A new
        callback an active outage covers (its category, and its number's prefix or ``area``)
        is held instead (result ``created``, state ``held``).
        """
        if not is_e164(number):
            raise QueueInputError(f"not an E.164 number: {number!r}")
        if caller_id and not is_e164(caller_id):
            raise QueueInputError(f"not an E.164 caller ID: {caller_id!r}")
        if caller_id == number:
            caller_id = ""
        self._check_category(category)
        now = self.clock.now()
        due = self.hours.next_open(now)
        payload = {
            "number": number,
            "caller_id": caller_id,
            "promised_by": promised_by or "",
            "name": name,
            "category": category,
            "source": Source(source).value,
            "missed_at": missed_at,
            "call_id": call_id,
            "trunk": self.trunk_for(number),
            "weights": self._weights,
            "ranks": self._ranks,
            "day": self.hours.day_key(missed_at),
            "hour": self.hours.hour(missed_at),
            "due_at": "" if due is None or due <= now else due,
            "queue": queue,
            "note": note,
            "actor": actor,
            "now": now,
            "area": area,
        }
        out = await self._run("enqueue", payload)
        if out["result"] in ("created", "merged"):
            state = State(out["state"])
            due_at = float(out["next_at"]) if state is State.SCHEDULED else None
            self._changed(QueueChange(out["id"], out["result"], state, due_at=due_at))
        return EnqueueResult(result=out["result"], id=out.get("id", ""))

    async def add_self_served(
        self,
        *,
        call_id: str,
        number: str,
        category: str,
        reason: str,
        ended_at: float,
    ) -> str:
        """Count a call the IVR served itself (no callback): ``counted`` or ``duplicate``
        (the same call reported again by a replay, a resync or a second dialer)."""
        if number and not is_e164(number):
            raise QueueInputError(f"not an E.164 number: {number!r}")
        out = await self._run(
            "selfserved",
            {
                "call_id": call_id,
                "number": number,
                "category": category,
                "reason": reason,
                "at": ended_at,
                "day": self.hours.day_key(ended_at),
                "hour": self.hours.hour(ended_at),
                "actor": "pbx",
            },
        )
        return str(out["result"])

    def trunk_for(self, number: str) -> str:
        for trunk in self.config.dispatch.trunks:
            if any(fnmatch.fnmatchcase(number, p) for p in trunk.numbers):
                return trunk.name
        return self.config.dispatch.trunks[0].name

    # ------------------------------------------------------------------ claiming

    async def claim(
        self,
        categories: list[str] | tuple[str, ...],
        *,
        claimer: str,
        agent: str = "",
        lease: float | None = None,
        trunks: list[str] | None = None,
        exclude_numbers: list[str] | tuple[str, ...] = (),
        held: list[str] | tuple[str, ...] = (),
        below: float | None = None,
    ) -> Claim | HeldBack | None:
        """Atomically take the best ready callback in ``categories`` (None when there is none).

        ``trunks``: only callbacks over these trunks (None: any). ``exclude_numbers``: skip these
        numbers (customers on a call with us right now). ``held``: ids this claimer is still
        working on, never taken back as expired leases. ``below``: take it only if its score
        is lower, else nothing is claimed and ``HeldBack`` tells the best one's score (a live
        caller goes first: dispatch/turns.py).
        """
        if not categories:
            return None
        token = secrets.token_hex(12)
        out = await self._run(
            "claim",
            {
                "categories": list(categories),
                "token": token,
                "claimer": claimer,
                "agent": agent,
                "lease": lease if lease is not None else self.config.queue.lease_seconds,
                "trunks": trunks,
                "exclude": list(exclude_numbers),
                "held": list(held),
                "scan": 50,
                "below": below,
            },
        )
        if out["result"] == "held":
            return HeldBack(score=float(out["score"]))
        if out["result"] != "claimed":
            return None
        return Claim(callback=Callback.from_redis(out["callback"]), token=token)

    async def renew(
        self,
        claim: Claim,
        *,
        stage: Stage | None = None,
        agent: str = "",
        lease: float | None = None,
    ) -> bool:
        """Extend the lease (and note the stage); False when the claim is no longer ours."""
        out = await self._run(
            "renew",
            {
                "id": claim.callback.id,
                "token": claim.token,
                "lease": lease if lease is not None else self.config.queue.lease_seconds,
                "stage": stage.value if stage else "",
                "agent": agent,
            },
        )
        return out["result"] == "ok"

    async def adopt(
        self,
        adoptions: list[Adoption],
        *,
        claimer: str,
        lease: float | None = None,
        reclaim: bool = True,
    ) -> list[AdoptResult]:
        """Take over the claims of callbacks whose calls are up in Asterisk and followed by no
        attempt of ours, all in one script: each one being dialled (and with ``reclaim`` one
        offered again after its lease ran out) gets a new claim token, held by ``claimer``
        under this dialer's leader lease (``NotLeader`` when that is stale)."""
        if not adoptions:
            return []
        # One script for all: a thousand calls are taken over in one round trip.
        tokens = {a.callback_id: a.token for a in adoptions}
        out = await self._run(
            "adopt",
            {
                "claimer": claimer,
                "lease": lease if lease is not None else self.config.queue.lease_seconds,
                "reclaim": reclaim,
                "items": [
                    {
                        "id": a.callback_id,
                        "token": a.token,
                        "agent": a.agent,
                        "stage": a.stage,
                        # Lua's cjson makes a null truthy: a time left out is "now" there.
                        **({"stage_at": a.stage_at} if a.stage_at is not None else {}),
                    }
                    for a in adoptions
                ],
            },
        )
        results = []
        for item in out.get("items") or []:
            claim = None
            if item.get("callback"):
                cb = Callback.from_redis(item["callback"])
                claim = Claim(callback=cb, token=tokens[cb.id])
            results.append(
                AdoptResult(
                    item["id"],
                    item["result"],
                    claim=claim,
                    state=item.get("state", ""),
                    number=item.get("number", ""),
                )
            )
        return results

    async def _settle(
        self,
        claim: Claim,
        *,
        state: State,
        reason: str,
        attempt: Attempt | None = None,
        next_at: float | None = None,
        agent: str = "",
        event: str | None = None,
        actor: str = "dispatcher",
        recorded: bool = False,
    ) -> Callback | None:
        out = await self._run(
            "settle",
            {
                "recorded": recorded,
                "id": claim.callback.id,
                "token": claim.token,
                "state": state.value,
                "reason": reason,
                "attempt": attempt.to_json() if attempt else None,
                "next_at": next_at,
                "agent": agent,
                "event": event or state.value,
                "actor": actor,
            },
        )
        if out["result"] != "ok":
            return None
        cb = Callback.from_redis(out["callback"])
        self._changed_to(cb, event or state.value, previous_state=State.DIALING)
        return cb

    async def complete(
        self, claim: Claim, attempt: Attempt, *, recorded: bool = False
    ) -> Callback | None:
        """The customer talked to an agent: done. None when the claim was lost meanwhile.
        ``recorded``: told by the call's fate record (dispatch/fates.py), which may come after
        the lease ran out; it settles that claim still, and no other."""
        return await self._settle(
            claim,
            state=State.DONE,
            reason="called_back",
            attempt=attempt,
            agent=attempt.agent,
            recorded=recorded,
        )

    async def retry(
        self, claim: Claim, attempt: Attempt, *, recorded: bool = False
    ) -> Callback | None:
        """A customer attempt that did not get through: the next attempt per the retry policy
        (first calling-hours moment after the delay), or failed after the last attempt."""
        made = claim.callback.attempts + (1 if attempt.counted else 0)
        retry = self.config.retry
        if made >= retry.max_attempts:
            return await self._settle(
                claim,
                state=State.FAILED,
                reason=attempt.outcome,
                attempt=attempt,
                agent=attempt.agent,
                recorded=recorded,
            )
        due = self.clock.now() + retry.delay_after(made)
        opening = self.hours.next_open(due)
        if opening is None:
            return await self._settle(
                claim,
                state=State.FAILED,
                reason="no_calling_hours",
                attempt=attempt,
                agent=attempt.agent,
                recorded=recorded,
            )
        return await self._settle(
            claim,
            state=State.SCHEDULED,
            reason=attempt.outcome,
            attempt=attempt,
            next_at=opening,
            agent=attempt.agent,
            event="retry",
            recorded=recorded,
        )

    async def release(
        self,
        claim: Claim,
        reason: str,
        *,
        attempt: Attempt | None = None,
        not_before: float | None = None,
    ) -> Callback | None:
        """Give the callback back without using a customer attempt (agent did not answer,
        agent grabbed by a queue call, originate failed): ready at once, or at ``not_before``."""
        if attempt is not None and attempt.counted:
            raise ValueError("a release never uses a customer attempt")
        if not_before is not None and not_before > self.clock.now():
            return await self._settle(
                claim,
                state=State.SCHEDULED,
                reason=reason,
                attempt=attempt,
                next_at=not_before,
                event="released",
            )
        return await self._settle(
            claim, state=State.PENDING, reason=reason, attempt=attempt, event="released"
        )

    async def fail(
        self, claim: Claim, reason: str, attempt: Attempt | None = None
    ) -> Callback | None:
        return await self._settle(claim, state=State.FAILED, reason=reason, attempt=attempt)

    # ------------------------------------------------------------------ outside facts

    async def resolve_number(
        self,
        number: str,
        reason: str = "served_inbound",
        *,
        call_id: str = "",
        at: float | None = None,
    ) -> ResolveResult:
        """This number got through to a person: its open callback, if any, is done.

        ``call_id``: the same call told twice (live, then from its AstDB record) closes once.
        ``at``: when they got through; a callback missed again after that stays open."""
        if reason not in ("served_inbound", "served_outbound"):
            raise QueueInputError(f"unknown resolve reason {reason!r}")
        if not is_e164(number):
            raise QueueInputError(f"not an E.164 number: {number!r}")
        out = await self._run(
            "resolve",
            {"number": number, "reason": reason, "actor": "pbx", "call_id": call_id, "at": at},
        )
        if out["result"] != "closed":
            return ResolveResult(closed=False)
        self._changed(
            QueueChange(out["id"], reason, State.DONE, previous_state=State(out["previous_state"]))
        )
        return ResolveResult(closed=True, id=out["id"], previous_state=out["previous_state"])

    # ------------------------------------------------------------------ supervisor actions

    async def _manual(self, payload: dict[str, Any], event: str) -> ActionResult:
        out = await self._run("manual", payload)
        cb = Callback.from_redis(out["callback"]) if out.get("callback") else None
        if out["result"] == "ok" and cb is not None:
            previous = out.get("previous_state")
            self._changed_to(cb, event, State(previous) if previous else None)
        return ActionResult(
            ok=out["result"] == "ok",
            result=out["result"],
            callback=cb,
            previous_state=out.get("previous_state", ""),
        )

    async def cancel(self, callback_id: str, reason: str, actor: str) -> ActionResult:
        if not reason.strip():
            raise QueueInputError("a reason is required to cancel a callback")
        return await self._manual(
            {"op": "cancel", "id": callback_id, "reason": reason.strip()[:200], "actor": actor},
            "cancelled",
        )

    async def set_category(self, callback_id: str, category: str, actor: str) -> ActionResult:
        self._check_category(category)
        return await self._manual(
            {
                "op": "category",
                "id": callback_id,
                "category": category,
                "weights": self._weights,
                "actor": actor,
            },
            "category_changed",
        )

    async def call_now(self, callback_id: str, actor: str) -> ActionResult:
        return await self._manual({"op": "call_now", "id": callback_id, "actor": actor}, "call_now")

    async def schedule(
        self, callback_id: str, due_at: float, actor: str, reason: str = ""
    ) -> ActionResult:
        return await self._manual(
            {
                "op": "schedule",
                "id": callback_id,
                "due_at": due_at,
                "actor": actor,
                "reason": reason,
            },
            "scheduled",
        )

    async def add_manual(
        self, number: str, category: str, actor: str, name: str = "", note: str = ""
    ) -> EnqueueResult:
        return await self.add_missed(
            number=number,
            category=category,
            source=Source.MANUAL,
            missed_at=self.clock.now(),
            name=name,
            actor=actor,
            note=note[:500],
        )

    # ------------------------------------------------------------------ upkeep

    async def housekeeping(
        self, held: list[str] | tuple[str, ...] = (), limit: int = 500
    ) -> dict[str, Any]:
        """Promote due callbacks, recover lost leases, fail expired ones, trim old records."""
        now = self.clock.now()
        return await self._run(
            "housekeeping",
            {
                "expire_before": now - self.config.retry.expire_after,
                "limit": limit,
                "held": list(held),
                "now": now,
            },
        )

    # ------------------------------------------------------------------ outages

    async def declare_outage(
        self,
        *,
        outage_id: str,
        categories: list[str] | tuple[str, ...],
        prefixes: list[str] | tuple[str, ...] = (),
        areas: list[str] | tuple[str, ...] = (),
        message: str = "",
        expected_end: float | None = None,
        actor: str = "system",
    ) -> tuple[bool, Outage]:
        """Declare an outage (idempotent by id: the same UserEvent seen by two dialers, an
        API call sent twice). Returns (newly declared, the outage as stored)."""
        if not categories:
            raise QueueInputError("an outage needs at least one category")
        for category in categories:
            self._check_category(category)
        for prefix in prefixes:
            if not prefix.startswith("+") or not prefix[1:].isdigit() or len(prefix) > 16:
                raise QueueInputError(f"not a number prefix like +7495123: {prefix!r}")
        out = await self._run(
            "outage",
            {
                "op": "declare",
                "id": outage_id,
                "categories": list(dict.fromkeys(categories)),
                "prefixes": list(dict.fromkeys(prefixes)),
                "areas": list(dict.fromkeys(areas)),
                "message": message,
                "expected_end": "" if expected_end is None else f"{expected_end:.3f}",
                "actor": actor,
            },
        )
        return out["result"] == "declared", Outage.from_redis(out["outage"])

    async def end_outage(
        self, outage_id: str, choice: OutageEnd, *, per_hour: int = 0, actor: str = "system"
    ) -> tuple[str, Outage | None]:
        """End an active outage: from now on new calls are dialled; its held callbacks are
        then dropped or released by ``settle_outage`` batches. ``ok``, ``not_found`` or
        ``not_active``."""
        out = await self._run(
            "outage",
            {
                "op": "end",
                "id": outage_id,
                "choice": OutageEnd(choice).value,
                "per_hour": max(0, int(per_hour)),
                "actor": actor,
            },
        )
        outage = Outage.from_redis(out["outage"]) if out.get("outage") else None
        return out["result"], outage

    async def settle_outage(self, outage_id: str, *, batch: int = 200) -> int:
        """One batch of an ending outage's held callbacks dropped or released (in priority
        order, due times spaced by its ``release_per_hour`` within calling hours). Returns how
        many are left (0: settled). Safe to repeat and to resume after a restart."""
        outage = await self.outage(outage_id)
        if outage is None or outage.state is not OutageState.ENDING:
            return 0
        if outage.end_choice == OutageEnd.DROP:
            out = await self._run(
                "outage", {"op": "drop", "id": outage_id, "limit": batch, "actor": "system"}
            )
            event = "outage_dropped"
        else:
            rows = await self._call(self.redis.zrange(self.keys.held(outage_id), 0, batch - 1))
            ids = [r.decode() if isinstance(r, bytes) else r for r in rows]
            start = outage.ended_at or self.clock.now()
            spacing = 3600.0 / outage.release_per_hour if outage.release_per_hour else 0.0
            items = []
            for k, callback_id in enumerate(ids):
                slot = max(self.clock.now(), start + (outage.released + k) * spacing)
                opening = self.hours.next_open(slot)
                items.append({"id": callback_id, "due": opening if opening else slot})
            out = await self._run(
                "outage", {"op": "release", "id": outage_id, "items": items, "actor": "system"}
            )
            event = "outage_released"
        if out["result"] != "ok":
            return 0
        settled = out.get("settled") or []
        if isinstance(settled, list) and settled:
            # The dispatcher learns of each (a due time to wake for; a closed one to forget).
            for cb in await self.get_many(settled):
                self._changed_to(cb, event, previous_state=State.HELD)
        return int(out.get("left", 0))

    async def outage(self, outage_id: str) -> Outage | None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.outage(outage_id))
        pipe.zcard(self.keys.held(outage_id))
        raw, waiting = await self._call(pipe.execute())
        if not raw:
            return None
        return Outage.from_redis(_decode(raw), int(waiting))

    async def outages(self, limit: int = 20) -> list[Outage]:
        """Active and ending outages first, then the most recent ones."""
        rows = await self._call(self.redis.zrevrange(self.keys.outages(), 0, limit - 1))
        ids = [r.decode() if isinstance(r, bytes) else r for r in rows]
        pipe = self.redis.pipeline(transaction=False)
        for outage_id in ids:
            pipe.hgetall(self.keys.outage(outage_id))
            pipe.zcard(self.keys.held(outage_id))
        raw = await self._call(pipe.execute()) if ids else []
        found = [
            Outage.from_redis(_decode(raw[i]), int(raw[i + 1]))
            for i in range(0, len(raw), 2)
            if raw[i]
        ]
        order = {OutageState.ACTIVE: 0, OutageState.ENDING: 1, OutageState.ENDED: 2}
        return sorted(found, key=lambda o: (order[o.state], -o.declared_at))

    async def active_outages(self) -> list[Outage]:
        rows = await self._call(self.redis.zrange(self.keys.outages_active(), 0, -1))
        found = [await self.outage(r.decode() if isinstance(r, bytes) else r) for r in rows]
        return [o for o in found if o is not None and o.active]

    async def held_callbacks(self, outage_id: str, limit: int = 200) -> list[Callback]:
        rows = await self._call(self.redis.zrange(self.keys.held(outage_id), 0, limit - 1))
        return await self.get_many([r.decode() if isinstance(r, bytes) else r for r in rows])

    # ------------------------------------------------------------------ dispatch control

    async def load_control(self) -> DispatchControl | None:
        """The dispatching switch as last saved; None when it never was (the config decides)."""
        raw = _decode(await self._call(self.redis.hgetall(self.keys.control())))
        if "paused" not in raw:
            return None
        return DispatchControl(
            paused=raw["paused"] == "1",
            by=raw.get("by", ""),
            reason=raw.get("reason", ""),
            alarm=raw.get("alarm", ""),
            at=float(raw["at"]) if raw.get("at") else None,
        )

    async def save_control(self, control: DispatchControl) -> None:
        """Save the dispatching switch, stamped with the time now."""
        await self._call(
            self.redis.hset(
                self.keys.control(),
                mapping={
                    "paused": "1" if control.paused else "0",
                    "by": control.by,
                    "reason": control.reason,
                    "alarm": control.alarm,
                    "at": f"{self.clock.now():.3f}",
                },
            )
        )

    # ------------------------------------------------------------------ reading

    async def next_due_after(self, after: float) -> float | None:
        """When the first callback scheduled for later than ``after`` falls due (None: no
        callback is). One already due does not count: the next claim promotes it."""
        rows = await self._call(
            self.redis.zrangebyscore(
                self.keys.scheduled(), f"({after!r}", "+inf", start=0, num=1, withscores=True
            )
        )
        return float(rows[0][1]) if rows else None

    async def get(self, callback_id: str) -> Callback | None:
        raw = await self._call(self.redis.hgetall(self.keys.callback(callback_id)))
        if not raw:
            return None
        return Callback.from_redis(_decode(raw))

    async def get_many(self, ids: list[str]) -> list[Callback]:
        if not ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for callback_id in ids:
            pipe.hgetall(self.keys.callback(callback_id))
        rows = await self._call(pipe.execute())
        return [Callback.from_redis(_decode(r)) for r in rows if r]

    async def open_for(self, number: str) -> Callback | None:
        callback_id = await self._call(self.redis.hget(self.keys.open(), number))
        if not callback_id:
            return None
        cb = await self.get(callback_id.decode() if isinstance(callback_id, bytes) else callback_id)
        return cb if cb and cb.state.is_open else None

    async def for_number(self, number: str, limit: int = 100) -> list[Callback]:
        """The callbacks of ``number`` (E.164), open and finished, newest first."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrevrange(self.keys.number(number), 0, limit - 1)
        pipe.hget(self.keys.open(), number)  # one made before numbers were indexed
        ids, open_id = await self._call(pipe.execute())
        found = [i.decode() if isinstance(i, bytes) else i for i in ids]
        if open_id:
            open_id = open_id.decode() if isinstance(open_id, bytes) else open_id
            if open_id not in found:
                found.append(open_id)
        callbacks = await self.get_many(found)
        return sorted(callbacks, key=lambda cb: cb.created_at, reverse=True)[:limit]

    async def history(self, callback_id: str) -> list[HistoryEntry]:
        rows = await self._call(self.redis.xrange(self.keys.history(callback_id)))
        out = []
        for _, fields in rows:
            f = _decode(fields)
            out.append(
                HistoryEntry(
                    at=float(f["at"]),
                    event=f["event"],
                    state=f["state"],
                    reason=f.get("reason", ""),
                    actor=f.get("actor", ""),
                    detail=json.loads(f["detail"]) if f.get("detail") else {},
                )
            )
        return out

    async def waiting(
        self, limit: int = 200, categories: list[str] | None = None
    ) -> list[Callback]:
        """Open callbacks not in progress, in the order they will be taken: ready ones by
        priority, then scheduled ones by due time."""
        cats = categories or list(self._weights)
        pipe = self.redis.pipeline(transaction=False)
        for category in cats:
            pipe.zrange(self.keys.ready(category), 0, limit - 1, withscores=True)
        pipe.zrange(self.keys.scheduled(), 0, limit - 1, withscores=True)
        rows = await self._call(pipe.execute())
        ready: list[tuple[float, str]] = []
        for row in rows[:-1]:
            ready.extend((score, m.decode() if isinstance(m, bytes) else m) for m, score in row)
        ready.sort()
        ids = [i for _, i in ready[:limit]]
        if len(ids) < limit:
            ids += [
                m.decode() if isinstance(m, bytes) else m for m, _ in rows[-1][: limit - len(ids)]
            ]
        callbacks = await self.get_many(ids)
        if categories:
            callbacks = [c for c in callbacks if c.category in categories]
        return callbacks

    async def waiting_index(self, limit: int = 1000) -> list[WaitingEntry]:
        """The waiting callbacks as the estimate needs them (id, category, score, due time),
        read from the indexes: the ready sets carry category and score, and a scheduled one
        needs only two fields of its record. The estimate reads this after queue changes, so
        whole records (``waiting``) would cost the loop tens of milliseconds each time at
        thousands waiting, time that a free agent's Originate then waits behind."""
        cats = list(self._weights)
        pipe = self.redis.pipeline(transaction=False)
        for category in cats:
            pipe.zrange(self.keys.ready(category), 0, limit - 1, withscores=True)
        pipe.zrange(self.keys.scheduled(), 0, limit - 1, withscores=True)
        rows = await self._call(pipe.execute())
        out: list[WaitingEntry] = []
        for category, row in zip(cats, rows[:-1], strict=True):
            out.extend(WaitingEntry(_text(m), category, float(score), None) for m, score in row)
        scheduled = [(_text(m), float(due)) for m, due in rows[-1]]
        if scheduled:
            pipe = self.redis.pipeline(transaction=False)
            for callback_id, _ in scheduled:
                pipe.hmget(self.keys.callback(callback_id), "category", "score")
            fields = await self._call(pipe.execute())
            for (callback_id, due), (category, score) in zip(scheduled, fields, strict=True):
                if category is not None and score is not None:
                    out.append(WaitingEntry(callback_id, _text(category), float(score), due))
        return out

    async def in_progress(self) -> list[Callback]:
        ids = await self._call(self.redis.zrange(self.keys.leases(), 0, -1))
        return await self.get_many([i.decode() if isinstance(i, bytes) else i for i in ids])

    async def finished_between(
        self, since: float, until: float, limit: int = 10_000
    ) -> list[Callback]:
        ids = await self._call(
            self.redis.zrangebyscore(self.keys.finished(), since, until, start=0, num=limit)
        )
        return await self.get_many([i.decode() if isinstance(i, bytes) else i for i in ids])

    async def day_callbacks(self, day: str) -> list[Callback]:
        """Callbacks whose first missed call was on ``day`` (YYYY-MM-DD, PBX time zone)."""
        ids = await self._call(self.redis.zrange(self.keys.day(day), 0, -1))
        return await self.get_many([i.decode() if isinstance(i, bytes) else i for i in ids])

    async def counts(self) -> dict[str, dict[str, int]]:
        """How many callbacks are in each state, by category."""
        raw = _decode(await self._call(self.redis.hgetall(self.keys.counts())))
        out: dict[str, dict[str, int]] = {s.value: {} for s in State}
        for key, value in raw.items():
            state, _, category = key.partition(":")
            if int(value) and state in out:
                out[state][category] = int(value)
        return out

    async def oldest_waiting_since(self) -> float | None:
        """First missed time of the oldest open callback (None when none is open)."""
        rows = await self._call(self.redis.zrange(self.keys.age(), 0, 0, withscores=True))
        return float(rows[0][1]) if rows else None

    async def day_stats(self, day: str) -> dict[str, int]:
        raw = _decode(await self._call(self.redis.hgetall(self.keys.stats(day))))
        return {k: int(v) for k, v in raw.items()}

    async def time_to_callback(self, day: str) -> list[float]:
        """Seconds from the first missed call to our first call to the customer, for every
        callback first missed on ``day``."""
        rows = await self._call(self.redis.zrange(self.keys.ttc(day), 0, -1, withscores=True))
        return [float(score) for _, score in rows]

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (RedisError, OSError):
            return False
