"""Outage mode, the dialer's side: declaring and ending outages, settling their held
callbacks, telling the dialplan, asking the CRM for a caller's area.

An ISP's busiest hour is an outage: ten times the usual calls, nearly all "my internet is down"
from one district. Calling each of them back after the outage wastes the agents' hours on
people whose service is back, and while it lasts their callbacks would bury the new
subscribers' ones. So an outage, declared by a supervisor (page, API), another system (API) or
the dialplan (``UserEvent(CallbackOutage,Action: declare,...)``), makes the queue *hold* every
new missed call it covers (category, and the caller's number prefix or CRM area) instead of
queueing it for an agent (queue/lua/enqueue.lua decides, atomically). Ending it, the
supervisor chooses per outage: drop the held callbacks (the caller gets "service is back") or
release them in the usual order, at most ``release_per_hour`` falling due per hour.

State lives in Redis only (queue/keys.py: ``outage:*``, ``outages``, ``outages:active``,
``held:*``): every instance reads it every ``[outage] refresh_every``, and a dialer killed in
the middle of releasing a thousand callbacks leaves the outage ``ending``; whichever instance
leads next goes on with the batches (each batch is one script, safe to repeat).

The dialplan must not wait on us to know of an outage, so the dialer mirrors the active
outages into AstDB (``DBPut``/``DBDel``, family ``callback-outage``, see ami/asterisk.py): the
IVR reads ``${DB_EXISTS(callback-outage/cat-support)}`` locally. Every instance mirrors what
Redis says (idempotent), again after every AMI reconnect.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from ..ami.asterisk import OUTAGE_DB_FAMILY
from ..ami.client import AmiActionFailed
from ..ami.frames import AmiMessage
from ..clock import Clock
from ..config import Config
from ..hours import CallingHours
from ..logs import get_logger
from ..phone import clean_text
from ..queue.models import Outage, OutageEnd, OutageState
from ..queue.store import CallbackQueue, QueueInputError, QueueUnavailable

log = get_logger(__name__)

MAX_MESSAGE = 300
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

# Sends one AMI action (DBPut/DBDel) and returns when Asterisk answered; raises when it did
# not (not connected, refused).
AmiAction = Callable[[Mapping[str, Any]], Any]


class OutageInputError(QueueInputError):
    """A declaration or an end the dialer refuses (unknown category, bad prefix, ...)."""


def new_outage_id(now: float) -> str:
    stamp = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y%m%d-%H%M")
    return f"out-{stamp}-{secrets.token_hex(2)}"


def parse_prefixes(values: list[str] | tuple[str, ...]) -> list[str]:
    """Number prefixes as E.164 starts: "+7495123" (a leading + is added to bare digits)."""
    out = []
    for raw in values:
        text = raw.strip().replace(" ", "").replace("-", "")
        if not text:
            continue
        if not text.startswith("+"):
            text = "+" + text
        if not text[1:].isdigit() or not 2 <= len(text) <= 16:
            raise OutageInputError(f"not a number prefix like +7495123: {raw!r}")
        out.append(text)
    return out


def parse_until(text: str, now: float, hours: CallingHours) -> float | None:
    """An expected end: a Unix time, or local ``HH:MM`` (today, or tomorrow once past)."""
    text = text.strip()
    if not text:
        return None
    if re.fullmatch(r"\d{9,11}(\.\d+)?", text):
        return float(text)
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", text)
    if not match:
        raise OutageInputError(f"expected end must be HH:MM or a Unix time, got {text[:20]!r}")
    local = hours.local(now)
    at = local.replace(hour=int(match[1]), minute=int(match[2]), second=0, microsecond=0)
    if at.timestamp() <= now:
        at += dt.timedelta(days=1)
    return at.timestamp()


class OutageService:
    HANDLERS = {"UserEvent": "on_user_event"}

    def __init__(
        self,
        config: Config,
        clock: Clock,
        queue: CallbackQueue,
        *,
        ami_action: AmiAction | None = None,
        leading: Callable[[], bool] = lambda: True,
    ) -> None:
        self.config = config
        self.clock = clock
        self.queue = queue
        self.hours = CallingHours(config.hours)
        self.event_name = config.detection.outage_event
        self._ami_action = ami_action if config.outage.mirror_astdb else None
        self._leading = leading
        self.current: list[Outage] = []  # as last read from Redis: active and ending ones
        self._mirrored: dict[str, str] | None = None  # AstDB as we last wrote it
        self._wakeup = asyncio.Event()
        self._mirror_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._http: aiohttp.ClientSession | None = None
        self.lookups_failed = 0

    # ------------------------------------------------------------------ declaring

    async def declare(
        self,
        *,
        actor: str,
        categories: list[str] | tuple[str, ...] = (),
        prefixes: list[str] | tuple[str, ...] = (),
        areas: list[str] | tuple[str, ...] = (),
        message: str = "",
        expected_end: float | None = None,
        outage_id: str = "",
    ) -> tuple[bool, Outage]:
        now = self.clock.now()
        outage_id = outage_id or new_outage_id(now)
        if not _ID.match(outage_id):
            raise OutageInputError("an outage id is 1-64 letters, digits or _ . : -")
        names = list(categories) or list(self.config.outage_categories())
        for area in areas:
            if not _NAME.match(area):
                raise OutageInputError(f"an area name is 1-64 letters, digits or _ . -: {area!r}")
        if expected_end is not None and expected_end <= now - 60:
            raise OutageInputError("the expected end is in the past")
        created, outage = await self.queue.declare_outage(
            outage_id=outage_id,
            categories=names,
            prefixes=parse_prefixes(list(prefixes)),
            areas=list(areas),
            message=clean_text(message)[:MAX_MESSAGE],
            expected_end=expected_end,
            actor=actor,
        )
        if created:
            log.warning(
                "outage declared: covered missed calls are held",
                outage=outage.id,
                categories=list(outage.categories),
                prefixes=list(outage.prefixes),
                areas=list(outage.areas),
                by=actor,
            )
        await self.refresh()
        return created, outage

    async def end(
        self, outage_id: str, choice: OutageEnd, *, actor: str, per_hour: int | None = None
    ) -> tuple[str, Outage | None]:
        rate = self.config.outage.release_per_hour if per_hour is None else per_hour
        result, outage = await self.queue.end_outage(
            outage_id, OutageEnd(choice), per_hour=rate, actor=actor
        )
        if result == "ok":
            log.warning("outage ended", outage=outage_id, choice=OutageEnd(choice).value, by=actor)
            self._wakeup.set()
        await self.refresh()
        return result, outage

    # ------------------------------------------------------------------ the dialplan's word

    def on_user_event(self, message: AmiMessage) -> None:
        """``UserEvent(CallbackOutage,Action: declare|end,...)`` from the dialplan or any AMI
        client. Every dialer sees it; the outage id (``Id``, else the channel's Uniqueid)
        makes the second a no-op."""
        fields = message.fields
        if fields.get("UserEvent") != self.event_name:
            return
        task = asyncio.get_running_loop().create_task(self._from_event(dict(fields)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _from_event(self, fields: dict[str, str]) -> None:
        action = fields.get("Action", "declare").strip().lower()
        outage_id = fields.get("Id", "").strip() or fields.get("Uniqueid", "").strip()
        actor = "pbx:" + (fields.get("Channel", "") or "userevent")[:60]

        def listed(name: str) -> list[str]:
            return [v.strip() for v in re.split(r"[|,;]", fields.get(name, "")) if v.strip()]

        try:
            if action == "declare":
                await self.declare(
                    actor=actor,
                    categories=listed("Categories"),
                    prefixes=listed("Prefixes"),
                    areas=listed("Areas"),
                    message=fields.get("Message", ""),
                    expected_end=parse_until(fields.get("Until", ""), self.clock.now(), self.hours),
                    outage_id=outage_id,
                )
            elif action == "end":
                choice = fields.get("Choice", "release").strip().lower() or "release"
                if choice not in ("drop", "release"):
                    raise OutageInputError(f"Choice must be drop or release, got {choice[:20]!r}")
                per_hour = fields.get("PerHour", "").strip()
                await self.end(
                    outage_id,
                    OutageEnd(choice),
                    actor=actor,
                    per_hour=int(per_hour) if per_hour.isdigit() else None,
                )
            else:
                raise OutageInputError(f"Action must be declare or end, got {action[:20]!r}")
        except QueueInputError as exc:
            log.error("outage event refused", error=str(exc), event_id=outage_id)
        except QueueUnavailable as exc:
            log.error("outage event not stored: Redis unavailable", error=str(exc))

    # ------------------------------------------------------------------ the CRM's word

    async def area_for(self, number: str, category: str) -> str:
        """The caller's area from ``[outage] area_lookup_url``, asked only while an active
        outage of this category is declared by area; "" otherwise or when the CRM does not
        answer in time (the call is then dialled as usual: better an extra call than a lost
        one)."""
        url = self.config.outage.area_lookup_url
        if not url or not any(
            o.active and o.areas and category in o.categories for o in self.current
        ):
            return ""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        try:
            timeout = aiohttp.ClientTimeout(total=self.config.outage.area_lookup_timeout)
            async with self._http.post(url, json={"number": number}, timeout=timeout) as resp:
                if resp.status != 200:
                    raise ValueError(f"HTTP {resp.status}")
                data = await resp.json(content_type=None)
            area = str(data.get("area", "")) if isinstance(data, dict) else ""
            return area if _NAME.match(area) else ""
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self.lookups_failed += 1
            log.warning("area lookup failed; the call is not held", error=str(exc)[:200])
            return ""

    # ------------------------------------------------------------------ keeping up

    async def refresh(self) -> None:
        """Re-read the outages that matter now (active and ending) and mirror them."""
        try:
            outages = await self.queue.outages(limit=50)
        except QueueUnavailable:
            return
        self.current = [o for o in outages if o.state is not OutageState.ENDED]
        await self.mirror()

    async def settle(self) -> None:
        """The leader drops or releases the held callbacks of ended outages, batch by batch."""
        if not self._leading():
            return
        for outage in [o for o in self.current if o.state is OutageState.ENDING]:
            try:
                while await self.queue.settle_outage(outage.id) > 0:
                    await asyncio.sleep(0)
            except QueueUnavailable as exc:
                log.warning("settling an outage waits for Redis", outage=outage.id, error=str(exc))
                return

    def desired_astdb(self) -> dict[str, str]:
        active = [o for o in self.current if o.active]
        out: dict[str, str] = {}
        for outage in active:
            for category in outage.categories:
                out[f"cat-{category}"] = "1"
        if active:
            latest = max(active, key=lambda o: o.declared_at)
            out["message"] = latest.message
            out["until"] = (
                self.hours.local(latest.expected_end).strftime("%H:%M")
                if latest.expected_end
                else ""
            )
        return out

    async def mirror(self, force: bool = False) -> None:
        """Make AstDB say what Redis says. One at a time (the loop, an API call and a
        UserEvent may all ask at once); every key we could ever write that is not wanted now
        is deleted, so neither a restart nor another dialer's writes leave a stale one."""
        if self._ami_action is None:
            return
        async with self._mirror_lock:
            wanted = self.desired_astdb()
            if not force and wanted == self._mirrored:
                return
            ours = {f"cat-{c}" for c in self.config.category_names()} | {"message", "until"}
            try:
                for key, value in wanted.items():
                    if force or self._mirrored is None or self._mirrored.get(key) != value:
                        await self._ami_action(
                            {
                                "Action": "DBPut",
                                "Family": OUTAGE_DB_FAMILY,
                                "Key": key,
                                "Val": value,
                            }
                        )
                for key in sorted(ours - set(wanted)):
                    await self._db_del(key)
            except Exception as exc:  # AMI down: the next refresh or the reconnect tries again
                log.debug("AstDB mirror of the outages not written", error=str(exc)[:200])
                self._mirrored = None
                return
            self._mirrored = wanted

    async def _db_del(self, key: str) -> None:
        try:
            await self._ami_action({"Action": "DBDel", "Family": OUTAGE_DB_FAMILY, "Key": key})
        except AmiActionFailed as exc:
            # Asterisk 22.9.0 answers "Database entry could not be deleted" for a key that is
            # not there (most of them, most of the time); anything else is a real failure.
            if "could not be deleted" not in str(exc) and "not found" not in str(exc):
                raise

    async def ami_ready(self) -> None:
        """After every (re)connect: AstDB may be anything, write it all again."""
        self._mirrored = None
        await self.refresh()
        await self.mirror(force=True)

    async def run(self) -> None:
        every = self.config.outage.refresh_every
        while True:
            try:
                await self.refresh()
                await self.settle()
            except Exception:  # a bug here must not stop detection or dispatching
                log.exception("outage upkeep failed; trying again")
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), every)
            except TimeoutError:
                pass

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._http is not None:
            await self._http.close()
            self._http = None
