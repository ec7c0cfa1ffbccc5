"""SMS through an HTTP gateway: "we missed your call" and, optionally, "we could not reach you";
in outage mode the outage's message to a caller whose callback it holds, and "service is back"
when the outage ends and the held callbacks are dropped.

The jobs bridge decides that a message is due (a missed call, a callback's final failure) and
queues ``send_sms``; the job checks again when it runs, because it may run much later:

- ``[sms] enabled``, and the number is E.164 and not blocked by ``[phone] blocklist``;
- the calling hours are open (judged on the dialer's clock: the event's time plus the real time
  the job waited);
- a missed-call notice only while its callback is still open and before its promise ("in about
  N minutes") has run out; an outage notice only while its callback is still held; a failure
  or "service is back" notice only while the number has no new open callback;
- at most one message per number per ``min_interval``: ``SET sms:<number> NX EX`` claims the
  slot atomically; a retry of the same message recognises its own claim.

Only the E.164 number and texts from the config ever reach the gateway template: a caller's
name or raw caller ID never does.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import time
import urllib.parse
from typing import Any

from rq import get_current_job

from ..config import Config, SmsConfig
from ..hours import CallingHours
from ..logs import get_logger
from ..phone import NumberPolicy, Rejected, is_e164
from ..queue.keys import Keys
from ..queue.models import Callback
from ..queue.store import CallbackQueue
from .common import http_send, resolve_secret, worker_config

MISSED = "missed"
FINAL = "final"
OUTAGE = "outage"  # a held callback: the outage's message
SERVICE_BACK = "service_back"  # a dropped one: the outage is over
_PLACEHOLDER = re.compile(r"{(number|digits|text|text_urlencoded|text_json)}")
_OPEN_STATES = {b"pending", b"scheduled", b"dialing", b"held"}

log = get_logger("callback_dialer.jobs.sms")


class SmsFailed(Exception):
    """The gateway did not take the message; rq tries again later."""


def missed_text(sms: SmsConfig, minutes: int) -> str:
    return sms.missed_text.replace("{minutes}", str(minutes))


def render_request(
    sms: SmsConfig, number: str, text: str
) -> tuple[str, str, bytes | None, dict[str, str]]:
    """Method, URL, body and headers for one message. Values put into the URL are
    percent-encoded ({text_urlencoded} already is); the body gets them as they are."""
    if not is_e164(number):
        raise ValueError(f"not an E.164 number: {number!r}")
    values = {
        "number": number,
        "digits": number[1:],
        "text": text,
        "text_urlencoded": urllib.parse.quote(text, safe=""),
        "text_json": json.dumps(text, ensure_ascii=False),
    }

    def in_url(match: re.Match[str]) -> str:
        name = match.group(1)
        return (
            values[name] if name == "text_urlencoded" else urllib.parse.quote(values[name], safe="")
        )

    url = _PLACEHOLDER.sub(in_url, sms.url)
    headers = {
        name: resolve_secret(value, f"sms.headers.{name}") for name, value in sms.headers.items()
    }
    body: bytes | None = None
    if sms.method != "GET":
        body = _PLACEHOLDER.sub(lambda m: values[m.group(1)], sms.body).encode("utf-8")
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = sms.content_type
    return sms.method, url, body, headers


async def estimate_from_queue(queue: CallbackQueue, callback: Callback, now: float) -> int:
    """Minutes until we call back, without knowing the agents: the median time to callback
    so far today (the web target while there are fewer than 3 samples), or the wait until a
    scheduled callback is due when that is longer; rounded up to 5 minutes."""
    samples = await queue.time_to_callback(queue.hours.day_key(now))
    typical = statistics.median(samples) if len(samples) >= 3 else queue.config.web.target
    due_in = (callback.next_at - now) if callback.next_at and callback.next_at > now else 0.0
    return round_minutes(max(typical, due_in) / 60)


def round_minutes(minutes: float) -> int:
    """Promise round numbers: 5, 10, 15 ... (never less than 5)."""
    return max(5, 5 * math.ceil(minutes / 5))


def _skip(reason: str, **fields: Any) -> dict[str, Any]:
    log.info("sms_skipped", reason=reason, **fields)
    return {"result": reason}


def send_sms(
    *,
    kind: str,
    callback_id: str,
    number: str,
    text: str,
    at: float,
    queued: float,
    token: str,
    minutes: int = 0,
) -> dict[str, Any]:
    """rq job: send one message, if it is still right to send it (see the module doc)."""
    config = worker_config()
    job = get_current_job()
    if job is None:
        raise RuntimeError("send_sms runs as an rq job")
    return _send(
        config,
        job.connection,
        kind=kind,
        callback_id=callback_id,
        number=number,
        text=text,
        at=at,
        queued=queued,
        token=token,
        minutes=minutes,
    )


def _send(
    config: Config,
    conn: Any,
    *,
    kind: str,
    callback_id: str,
    number: str,
    text: str,
    at: float,
    queued: float,
    token: str,
    minutes: int,
) -> dict[str, Any]:
    sms = config.sms
    fields = {"kind": kind, "callback_id": callback_id}
    if not sms.enabled:
        return _skip("disabled", **fields)
    if not is_e164(number):
        # Only our own queue writes numbers, always E.164; anything else is forged or broken.
        log.error("sms_refused_number", reason="not E.164", **fields)
        return {"result": "not_e164"}
    fields["number"] = number
    checked = NumberPolicy(config.phone).normalize(number)
    if isinstance(checked, Rejected) or checked.e164 != number:
        return _skip("blocked", rule=str(getattr(checked, "reason", "changed")), **fields)
    now = at + max(0.0, time.time() - queued)
    if not CallingHours(config.hours).is_open(now):
        return _skip("outside_calling_hours", **fields)
    keys = Keys(config.redis.key_prefix)
    if kind == MISSED:
        state = conn.hget(keys.callback(callback_id), "state")
        if state not in _OPEN_STATES:
            return _skip("callback_closed", state=(state or b"gone").decode(), **fields)
        if minutes and now - at > minutes * 60:
            return _skip("promise_already_past", minutes=minutes, **fields)
    elif kind == OUTAGE:
        state = conn.hget(keys.callback(callback_id), "state")
        if state != b"held":
            return _skip("callback_not_held", state=(state or b"gone").decode(), **fields)
    elif conn.hget(keys.open(), number):
        return _skip("number_has_open_callback", **fields)
    slot = rate_slot(keys, kind, number)
    interval = max(1, math.ceil(sms.min_interval))
    if not conn.set(slot, token, nx=True, ex=interval):
        holder = conn.get(slot)
        if holder is None or holder.decode() != token:
            return _skip("rate_limited", **fields)
        # Our own slot from an earlier try of this very message: go on.
    method, url, body, headers = render_request(sms, number, text)
    outcome = http_send(method, url, body, headers, sms.timeout)
    if outcome.ok:
        log.info("sms_sent", status=outcome.status, **fields)
        return {"result": "sent", "status": outcome.status}
    if outcome.refused:
        # The gateway will refuse this message again; trying for hours cannot help.
        log.error("sms_refused_by_gateway", status=outcome.status, error=outcome.detail, **fields)
        return {"result": "refused", "status": outcome.status}
    raise SmsFailed(f"SMS gateway: {outcome.detail}")


def rate_slot(keys: Keys, kind: str, number: str) -> str:
    """The per-number rate limit key: "service is back" has its own, since the outage notice
    that came before it would otherwise always hold the number's slot."""
    return keys.sms_sent(number + ":back" if kind == SERVICE_BACK else number)


def outage_text(sms: SmsConfig, message: str) -> str:
    return sms.outage_text.replace("{message}", message)


def outage_wanted(config: Config, event: str) -> bool:
    return config.sms.enabled and event == "held"


def service_back_wanted(config: Config, event: str) -> bool:
    return config.sms.enabled and event == "outage_dropped"


def final_failure_wanted(config: Config, event: str) -> bool:
    return config.sms.enabled and config.sms.notify_final_failure and event == "failed"


def missed_wanted(config: Config, event: str, reason: str) -> bool:
    # A callback a supervisor added by hand was no missed call; merged repeats only get one
    # if the first call got none (the per-number limit decides).
    return config.sms.enabled and event in ("created", "merged") and reason != "manual"


def sms_job_kwargs(
    *,
    kind: str,
    callback_id: str,
    number: str,
    text: str,
    at: float,
    token: str,
    minutes: int = 0,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "callback_id": callback_id,
        "number": number,
        "text": text,
        "at": at,
        "queued": time.time(),
        "token": token,
        "minutes": minutes,
    }
