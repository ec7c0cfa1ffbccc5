"""Nothing lost while the dialer is away: the dialplan's records of calls, read back.

Events sent while no dialer listens are gone (a deploy, a crash, a cut link). Asterisk keeps
what matters anyway: the shipped dialplan gives every inbound call a hangup handler that writes
one AstDB entry, ``<family>/calls/<uniqueid>`` (detect/callrecord.py has its fields). At start,
after every reconnect (an AMI ready hook, before the dispatcher's: no callback is dialled on a
stale picture) and every ``records.sweep_every`` while connected, this module:

1. reads every record: ``DBGetTree`` where the Asterisk version has it (16.28, 18.14, 19.6 and
   later: every 20 and 22), else the index the dialplan keeps with ``records.index = true``
   (``<family>/seq`` counts, ``<family>/index/<n>`` names each record; ``<family>/next/calls``
   is the first slot not yet read, kept by us), entry by entry with ``DBGet``;
2. deletes unread what is older than ``records.max_age`` or cannot be read;
3. hands the rest, oldest first, to the call tracker, which judges each with the rules of live
   events (``CallTracker.settle_record``): a call followed live gives nothing (its record is
   a cross-check, a disagreement counted), any other gives the facts a live dialer would have
   reported (missed, served);
4. stores those facts in Redis itself, in the order the calls happened per number (different
   numbers in parallel), and deletes a record only once its facts are stored. A Redis outage
   stops the pass and leaves the rest in AstDB for the next one; a record read twice (a crash
   between storing and deleting) is a no-op, since both facts are idempotent by call id.

Records are bounded: read ones are deleted, old ones purged. Only a dialer that never returns
lets them grow (one short entry per call).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..ami.astdb import AstDb, Entry, TreeUnsupported
from ..ami.client import AmiError
from ..clock import Clock
from ..config import Config
from ..logs import get_logger
from ..metrics import Metrics
from ..queue.store import QueueInputError, QueueUnavailable
from .callrecord import RecordError, parse_call_record
from .facts import Fact, MissedCall, SelfServed, Served
from .sink import QueueSink
from .tracker import CallTracker

log = get_logger(__name__)

CALLS = "calls"
_PARALLEL = 32  # Redis writes and AMI deletions in flight at once during a catch-up
_TREE_TIMEOUT = 120.0  # a night of records is one long list
_BATCH = 200  # records parsed or judged between two looks at the event loop


@dataclass
class CatchUpResult:
    read: int = 0
    applied: int = 0
    seen_live: int = 0
    disagree: int = 0
    purged: int = 0
    unreadable: int = 0
    left: int = 0  # not deleted: Redis or AMI failed on the way, read again next time
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)


class RecordStore:
    """One subtree of our AstDB family (``calls``, ``fates``): read all, delete one by one."""

    def __init__(self, astdb: AstDb, family: str, subtree: str) -> None:
        self.astdb = astdb
        self.family = family
        self.subtree = subtree
        self.has_tree: bool | None = None  # learnt at the first read
        self._slots: dict[str, str] = {}  # key -> its index slot (index mode)
        self._next_slot = 0
        self._cursor = f"next/{subtree}"

    async def read(self) -> list[Entry]:
        """Every record of the subtree, keys relative to it (``1733.12``)."""
        if self.has_tree is not False:
            try:
                entries = await self.astdb.get_tree(
                    self.family, self.subtree, timeout=_TREE_TIMEOUT
                )
                self.has_tree = True
            except TreeUnsupported:
                self.has_tree = False
                log.warning(
                    "this Asterisk has no DBGetTree (before 16.28, 18.14, 19.6): records are "
                    "read through the dialplan's index (records.index = true)"
                )
            else:
                head = self.subtree + "/"
                return [
                    Entry(e.key[len(head) :], e.value) for e in entries if e.key.startswith(head)
                ]
        return await self._read_index()

    async def _read_index(self) -> list[Entry]:
        seq = _int(await self.astdb.get(self.family, "seq"))
        # Each subtree keeps its own cursor: calls and fates share the numbered slots.
        first = max(1, _int(await self.astdb.get(self.family, self._cursor)) or 1)
        self._next_slot = seq + 1
        out = []
        head = self.subtree + "/"
        for slot in range(first, seq + 1):
            key = await self.astdb.get(self.family, f"index/{slot}")
            if not key or not key.startswith(head):
                continue
            value = await self.astdb.get(self.family, key)
            name = key[len(head) :]
            self._slots[name] = f"index/{slot}"
            if value is not None:
                out.append(Entry(name, value))
        return out

    async def delete(self, key: str) -> None:
        await self.astdb.delete(self.family, f"{self.subtree}/{key}")
        slot = self._slots.pop(key, None)
        if slot is not None:
            await self.astdb.delete(self.family, slot)

    async def done_reading(self) -> None:
        """Index mode: the slots read are done with (the next read starts after them)."""
        if self.has_tree is False and self._next_slot and not self._slots:
            await self.astdb.put(self.family, self._cursor, str(self._next_slot))


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


class CallRecords:
    """The catch-up on the dialplan's call records (see the module's docstring)."""

    def __init__(
        self,
        config: Config,
        astdb: AstDb,
        tracker: CallTracker,
        sink: QueueSink,
        clock: Clock,
        metrics: Metrics,
        *,
        connected: Callable[[], bool],
    ) -> None:
        self.config = config.records
        self.tracker = tracker
        self.sink = sink
        self.clock = clock
        self.metrics = metrics
        self.connected = connected
        self.store = RecordStore(astdb, self.config.family, CALLS)
        self._lock = asyncio.Lock()
        self.last: CatchUpResult | None = None

    async def catch_up(self, why: str = "reconnect") -> CatchUpResult:
        """One pass: read, judge, store, delete. Never raises for AMI or Redis trouble."""
        async with self._lock:  # a sweep and a reconnect never run at once
            result = CatchUpResult()
            started = time.perf_counter()
            try:
                await self._pass(result)
            except AmiError as exc:
                log.warning("AstDB records not read", why=why, error=str(exc))
            result.seconds = time.perf_counter() - started
            self.last = result
            if result.read:
                log.info(
                    "AstDB call records read",
                    why=why,
                    read=result.read,
                    applied=result.applied,
                    seen_live=result.seen_live,
                    disagree=result.disagree,
                    purged=result.purged,
                    unreadable=result.unreadable,
                    left=result.left,
                    seconds=round(result.seconds, 3),
                )
            return result

    async def _pass(self, result: CatchUpResult) -> None:
        entries = await self.store.read()
        result.read = len(entries)
        oldest = self.clock.now() - self.config.max_age
        gone: list[str] = []
        records = []
        for n, entry in enumerate(entries):
            if n % _BATCH == _BATCH - 1:
                await asyncio.sleep(0)  # a night of records must not hold up live events
            try:
                record = parse_call_record(entry.key, entry.value)
            except RecordError as exc:
                log.warning("unreadable AstDB call record deleted", key=entry.key, error=str(exc))
                result.unreadable += 1
                self.metrics.records.inc(CALLS, "unreadable")
                gone.append(entry.key)
                continue
            if record.ended_at < oldest:
                result.purged += 1
                self.metrics.records.inc(CALLS, "purged")
                gone.append(entry.key)
                continue
            records.append(record)
        records.sort(key=lambda r: (r.ended_at, r.call_id))
        # Judged in the order the calls ended (as live events would have come), stored per
        # number in the order their facts happened.
        lanes: dict[str, list[tuple[float, str, Fact | None]]] = defaultdict(list)
        for n, record in enumerate(records):
            if n % _BATCH == _BATCH - 1:
                await asyncio.sleep(0)
            verdict = self.tracker.settle_record(record)
            if verdict.seen_live:
                result.seen_live += 1
                self.metrics.records.inc(CALLS, "seen_live")
                if not verdict.agrees:
                    result.disagree += 1
                    self.metrics.records_disagree.inc(verdict.live, verdict.recorded)
                    log.warning(
                        "a call's AstDB record disagrees with its live events",
                        call_id=record.call_id,
                        live=verdict.live,
                        record=verdict.recorded,
                    )
                gone.append(record.call_id)
                continue
            result.applied += 1
            self.metrics.records.inc(CALLS, "applied")
            result.counts[verdict.recorded] = result.counts.get(verdict.recorded, 0) + 1
            if not verdict.facts:
                lanes[f"-{record.call_id}"].append((record.ended_at, record.call_id, None))
            for fact in verdict.facts:
                lanes[_number(fact)].append((_at(fact), record.call_id, fact))
        # _PARALLEL workers, each storing one number's facts in order and deleting each record
        # once stored: that many Redis writes and AMI deletions in flight, and no task per
        # record (ten thousand tasks made at once would hold up the live events themselves).
        work: deque[list[tuple[float, str, Fact | None]]] = deque(
            [[(0.0, key, None)] for key in gone]
        )
        work.extend(sorted(lane) for lane in lanes.values())

        async def worker() -> None:
            while work:
                await self._lane(work.popleft(), result)

        await asyncio.gather(*(worker() for _ in range(min(_PARALLEL, len(work)))))
        if not result.left:
            await self.store.done_reading()

    async def _lane(
        self, lane: list[tuple[float, str, Fact | None]], result: CatchUpResult
    ) -> None:
        for i, (_, key, fact) in enumerate(lane):
            if fact is not None:
                try:
                    await self.sink.apply(fact)
                except QueueUnavailable as exc:
                    # The rest of this number's records stay in AstDB for the next pass.
                    log.warning("Redis unavailable; AstDB records kept", error=str(exc))
                    result.left += len(lane) - i
                    return
                except QueueInputError as exc:
                    log.error("a recorded call was refused by the queue", error=str(exc))
            await self._delete(key, result)

    async def _delete(self, key: str, result: CatchUpResult) -> None:
        try:
            await self.store.delete(key)
        except AmiError as exc:
            result.left += 1
            log.debug("AstDB record not deleted; read again next time", key=key, error=str(exc))


def _number(fact: Fact) -> str:
    return fact.number if isinstance(fact, MissedCall | Served | SelfServed) else ""


def _at(fact: Fact) -> float:
    if isinstance(fact, MissedCall | SelfServed):
        return fact.ended_at
    if isinstance(fact, Served):
        return fact.at
    return 0.0
