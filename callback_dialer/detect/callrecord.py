"""One inbound call's end as the dialplan's hangup handler wrote it in AstDB.

The shipped dialplan (ivr/dialplan.py, ``[callback-record-call]``) writes one entry per inbound
call, ``<family>/calls/<uniqueid>``, whose value is ``name=value`` pairs in the codec of
ami/asterisk.py (``encode_record``). The fields, and the dialplan value each one is:

    v        record version ("1")
    num      ${CALLERID(num)}            the caller's number as Asterisk had it
    name     ${CALLERID(name)}
    cat      ${CALLBACK_CATEGORY}        the IVR's choice
    start    ${CALLBACK_START}           when the call entered our dialplan (s.ms)
    end      ${STRFTIME(,,%s.%3q)}       in the hangup handler: when it ended
    answered ${ANSWEREDTIME_MS}          Queue()/Dial(): ms connected to whoever answered
    agent    ${MEMBERINTERFACE}          the queue member who answered (setinterfacevar)
    peer     ${DIALEDPEERNAME}           or the channel Dial() reached
    queue    ${CALLBACK_QUEUE}           the queue our dialplan sent the caller to
    status   ${QUEUESTATUS}              how Queue() let the caller go (TIMEOUT, ...)
    abandoned ${ABANDONED}               TRUE: hung up while waiting in the queue
    req      ${CALLBACK_REQUEST}         the callback request raised (KEYPRESS, TIMEOUT)
    skip     ${CALLBACK_SKIP}            the IVR served the caller itself (self-service)

Parsing is strict about what decides a callback (the end time) and lenient about the rest: a
record a hand-edited dialplan spoils is reported unreadable (and deleted), never a traceback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..ami.asterisk import decode_record


class RecordError(ValueError):
    """A record that cannot be read (the message says which field)."""


@dataclass(frozen=True, slots=True)
class CallRecord:
    call_id: str  # the key: the inbound channel's Uniqueid (its Linkedid)
    number: str  # raw caller ID number, validated later like a live one
    name: str
    category: str
    started_at: float
    ended_at: float
    answered_ms: int
    agent: str
    queue: str
    status: str
    abandoned: bool
    request: str
    skip: str = ""

    @property
    def answered(self) -> bool:
        """Somebody answered the caller (a queue member, or whom Dial() reached)."""
        return self.answered_ms > 0 or bool(self.agent)

    @property
    def answered_at(self) -> float:
        return self.ended_at - self.answered_ms / 1000.0


def _time(fields: dict[str, str], name: str) -> float | None:
    text = fields.get(name, "")
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise RecordError(f"{name} is not a time: {text[:40]!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise RecordError(f"{name} is not a time: {text[:40]!r}")
    return value


def _uniqueid_time(call_id: str) -> float | None:
    """A Uniqueid is ``[systemname-]<epoch>.<sequence>``: the second the channel was made."""
    head = call_id.rsplit("-", 1)[-1].split(".", 1)[0]
    return float(head) if head.isdigit() else None


def parse_call_record(call_id: str, value: str) -> CallRecord:
    fields = decode_record(value)
    if fields.get("v") != "1":
        raise RecordError(f"unknown record version {fields.get('v', '')[:10]!r}")
    ended = _time(fields, "end")
    if ended is None:
        raise RecordError("no end time")
    started = _time(fields, "start") or _uniqueid_time(call_id) or ended
    answered_text = fields.get("answered", "") or "0"
    try:
        answered = max(0, int(float(answered_text)))
    except ValueError:
        raise RecordError(f"answered is not a number: {answered_text[:20]!r}") from None
    return CallRecord(
        call_id=call_id,
        number=fields.get("num", ""),
        name=fields.get("name", ""),
        category=fields.get("cat", ""),
        started_at=min(started, ended),
        ended_at=ended,
        answered_ms=answered,
        agent=fields.get("agent", "") or (fields.get("peer", "") if answered else ""),
        queue=fields.get("queue", ""),
        status=fields.get("status", ""),
        abandoned=fields.get("abandoned", "") == "TRUE",
        request=fields.get("req", ""),
        skip=fields.get("skip", ""),
    )
