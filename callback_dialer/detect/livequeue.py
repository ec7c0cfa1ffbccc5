"""The live queue: who is waiting in each Asterisk queue right now, since when, and for what.

A freed agent is wanted twice: by Asterisk's queue for a caller who is holding, and by us for
a callback. The dispatcher may only take the agent when the best callback scores lower than
every live caller waiting in the queues that agent answers (dispatch/turns.py), so it has to
know those callers: built from ``QueueStatus`` (its ``QueueEntry`` items) after every
(re)connect, exactly like the agent book, then kept current by ``QueueCallerJoin``,
``QueueCallerLeave`` and ``QueueCallerAbandon``.

A caller's category is the IVR's ``CALLBACK_CATEGORY`` (the ``ChanVariable`` headers that
manager.conf's ``channelvars`` adds to QueueCallerJoin), else the queue's
``[detection] queue_categories``, else the fallback: the same answer the tracker gives for a
missed call (categories.py). ``QueueEntry`` carries no channel variables, so after a
reconnect the category comes from what the tracker already knows of that call, else the queue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..ami.asterisk import CATEGORY_VAR, unescape_c
from ..ami.frames import AmiMessage
from ..clock import Clock
from ..config import Config
from .categories import CategoryResolver


@dataclass(slots=True)
class LiveCaller:
    uniqueid: str
    channel: str
    queue: str
    category: str
    joined_at: float
    number: str = ""
    ringing: str = ""  # the member Asterisk is ringing for this caller now (AgentCalled)


@dataclass(frozen=True, slots=True)
class LiveQueueView:
    queue: str
    waiting: int
    longest_wait: float  # seconds the longest-waiting caller has held
    oldest_joined_at: float | None


def _chanvar(message: AmiMessage, name: str) -> str:
    prefix = name + "="
    for item in message.getall("ChanVariable"):
        if item.startswith(prefix):
            return unescape_c(item[len(prefix) :])
    return ""


class LiveQueueBook:
    HANDLERS = {
        "QueueCallerJoin": "on_join",
        "QueueCallerLeave": "on_leave",
        "QueueCallerAbandon": "on_leave",
        "QueueEntry": "on_entry",
        "QueueStatusComplete": "on_status_complete",
        "AgentCalled": "on_agent_called",
        "AgentRingNoAnswer": "on_ring_ended",
        "Hangup": "on_hangup",
    }

    def __init__(
        self,
        config: Config,
        clock: Clock,
        *,
        known_category: Callable[[str], str] | None = None,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.categories = CategoryResolver(config)
        self.weights = config.weights()
        # The category the tracker learnt from the call's own events (for QueueEntry, which
        # has no channel variables).
        self.known_category = known_category or (lambda uniqueid: "")
        # Told when a caller leaves a queue: an agent held back for them may be free for a
        # callback now.
        self.on_change = on_change
        self.callers: dict[tuple[str, str], LiveCaller] = {}  # (queue, uniqueid) -> caller
        self._resync_seen: set[tuple[str, str]] | None = None

    # ------------------------------------------------------------------ events

    def begin_resync(self) -> None:
        """A QueueStatus is on its way: callers it does not list left while we were away."""
        self._resync_seen = set()

    def _time(self, message: AmiMessage) -> float:
        return message.received_at or self.clock.now()

    def on_join(self, message: AmiMessage) -> None:
        fields = message.fields
        queue, uid = fields.get("Queue", ""), fields.get("Uniqueid", "")
        if not queue or not uid:
            return
        category = self.categories.resolve(chanvar=_chanvar(message, CATEGORY_VAR), queue=queue)
        self.callers[(queue, uid)] = LiveCaller(
            uniqueid=uid,
            channel=fields.get("Channel", ""),
            queue=queue,
            category=category,
            joined_at=self._time(message),
            number=fields.get("CallerIDNum", ""),
        )
        if self._resync_seen is not None:
            self._resync_seen.add((queue, uid))

    def on_leave(self, message: AmiMessage) -> None:
        key = (message.fields.get("Queue", ""), message.fields.get("Uniqueid", ""))
        if self.callers.pop(key, None) is not None and self.on_change is not None:
            self.on_change(key[0])

    def on_hangup(self, message: AmiMessage) -> None:
        """A caller's channel gone without a QueueCallerLeave we saw (lost in a reconnect's
        gap before the resync): not waiting any more."""
        uid = message.fields.get("Uniqueid", "")
        for key in [k for k in self.callers if k[1] == uid]:
            del self.callers[key]
            if self.on_change is not None:
                self.on_change(key[0])

    def on_entry(self, message: AmiMessage) -> None:
        fields = message.fields
        queue, uid = fields.get("Queue", ""), fields.get("Uniqueid", "")
        if not queue or not uid:
            return
        wait = fields.get("Wait", "")
        now = self._time(message)
        joined_at = now - float(wait) if wait.isdigit() else now
        known = self.callers.get((queue, uid))
        if known is not None:
            # Seen joining: our own time of the join is finer than QueueEntry's whole seconds.
            joined_at = known.joined_at
            category = known.category
        else:
            category = self.categories.resolve(chanvar=self.known_category(uid), queue=queue)
        number = fields.get("CallerIDNum", "")
        self.callers[(queue, uid)] = LiveCaller(
            uniqueid=uid,
            channel=fields.get("Channel", ""),
            queue=queue,
            category=category,
            joined_at=joined_at,
            number="" if number == "unknown" else number,
            ringing=known.ringing if known is not None else "",
        )
        if self._resync_seen is not None:
            self._resync_seen.add((queue, uid))

    def on_status_complete(self, message: AmiMessage) -> None:
        seen, self._resync_seen = self._resync_seen, None
        if seen is None:
            return
        gone = [key for key in self.callers if key not in seen]
        for key in gone:
            del self.callers[key]
        if self.on_change is not None:
            for queue in {key[0] for key in gone}:
                self.on_change(queue)

    def on_agent_called(self, message: AmiMessage) -> None:
        caller = self.callers.get(
            (message.fields.get("Queue", ""), message.fields.get("Uniqueid", ""))
        )
        if caller is not None:
            caller.ringing = message.fields.get("Interface", "")

    def on_ring_ended(self, message: AmiMessage) -> None:
        caller = self.callers.get(
            (message.fields.get("Queue", ""), message.fields.get("Uniqueid", ""))
        )
        if caller is not None:
            caller.ringing = ""

    # ------------------------------------------------------------------ questions

    def score(self, caller: LiveCaller) -> float:
        """The one score (README, "Callbacks and live callers"): ``joined_at - weight``."""
        return caller.joined_at - self.weights.get(caller.category, 0.0)

    def waiting_in(self, queues: tuple[str, ...] | list[str] | set[str]) -> list[LiveCaller]:
        wanted = set(queues)
        return [c for c in self.callers.values() if c.queue in wanted]

    def best_in(self, queues: tuple[str, ...] | list[str] | set[str]) -> LiveCaller | None:
        """The live caller with the lowest score in these queues (None: nobody waits)."""
        callers = self.waiting_in(queues)
        return min(callers, key=lambda c: (self.score(c), c.uniqueid)) if callers else None

    def count(self, queue: str) -> int:
        return sum(1 for key in self.callers if key[0] == queue)

    def queues(self) -> list[str]:
        return sorted({key[0] for key in self.callers})

    def views(self, queues: list[str] | None = None) -> list[LiveQueueView]:
        now = self.clock.now()
        names = sorted(set(queues or []) | {key[0] for key in self.callers})
        out = []
        for name in names:
            joined = [c.joined_at for c in self.callers.values() if c.queue == name]
            oldest = min(joined) if joined else None
            out.append(
                LiveQueueView(
                    queue=name,
                    waiting=len(joined),
                    longest_wait=max(0.0, now - oldest) if oldest is not None else 0.0,
                    oldest_joined_at=oldest,
                )
            )
        return out
