"""Webhooks: a signed JSON POST per callback event to every configured receiver, in order.

Delivery. The jobs bridge appends each event's document to the receiver's outbox, a Redis list
(``Keys.webhook_outbox(receiver)``), in the same transaction that advances its cursor over the
events stream. One rq job per receiver (``deliver_webhooks``) sends the outbox head first and
removes an entry only after a 2xx answer, so:

- nothing is lost while a receiver is down: the outbox keeps every event until it is taken;
- every receiver sees events in the order the queue recorded them (a total order, so in order
  per callback too); a later event never overtakes an earlier one;
- delivery is at least once: a receiver that took an event but did not answer in time gets it
  again. The document's ``id`` (also the ``X-Callback-Dialer-Delivery`` header) is the same on
  every try; receivers drop repeats by it.

A receiver that does not answer, times out, or answers 5xx, 408, 425 or 429 is tried again by
rq's Retry (``[jobs] max_tries``, ``retry_delays``). A refusal (another 3xx or 4xx) would
refuse the same document forever, so that one document is parked in the receiver's dead-letter
list (``Keys.webhook_dead``) and delivery goes on; ``jobs.admin`` lists and re-runs parked ones.

Signature. With a ``secret``, every request carries
``X-Callback-Dialer-Signature: t=<unix seconds>,v1=<hex>`` where ``hex`` is
HMAC-SHA256(secret, ``"<t>." + body``), ``body`` the raw request bytes. ``t`` is the time of
sending (a retry is signed anew), so a receiver can refuse old or replayed requests.
``verify_signature`` below is the reference check.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any

import redis
from redis.exceptions import WatchError
from rq import Queue, get_current_job
from rq.job import Job

from ..config import Config, WebhookConfig
from ..logs import get_logger
from ..queue.keys import Keys
from ..queue.models import Callback
from .common import (
    HttpOutcome,
    display_url,
    http_send,
    resolve_secret,
    retry_policy,
    rq_queue,
    webhooks_by_receiver,
    worker_config,
)

SIGNATURE_HEADER = "X-Callback-Dialer-Signature"
EVENT_HEADER = "X-Callback-Dialer-Event"
DELIVERY_HEADER = "X-Callback-Dialer-Delivery"
# One job drains a whole outbox; after a long outage that may be thousands of requests.
DELIVERY_JOB_TIMEOUT = 3600
LIVE_STATUSES = {b"queued", b"started", b"scheduled", b"deferred"}

# Queue events that become webhooks, and under which name. ``claimed`` marks the moment the
# dialer commits to calling a callback (its state becomes "dialing"), once per try: a try the
# agent did not pick up is given back and claimed again, so a receiver may see several.
_WEBHOOK_NAMES = {
    "created": "created",
    "merged": "merged",
    "claimed": "dialing",
    "done": "done",
    "failed": "failed",
    "cancelled": "cancelled",
    "served_inbound": "served_inbound",
    "served_outbound": "served_outbound",
    "held": "held",
    "outage_released": "outage_released",
    "outage_dropped": "outage_dropped",
    "outage_declared": "outage_declared",
    "outage_ended": "outage_ended",
}

log = get_logger("callback_dialer.jobs.webhooks")


def webhook_event(event: str) -> str | None:
    """The webhook name for a queue event, or None when receivers are not told of it."""
    return _WEBHOOK_NAMES.get(event)


def wants(hook: WebhookConfig, name: str) -> bool:
    return not hook.events or name in hook.events


def build_document(
    entry_id: str,
    name: str,
    fields: Mapping[str, str],
    callback: Callback | None,
    *,
    installation: str,
    tz: dt.tzinfo,
) -> dict[str, Any]:
    """The JSON document for one event. Top-level facts are the event's own; ``callback`` is
    the whole record as it was when the bridge handed the event over (it may already show
    later changes)."""
    at = float(fields.get("at") or 0)
    detail = fields.get("detail") or ""
    details = json.loads(detail) if detail else {}
    # Declared/ended are about the outage itself: its id is in "outage_id", no callback.
    outage_level = name in ("outage_declared", "outage_ended")
    return {
        "id": entry_id,
        "event": name,
        "at": at,
        "at_local": dt.datetime.fromtimestamp(at, tz).isoformat(timespec="seconds"),
        "installation": installation,
        "callback_id": "" if outage_level else fields.get("id", ""),
        "outage_id": fields.get("id", "") if outage_level else str(details.get("outage", "")),
        "state": fields.get("state", ""),
        "reason": fields.get("reason", ""),
        "actor": fields.get("actor", ""),
        "category": fields.get("category", ""),
        "number": fields.get("number", ""),
        "caller_id": fields.get("caller_id", ""),
        "detail": details,
        "callback": callback.to_public() if callback is not None else None,
    }


def encode_document(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str, header: str, body: bytes, *, tolerance: float = 300.0, now: float | None = None
) -> bool:
    """A receiver's check: the header matches the raw body and is at most ``tolerance`` old."""
    parts = dict(p.strip().split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).rpartition("v1=")[2]
    return hmac.compare_digest(expected, parts.get("v1", ""))


# --------------------------------------------------------------------------- Redis side

# Take the head only if it is still the entry we sent (a re-run may have moved things).
_POP_IF_HEAD = """
if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then redis.call('LPOP', KEYS[1]) return 1 end
return 0
"""
_PARK_HEAD = """
if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then
  redis.call('LPOP', KEYS[1])
  redis.call('RPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0
"""
# Done only when the outbox is empty at this instant; giving up the job key in the same step
# makes a bridge that is adding an event (it WATCHes that key) see the change and start a job.
_FINISH = """
if redis.call('LLEN', KEYS[1]) > 0 then return 0 end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"""
_FORGET_JOB = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""
_RENEW_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# Parked entries go back to the head of the outbox in their original order: they were due
# before anything still waiting there.
_RERUN_DEAD = """
local parked = redis.call('LRANGE', KEYS[2], 0, -1)
for i = #parked, 1, -1 do
  redis.call('LPUSH', KEYS[1], cjson.decode(parked[i]).body)
end
redis.call('DEL', KEYS[2])
return #parked
"""


def delivery_is_live(client: Any, keys: Keys, receiver: str) -> bool:
    """Whether an rq job is queued, scheduled or running for this receiver's outbox."""
    job_id = client.get(keys.webhook_job(receiver))
    if not job_id:
        return False
    return client.hget(Job.key_for(job_id.decode()), "status") in LIVE_STATUSES


def enqueue_delivery(queue: Queue, pipe: Any, config: Config, receiver: str, url: str) -> None:
    """Queue a delivery job inside ``pipe`` (a MULTI) and name it the receiver's live job."""
    job = queue.enqueue_call(
        "callback_dialer.jobs.webhooks.deliver_webhooks",
        args=(receiver,),
        timeout=DELIVERY_JOB_TIMEOUT,
        retry=retry_policy(config.jobs),
        description=f"deliver webhooks to {display_url(url)}",
        pipeline=pipe,
    )
    pipe.set(Keys(config.redis.key_prefix).webhook_job(receiver), job.id)


def ensure_delivery(
    conn: redis.Redis, config: Config, receivers: Iterable[str] | None = None
) -> list[str]:
    """Start a delivery job for every receiver with waiting events and none live; returns
    the receivers started. Safe to call any time (the bridge does at start, admin after a
    re-run)."""
    keys = Keys(config.redis.key_prefix)
    hooks = webhooks_by_receiver(config)
    wanted = [r for r in (receivers if receivers is not None else hooks) if r in hooks]
    if not wanted:
        return []
    queue = rq_queue(config, conn)
    with conn.pipeline() as pipe:
        while True:
            try:
                pipe.watch(*(keys.webhook_job(r) for r in wanted))
                start = [
                    r
                    for r in wanted
                    if pipe.llen(keys.webhook_outbox(r)) and not delivery_is_live(pipe, keys, r)
                ]
                if not start:
                    pipe.reset()
                    return []
                pipe.multi()
                for r in start:
                    enqueue_delivery(queue, pipe, config, r, hooks[r].url)
                pipe.execute()
                return start
            except WatchError:
                continue


def rerun_dead(conn: redis.Redis, config: Config, receiver: str) -> int:
    """Put a receiver's parked events back at the head of its outbox and deliver them."""
    keys = Keys(config.redis.key_prefix)
    moved = int(
        conn.register_script(_RERUN_DEAD)(
            keys=[keys.webhook_outbox(receiver), keys.webhook_dead(receiver)]
        )
    )
    if moved:
        ensure_delivery(conn, config, [receiver])
    return moved


# --------------------------------------------------------------------------- the job


class DeliveryFailed(Exception):
    """The receiver did not take an event; rq tries the whole outbox again later."""


class UnknownReceiver(Exception):
    """The worker's config has no webhook for this receiver (its URL changed or was removed)."""


def _send(hook: WebhookConfig, secret: str, body: bytes) -> HttpOutcome:
    doc = json.loads(body)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        EVENT_HEADER: str(doc.get("event", "")),
        DELIVERY_HEADER: str(doc.get("id", "")),
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body, int(time.time()))
    return http_send("POST", hook.url, body, headers, hook.timeout)


def deliver_webhooks(receiver: str) -> dict[str, Any]:
    """rq job: send this receiver's outbox, head first, until it is empty."""
    config = worker_config()
    job = get_current_job()
    if job is None:
        raise RuntimeError("deliver_webhooks runs as an rq job")
    conn = job.connection
    keys = Keys(config.redis.key_prefix)
    hook = webhooks_by_receiver(config).get(receiver)
    if hook is None:
        raise UnknownReceiver(
            f"no [[webhooks]] entry for receiver {receiver} in the worker's config "
            "(URL changed or removed?); its waiting events stay in Redis"
        )
    secret = resolve_secret(hook.secret, "webhooks.secret")
    bound = log.bind(receiver=receiver, url=display_url(hook.url), job=job.id)
    outbox, dead = keys.webhook_outbox(receiver), keys.webhook_dead(receiver)
    lock_key, lock_ms = keys.webhook_lock(receiver), int((hook.timeout + 60) * 1000)
    token = f"{job.id}:{secrets.token_hex(4)}"
    if not conn.set(lock_key, token, nx=True, px=lock_ms):
        # Another worker is delivering this outbox and empties it before it stops.
        bound.info("webhooks_already_being_delivered")
        return {"result": "busy", "delivered": 0, "parked": 0}
    pop_if_head = conn.register_script(_POP_IF_HEAD)
    park_head = conn.register_script(_PARK_HEAD)
    finish = conn.register_script(_FINISH)
    renew = conn.register_script(_RENEW_LOCK)
    delivered = parked = 0
    try:
        while True:
            head = conn.lindex(outbox, 0)
            if head is None:
                if finish(keys=[outbox, keys.webhook_job(receiver)], args=[job.id]):
                    break
                continue
            outcome = _send(hook, secret, head)
            if outcome.ok:
                pop_if_head(keys=[outbox], args=[head])
                delivered += 1
            elif outcome.refused:
                entry = json.dumps(
                    {
                        "body": head.decode("utf-8"),
                        "status": outcome.status,
                        "error": outcome.detail,
                        "parked_at": time.time(),
                    },
                    ensure_ascii=False,
                )
                park_head(keys=[outbox, dead], args=[head, entry])
                parked += 1
                bound.warning(
                    "webhook_refused_and_parked",
                    status=outcome.status,
                    error=outcome.detail,
                    event_id=json.loads(head).get("id"),
                )
            else:
                raise DeliveryFailed(f"{display_url(hook.url)}: {outcome.detail}")
            renew(keys=[lock_key], args=[token, lock_ms])
    except Exception as exc:
        if not job.retries_left:
            # Last try: let go of the receiver, so its next event starts a fresh job.
            conn.register_script(_FORGET_JOB)(keys=[keys.webhook_job(receiver)], args=[job.id])
        bound.warning(
            "webhook_delivery_failed",
            error=str(exc),
            delivered=delivered,
            waiting=conn.llen(outbox),
            retries_left=job.retries_left or 0,
        )
        raise
    finally:
        conn.register_script(_RELEASE_LOCK)(keys=[lock_key], args=[token])
    bound.info("webhooks_delivered", delivered=delivered, parked=parked)
    return {"result": "ok", "delivered": delivered, "parked": parked}
