"""Which of several dialers on one PBX dispatches: the holder of the leader lease, and only
while it surely still holds it.

Every instance runs this loop. The holder renews the lease every ``[leader] renew_every``; the
others ask who holds it and try again the moment it would run out, so a dead or frozen leader
is replaced within its lease (``[leader] lease``, measured by Redis's clock).

A holder acts only while its own monotonic clock says the lease cannot have run out:
until ``sent + lease - margin``, where ``sent`` is when it sent the renewal that Redis then
granted (Redis started its count later than that, so the holder's end comes first). A holder
that cannot renew (Redis gone, the process frozen) therefore stops before anyone else may
start, even when nobody tells it. ``may_act`` is read fresh at every decision (claim, and the
instant before each Originate), not from a flag a stalled loop might not have updated yet.

Losing the lease to another instance ends our holding for good: the queue refuses its fence
from then on, so what we had in flight is left to the new leader (which adopts the calls up in
Asterisk through the dispatcher's reconciliation), never hung up or recorded by us. A lapse
with nobody else taking over (a Redis outage) keeps the holding: once Redis answers, the same
holding renews, and what we had in flight is still ours to record.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
import time
from collections.abc import Awaitable, Callable

from ..config import Config
from ..logs import get_logger
from ..queue.lease import Fence, LeaderLease, LeaseUnavailable

log = get_logger(__name__)

# gained, superseded (another instance holds the lease now: what we had in flight is theirs)
LeadershipListener = Callable[[bool, bool], Awaitable[None] | None]


def default_instance() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Leadership:
    def __init__(
        self,
        config: Config,
        lease: LeaderLease,
        *,
        on_change: LeadershipListener,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.instance = config.leader.instance or default_instance()
        self.lease = lease
        self.lease_seconds = config.leader.lease
        self.renew_every = config.leader.renew_every
        # Room for the renewal's trip and for clocks that do not run at quite one rate.
        self.margin = max(0.2, self.lease_seconds / 10)
        self._on_change = on_change
        self._monotonic = monotonic
        self._holding: Fence | None = None  # the holding we last had; None once another has it
        self._valid_until = 0.0  # monotonic: we act until then
        self._announced = False
        self.leader = ""  # the holder as last seen: us or another instance ("" none/unknown)
        self.token = 0  # its token
        self.last_error = ""
        self.acquired = 0  # holdings taken (for tests and the log)
        self._remaining = 0.0  # a standby: how long the leader's lease had left when last asked
        self._stopping = asyncio.Event()
        self._idle = asyncio.Event()  # set while run() is not running
        self._idle.set()

    # ------------------------------------------------------------------ reading

    def fence(self) -> Fence | None:
        """The holding our claims, renewals and outcomes carry (the queue checks it)."""
        return self._holding

    def may_act(self) -> bool:
        """True only while our lease cannot have run out, by our own clock."""
        return self._holding is not None and self._monotonic() < self._valid_until

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        self._idle.clear()
        try:
            while not self._stopping.is_set():
                await self.tick()
                await self._sleep(self._next_tick_in())
        finally:
            self._idle.set()

    def _next_tick_in(self) -> float:
        if self._holding is not None:
            left = self._valid_until - self._monotonic()
            if left > 0:
                # Renew on time; and wake when the holding would lapse, to say so at once.
                return min(self.renew_every, left + 0.001)
            return min(self.renew_every, 0.5)  # lapsed (Redis away): try again soon
        if self.leader and self._remaining > 0:
            # A standby asks again just after the leader's lease would end: a dead leader is
            # replaced within its lease, not a renew interval later.
            return min(self.renew_every * 2, self._remaining + 0.02)
        return self.renew_every

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def tick(self) -> None:
        """One exchange with Redis: renew, take over, or learn who leads."""
        sent = self._monotonic()
        self._remaining = 0.0
        try:
            # Never longer than a renewal interval: a frozen Redis must not freeze this loop.
            state = await asyncio.wait_for(
                self.lease.tick(self.instance, self._holding, self.lease_seconds),
                timeout=max(0.5, self.renew_every),
            )
        except (LeaseUnavailable, TimeoutError) as exc:
            error = str(exc) or "Redis did not answer in time"
            if error != self.last_error:
                log.warning("leader lease not reachable", error=error, leading=self.may_act())
            self.last_error = error
            await self._announce()
            return
        self.last_error = ""
        if state.ours:
            if state.result == "acquired":
                self.acquired += 1
                log.info("leader lease acquired", instance=self.instance, token=state.token)
            self._holding = Fence(self.instance, state.token)
            self._valid_until = sent + state.seconds - self.margin
        else:
            if self._holding is not None:
                log.warning(
                    "leader lease taken over by another dialer",
                    holder=state.holder,
                    token=state.token,
                    ours=self._holding.token,
                )
            self._holding = None
            self._valid_until = 0.0
            self._remaining = state.seconds
        self.leader, self.token = state.holder, state.token
        await self._announce()

    async def _announce(self) -> None:
        leading = self.may_act()
        if leading == self._announced:
            return
        self._announced = leading
        if leading:
            log.info("leading: this dialer dispatches", instance=self.instance, token=self.token)
        else:
            log.warning(
                "not leading: dispatching stops",
                instance=self.instance,
                leader=self.leader,
                reason=self.last_error or "lease held by another dialer",
            )
        result = self._on_change(leading, self._holding is None)
        if inspect.isawaitable(result):
            await result

    async def stop(self) -> None:
        """End the loop and give the lease back, so a standby need not wait for it to run out.
        Called after dispatching stopped and in-flight outcomes were stored."""
        self._stopping.set()
        # A renewal still on its way must not land after the release (it would take the
        # lease again for a dialer that is gone): the loop ends first.
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=self.renew_every + 1)
        except TimeoutError:
            log.warning("leader loop did not end in time")
        holding, self._holding = self._holding, None
        self._valid_until = 0.0
        if holding is None:
            return
        try:
            await self.lease.release(holding)
            log.info("leader lease released", instance=self.instance, token=holding.token)
        except LeaseUnavailable as exc:
            log.warning("leader lease not released; it runs out by itself", error=str(exc))
