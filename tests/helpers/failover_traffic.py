"""Queue traffic through a Redis failover, with an account of every acknowledged write.

A writer stores missed calls one after the other (each its own number and call id) and, like
the dialer's sink, tries a write again until Redis acknowledges it. A dispatcher claims
callbacks with the leader lease's fence and settles each as done, also trying an outcome
again until it is acknowledged, as the dialer does. Meanwhile ``kill`` is run once (SIGKILL
of the master) when the writer is ``kill_after`` calls in.

Afterwards ``Account.check`` reads the queue (on the new master) and names what went wrong:

- lost: a missed call whose enqueue was acknowledged has no callback;
- doubled: a number has two callbacks, or a callback was acknowledged as done twice (the
  "done" was lost, the callback came back and was dialled again: a customer called twice).

Claims whose answer was lost with the master leave their callback claimed under a token nobody
knows; the claim lease (short here) brings it back and it is claimed again. That is the
designed recovery, not a loss: no call was placed on such a claim.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from callback_dialer.queue.models import Attempt, Source, State
from callback_dialer.queue.store import CallbackQueue, QueueUnavailable


@dataclass
class Account:
    calls: int
    enqueued: dict[str, str] = field(default_factory=dict)  # number -> result
    done: Counter[str] = field(default_factory=Counter)  # callback id -> acknowledged dones
    claims: int = 0
    retries: int = 0
    unavailable_for: float = 0.0  # seconds the queue did not answer

    async def check(self, queue: CallbackQueue) -> tuple[list[str], list[str]]:
        """(lost, doubled): see the module docstring."""
        finished = await queue.finished_between(0, float("inf"), limit=self.calls * 2)
        open_ = await queue.waiting(limit=self.calls * 2) + await queue.in_progress()
        by_number: dict[str, list[str]] = {}
        for cb in finished + open_:
            by_number.setdefault(cb.number, []).append(cb.id)
        lost = sorted(n for n in self.enqueued if n not in by_number)
        doubled = sorted(n for n, ids in by_number.items() if len(ids) > 1)
        doubled += sorted(f"{cb}: done {k} times" for cb, k in self.done.items() if k > 1)
        return lost, doubled


def number(i: int) -> str:
    return f"+7916{i:07d}"


async def run_traffic(
    queue: CallbackQueue,
    *,
    calls: int,
    kill_after: int,
    kill: Callable[[], None],
    settle_for: float = 20.0,
) -> Account:
    account = Account(calls)
    written = asyncio.Event()
    killed = asyncio.Event()

    async def retrying(write):  # type: ignore[no-untyped-def]
        started = None
        while True:
            try:
                result = await write()
            except QueueUnavailable:
                account.retries += 1
                started = started or asyncio.get_running_loop().time()
                await asyncio.sleep(0.02)
                continue
            if started is not None:
                account.unavailable_for += asyncio.get_running_loop().time() - started
            return result

    async def writer() -> None:
        for i in range(calls):
            if i == kill_after:
                await asyncio.to_thread(kill)
                killed.set()
            result = await retrying(
                lambda i=i: queue.add_missed(
                    number=number(i),
                    category="support",
                    source=Source.ABANDON,
                    missed_at=queue.clock.now() - 60,
                    call_id=f"ha-call-{i}",
                )
            )
            account.enqueued[number(i)] = result.result
        written.set()

    async def dispatcher() -> None:
        loop = asyncio.get_running_loop()
        idle_since = None
        while True:
            claim = await retrying(lambda: queue.claim(["support"], claimer="ha"))
            if claim is None:
                if written.is_set():
                    idle_since = idle_since or loop.time()
                    if loop.time() - idle_since > settle_for:
                        return
                    counts = await retrying(queue.counts)
                    if not any(counts[s].get("support") for s in ("pending", "dialing")):
                        return
                await asyncio.sleep(0.02)
                continue
            idle_since = None
            account.claims += 1
            record = Attempt(
                at=queue.clock.now(), agent="PJSIP/101", outcome="answered", counted=True
            )
            settled = await retrying(lambda c=claim, r=record: queue.complete(c, r))
            if settled is not None and settled.state is State.DONE:
                account.done[settled.id] += 1

    await asyncio.gather(writer(), dispatcher())
    assert killed.is_set()
    return account
