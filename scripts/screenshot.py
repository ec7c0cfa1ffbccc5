"""Make docs/screenshot.png: the status page on a realistic day, in headless Chromium.

    .venv/bin/python scripts/screenshot.py                 # docs/screenshot.png, English
    .venv/bin/python scripts/screenshot.py --lang ru --out /tmp/ru.png

Everything is real but the people: a throwaway embedded Redis (nothing of yours is touched),
a week of missed calls and callbacks written through the queue's own API by a small
minute-by-minute simulation (peaks mid-morning and early evening, agents who are often busy
with calls of their own, busy and unanswered customers, callers who get through on their own),
a dialer logged in to an AMI peer that lists six agents, and the page in Debian's Chromium.
The clock stands still at a Tuesday 14:35 in Moscow, so the picture is the same every run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import heapq
import itertools
import random
import sys
import tempfile
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from simpbx.amiserver import AmiServer  # noqa: E402
from simpbx.wire import MemberView, queue_member_item  # noqa: E402

from callback_dialer.app import build_dialer  # noqa: E402
from callback_dialer.clock import ManualClock  # noqa: E402
from callback_dialer.config import parse_config  # noqa: E402
from callback_dialer.embedded_redis import EmbeddedRedis  # noqa: E402
from callback_dialer.jobs.reports import generate_report  # noqa: E402
from callback_dialer.queue.models import Attempt, Source, Stage  # noqa: E402
from callback_dialer.queue.store import CallbackQueue  # noqa: E402
from callback_dialer.web.auth import hash_password  # noqa: E402

TZ = ZoneInfo("Europe/Moscow")
NOW = dt.datetime(2026, 11, 24, 14, 35, tzinfo=TZ)
DAYS_BEFORE = 7
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
USER, PASSWORD = "olga.smirnova", "screenshot-only"

# Missed calls per hour of day: a mid-morning peak and an evening one.
RATE = {
    9: 3.0,
    10: 6.5,
    11: 7.0,
    12: 5.0,
    13: 4.0,
    14: 6.0,
    15: 4.0,
    16: 4.5,
    17: 6.0,
    18: 5.5,
    19: 3.0,
    20: 1.5,
}
# The chance per minute that an agent who is not on a callback picks one up (they answer
# inbound calls too): low in the peaks and over lunch, when the backlog grows.
FREE = {
    9: 0.25,
    10: 0.06,
    11: 0.05,
    12: 0.12,
    13: 0.08,
    14: 0.008,
    15: 0.12,
    16: 0.12,
    17: 0.05,
    18: 0.06,
    19: 0.15,
    20: 0.2,
}
CATEGORIES = (("new_connection", 0.18), ("support", 0.50), ("billing", 0.20), ("other", 0.12))
SOURCES = (
    (Source.ABANDON, 0.5),
    (Source.IVR_HANGUP, 0.2),
    (Source.TIMEOUT, 0.1),
    (Source.EXPLICIT, 0.2),
)
NAMES = (
    "Иван Петров",
    "Ольга Кузнецова",
    "Алексей Смирнов",
    "Марина Соколова",
    "Дмитрий Попов",
    "Елена Лебедева",
    "Сергей Козлов",
    "Наталья Новикова",
    "Андрей Морозов",
    "Татьяна Волкова",
    "ООО «Ромашка»",
    "Анна Фёдорова",
    "Павел Михайлов",
    "Юлия Егорова",
    "Николай Павлов",
    "Светлана Степанова",
    "Максим Семёнов",
    "Ирина Голубева",
)
# (interface, categories it calls back) for the simulated past.
SIM_AGENTS = (
    ("Local/101@agents/n", ["new_connection"]),
    ("Local/102@agents/n", ["support", "billing", "other"]),
    ("Local/104@agents/n", ["support", "billing", "other"]),
    ("Local/105@agents/n", ["new_connection", "support", "billing", "other"]),
)


def pick(rng: random.Random, table: tuple[tuple[Any, float], ...]) -> Any:
    return rng.choices([v for v, _ in table], weights=[w for _, w in table])[0]


class Day:
    """A minute-by-minute simulation of missed calls and callbacks, through the queue."""

    def __init__(self, queue: CallbackQueue, clock: ManualClock, rng: random.Random) -> None:
        self.queue, self.clock, self.rng = queue, clock, rng
        self.events: list[tuple[float, int, str, Any]] = []
        self.seq = itertools.count()
        self.busy_until = {a: 0.0 for a, _ in SIM_AGENTS}
        self.recent: list[str] = []

    def later(self, at: float, kind: str, data: Any) -> None:
        heapq.heappush(self.events, (at, next(self.seq), kind, data))

    async def to(self, at: float) -> None:
        if at > self.clock.now():
            await self.clock.advance(at - self.clock.now())

    def number(self) -> str:
        if self.recent and self.rng.random() < 0.08:
            return self.rng.choice(self.recent[-30:])  # called again: merges
        number = (
            f"+79{self.rng.choice(['16', '03', '85', '26', '99'])}{self.rng.randrange(10**7):07d}"
        )
        self.recent.append(number)
        return number

    async def missed_call(self, at: float) -> None:
        number = self.number()
        name = self.rng.choice(NAMES) if self.rng.random() < 0.65 else ""
        category = pick(self.rng, CATEGORIES)
        result = await self.queue.add_missed(
            number=number,
            category=category,
            source=pick(self.rng, SOURCES),
            missed_at=at,
            name=name,
            call_id=f"sim-{at:.0f}-{number}",
        )
        if self.rng.random() < 0.08:
            self.later(at + self.rng.uniform(180, 2400), "served", number)
        elif self.rng.random() < 0.02:
            self.later(at + self.rng.uniform(300, 1200), "cancel", result.id)

    async def agents_work(self, at: float, hour: int) -> None:
        for interface, categories in SIM_AGENTS:
            if self.busy_until[interface] > at or self.rng.random() > FREE.get(hour, 0.0):
                continue  # on an inbound call, or between calls
            claim = await self.queue.claim(categories, claimer="sim", agent=interface, lease=3600)
            if claim is None:
                continue
            await self.to(at + self.rng.uniform(5, 15))
            await self.queue.renew(claim, stage=Stage.RINGING_CUSTOMER, agent=interface, lease=3600)
            roll = self.rng.random()
            if roll < 0.62:
                talk = self.rng.uniform(90, 420)
                self.later(self.clock.now() + 12, "answered", (claim, talk))
                self.busy_until[interface] = self.clock.now() + 12 + talk + 30
            else:
                outcome = "busy" if roll < 0.72 else "no_answer"
                self.later(
                    self.clock.now() + (5 if outcome == "busy" else 30), "retry", (claim, outcome)
                )
                self.busy_until[interface] = self.clock.now() + 60

    async def handle(self, kind: str, data: Any) -> None:
        q = self.queue
        if kind == "answered":
            claim, talk = data
            await q.renew(claim, stage=Stage.TALKING, agent=claim.callback.agent or "", lease=3600)
            self.later(self.clock.now() + talk, "done", (claim, talk))
        elif kind == "done":
            claim, talk = data
            agent = (await q.get(claim.callback.id)).agent
            await q.complete(
                claim,
                Attempt(at=self.clock.now(), agent=agent, outcome="answered", talk_seconds=talk),
            )
        elif kind == "retry":
            claim, outcome = data
            agent = (await q.get(claim.callback.id)).agent
            await q.retry(claim, Attempt(at=self.clock.now(), agent=agent, outcome=outcome))
        elif kind == "served":
            await q.resolve_number(data)
        elif kind == "cancel":
            await q.cancel(data, "Клиент написал в чат, вопрос решён", actor=f"web:{USER}")

    async def run(self, start: float, end: float) -> None:
        minute = start
        while minute < end:
            while self.events and self.events[0][0] <= minute:
                at, _, kind, data = heapq.heappop(self.events)
                await self.to(at)
                await self.handle(kind, data)
            await self.to(minute)
            hour = self.queue.hours.hour(minute)
            for _ in range(self._poisson(RATE.get(hour, 0.0) / 60)):
                await self.missed_call(minute - self.rng.uniform(0, 59))  # in the last minute
            await self.agents_work(minute, hour)
            minute += 60
        await self.to(end)

    def _poisson(self, mean: float) -> int:
        count, limit, product = 0, pow(2.718281828, -mean), self.rng.random()
        while product > limit:
            count += 1
            product *= self.rng.random()
        return count


def queue_member(
    queue: str,
    extension: str,
    name: str,
    *,
    status: int = 1,
    in_call: bool = False,
    paused: str = "",
    last_call: int = 0,
    wrapup: int = 0,
) -> list[tuple[str, str]]:
    location = f"Local/{extension}@agents/n"
    return queue_member_item(
        MemberView(
            queue=queue,
            name=name,
            interface=location,
            state_interface=location,
            membership="static",
            penalty=0,
            calls_taken=12,
            last_call=last_call,
            last_pause=0,
            login_time=int(NOW.timestamp()) - 20000,
            in_call=in_call,
            status=status,
            paused=bool(paused),
            paused_reason=paused,
            ringinuse=False,
            wrapuptime=wrapup,
        )
    )


def agents() -> list[list[tuple[str, str]]]:
    now = int(NOW.timestamp())
    return [
        queue_member("sales", "101", "Anna Sidorova"),
        queue_member("support", "102", "Boris Orlov", status=2, in_call=True),
        queue_member("support", "103", "Vera Gromova", paused="Lunch"),
        queue_member("support", "104", "Pavel Zaitsev", last_call=now - 20, wrapup=60),
        queue_member("sales", "105", "Irina Belova", status=2, in_call=True),
        queue_member("support", "105", "Irina Belova", status=2, in_call=True),
        queue_member("support", "106", "Oleg Frolov"),
    ]


async def make(out: Path, lang: str, width: int) -> None:
    redis_server = EmbeddedRedis()
    url = await redis_server.start_async()
    folder = tempfile.TemporaryDirectory(prefix="callback-dialer-shot-")
    pbx = await AmiServer(secret="shot").start()
    members = agents()
    pbx.on_action(
        "QueueStatus",
        lambda session, message: session.write(
            pbx.list_response("queuestatus", message.get("ActionID"), members)
        ),
    )
    config = parse_config(
        {
            "redis": {"url": url, "key_prefix": "screenshot"},
            "ami": {"port": pbx.port, "secret": "shot"},
            "web": {
                "auth": "users",
                "language": lang,
                "host": "127.0.0.1",
                "port": 0,
                "users": [
                    {
                        "name": USER,
                        "role": "supervisor",
                        "password_hash": hash_password(PASSWORD, n=2**10),
                    }
                ],
            },
            "reports": {"folder": folder.name},
            "logging": {"level": "warning"},
        },
        "screenshot",
    )
    start = (NOW - dt.timedelta(days=DAYS_BEFORE)).replace(hour=0, minute=0)
    clock = ManualClock(start.timestamp())
    dialer = build_dialer(config, clock=clock, spool=Path(folder.name) / "spool.jsonl", web=True)
    server = dialer.web
    assert server is not None
    try:
        day = Day(dialer.queue, clock, random.Random(20261124))
        for offset in range(DAYS_BEFORE, -1, -1):
            midnight = (NOW - dt.timedelta(days=offset)).replace(hour=0, minute=0)
            end = NOW if offset == 0 else midnight + dt.timedelta(days=1)
            await day.run(midnight.timestamp() + 8 * 3600, end.timestamp())
        yesterday = (NOW - dt.timedelta(days=1)).date().isoformat()
        await asyncio.to_thread(generate_report, config, yesterday)
        await dialer.start()
        await asyncio.wait_for(server.started.wait(), 10)
        for _ in range(100):
            if dialer.ami.authenticated and dialer.pipeline.agents.agents:
                break
            await asyncio.sleep(0.05)
        await shoot(server.url, out, lang, width)
    finally:
        for callback_id in list(dialer.dispatcher.inflight):
            dialer.dispatcher.abort(callback_id, "screenshot taken")
        await dialer.stop()
        await pbx.stop()
        redis_server.stop()
        folder.cleanup()


async def shoot(url: str, out: Path, lang: str, width: int) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(
            viewport={"width": width, "height": 900}, device_scale_factor=1
        )
        await page.goto(url)
        await page.fill("input[name=user]", USER)
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_selector("#waiting-body tr[data-id]")
        if lang != "en":
            await page.click(f"button[data-lang={lang}]")
        await page.wait_for_selector("#in-progress-body tr[data-id]")
        await page.wait_for_selector("#today-tiles .tile")
        await page.wait_for_selector("#reports-body a")
        await page.wait_for_function(
            "() => [...document.querySelectorAll('#today-stats img')].every("
            "i => i.complete && i.naturalWidth > 0)"
        )
        # The other-day section is left empty: it repeats today's layout.
        await page.evaluate("document.getElementById('day-section').hidden = true")
        out.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(out), full_page=True)
        await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshot.png")
    parser.add_argument("--lang", choices=("en", "ru"), default="en")
    parser.add_argument("--width", type=int, default=1360)
    args = parser.parse_args()
    asyncio.run(make(args.out, args.lang, args.width))
    print(args.out)


if __name__ == "__main__":
    main()
