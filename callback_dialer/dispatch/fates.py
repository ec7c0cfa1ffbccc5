"""Asterisk keeps each callback's fate: the dialplan's record, read back and settled.

A callback call that ends while no dialer follows it (killed, restarting, cut off) would
leave its claim to run out, and the customer could be called again though they talked to an
agent. So the shipped dialplan's hangup handler ``callback-record-fate`` writes, where the
customer is dialled, one AstDB entry ``<family>/fates/<callback id>``: the claim the call was
placed under (``CALLBACK_CLAIM``, set on the Originate), the customer's ``DIALSTATUS``, the ms
they were connected (``ANSWEREDTIME_MS``), the channel, the end.

At start, after every reconnect and every ``records.sweep_every``, the leader (only it may
settle: every settle carries its fencing token) reads them all and, for each:

- an attempt of this process still following that claim (a reconnect): the record decides it,
  the attempt stores the outcome as if it had seen the call end;
- otherwise the outcome is stored on that claim, by the same rules as a live call (answered
  at least ``min_talk_seconds``: done; shorter, busy, no answer, ...: the retry policy). The
  claim may still be held (a dialer killed, its lease not yet out) or already have run out:
  the queue then keeps the lapsed claim ("outcome unknown", scheduled after the normal retry
  delay, never redialled before it), and the record still settles it;
- a claim settled already (followed live, or adopted and followed to its end) or replaced by a
  newer one: the record is only compared, a disagreement counted.

Read records are deleted once settled (or found settled); older than ``records.max_age`` or
unreadable, deleted unread. Without any record (an older dialplan) a lapsed claim stays
"outcome unknown" until its retry is due: the page shows it so.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ..ami.astdb import AstDb
from ..ami.asterisk import DialStatus, decode_record
from ..ami.client import AmiError
from ..clock import Clock
from ..config import Config
from ..detect.records import RecordStore
from ..logs import get_logger
from ..metrics import Metrics
from ..queue.models import Attempt as AttemptRecord
from ..queue.models import Claim
from ..queue.store import CallbackQueue, NotLeader, QueueUnavailable
from .attempt import Attempt
from .outcome import Outcome, OutcomeKind, Reason
from .strategies import CUSTOMER_DIAL_OUTCOMES

log = get_logger(__name__)

FATES = "fates"


class FateError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class FateRecord:
    callback_id: str
    claim: str
    dial: str  # the customer's DIALSTATUS
    answered_ms: int
    channel: str
    ended_at: float


def parse_fate(callback_id: str, value: str) -> FateRecord:
    fields = decode_record(value)
    if fields.get("v") != "1":
        raise FateError(f"unknown record version {fields.get('v', '')[:10]!r}")
    claim = fields.get("claim", "")
    if not claim:
        raise FateError("no claim (an Originate without CALLBACK_CLAIM)")
    try:
        ended = float(fields.get("end", ""))
        answered = int(float(fields.get("answered") or 0))
    except ValueError:
        raise FateError("end or answered is not a number") from None
    if not math.isfinite(ended) or ended <= 0:
        raise FateError("no end time")
    return FateRecord(
        callback_id=callback_id,
        claim=claim,
        dial=fields.get("dial", ""),
        answered_ms=max(0, answered),
        channel=fields.get("agent", ""),
        ended_at=ended,
    )


def outcome_of(fate: FateRecord, min_talk: float) -> Outcome:
    """What the customer's leg says, by the rules a live call is judged by."""
    if fate.dial == DialStatus.ANSWER:
        talk = fate.answered_ms / 1000.0
        return (
            Outcome.done(talk=talk) if talk >= min_talk else Outcome.retry(Reason.SHORT_CALL, talk)
        )
    return Outcome.retry(CUSTOMER_DIAL_OUTCOMES.get(fate.dial, Reason.FAILED_DIAL))


class CallbackFates:
    def __init__(
        self,
        config: Config,
        astdb: AstDb,
        queue: CallbackQueue,
        clock: Clock,
        metrics: Metrics,
        *,
        in_flight: Callable[[str], Attempt | None],
        leading: Callable[[], bool],
    ) -> None:
        self.config = config
        self.queue = queue
        self.clock = clock
        self.metrics = metrics
        self.in_flight = in_flight
        self.leading = leading
        self.store = RecordStore(astdb, config.records.family, FATES)
        self.min_talk = config.dispatch.min_talk_seconds
        self.counts: dict[str, int] = {}

    def _count(self, result: str) -> None:
        self.counts[result] = self.counts.get(result, 0) + 1
        self.metrics.records.inc(FATES, result)

    async def catch_up(self, why: str = "reconnect") -> int:
        """One pass; the number of callbacks settled from their records."""
        if not self.leading():
            return 0  # a standby leaves them to the leader
        try:
            entries = await self.store.read()
        except AmiError as exc:
            log.warning("AstDB callback fates not read", why=why, error=str(exc))
            return 0
        settled = 0
        oldest = self.clock.now() - self.config.records.max_age
        for entry in entries:
            try:
                fate = parse_fate(entry.key, entry.value)
            except FateError as exc:
                log.warning("unreadable callback fate deleted", key=entry.key, error=str(exc))
                self._count("unreadable")
                await self._delete(entry.key)
                continue
            if fate.ended_at < oldest:
                self._count("purged")
                await self._delete(entry.key)
                continue
            try:
                result = await self._settle(fate)
            except NotLeader:
                log.info("not the leader any more: callback fates left to the new one")
                break
            except QueueUnavailable as exc:
                log.warning("Redis unavailable; callback fates kept", error=str(exc))
                break
            self._count(result)
            if result == "applied":
                settled += 1
            if result != "in_flight":
                await self._delete(entry.key)
        if entries:
            log.info("AstDB callback fates read", why=why, read=len(entries), settled=settled)
        return settled

    async def _settle(self, fate: FateRecord) -> str:
        outcome = outcome_of(fate, self.min_talk)
        attempt = self.in_flight(fate.callback_id)
        if attempt is not None and attempt.claim.token == fate.claim:
            # Ours, and we lost sight of it (a reconnect): the record is its end. The record
            # stays until the attempt has stored the outcome (the next pass finds it settled).
            if not attempt.decided:
                attempt.finish(outcome)
            return "in_flight"
        cb = await self.queue.get(fate.callback_id)
        if cb is None:
            return "unknown_callback"
        record = AttemptRecord(
            at=fate.ended_at,
            agent=cb.agent,
            outcome=outcome.reason,
            talk_seconds=outcome.talk,
            counted=outcome.kind.uses_attempt,
        )
        claim = Claim(callback=cb, token=fate.claim)
        if outcome.kind is OutcomeKind.DONE:
            stored = await self.queue.complete(claim, record, recorded=True)
        else:
            stored = await self.queue.retry(claim, record, recorded=True)
        if stored is not None:
            log.info(
                "callback settled from its AstDB fate",
                callback=cb.id,
                outcome=outcome.reason,
                talk_seconds=round(outcome.talk, 1),
                state=stored.state.value,
            )
            return "applied"
        # Settled already (followed live, or adopted) or placed again since: compare.
        last = cb.attempt_log[-1].outcome if cb.attempt_log else ""
        if last and last != outcome.reason and last != Reason.OUTCOME_UNKNOWN:
            self.metrics.records_disagree.inc(f"callback:{last}", f"callback:{outcome.reason}")
            log.warning(
                "a callback's AstDB fate disagrees with the outcome stored",
                callback=cb.id,
                stored=last,
                record=outcome.reason,
            )
        return "seen_live"

    async def _delete(self, key: str) -> None:
        try:
            await self.store.delete(key)
        except AmiError as exc:
            log.debug("callback fate not deleted; read again next time", key=key, error=str(exc))
