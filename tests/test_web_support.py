"""Helpers for the status page tests (no tests here): a dialer with its web application on a
real port, users with their own cookie jars, a PBX peer that lists agents, a seeded day."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis
from aiohttp.test_utils import TestServer
from simpbx.amiserver import AmiServer, AmiSession
from simpbx.wire import MemberView, queue_member_item

from callback_dialer.app import Dialer, build_dialer
from callback_dialer.clock import Clock, ManualClock
from callback_dialer.config import Config
from callback_dialer.queue.keys import Keys
from callback_dialer.queue.models import Attempt, Source, Stage
from callback_dialer.queue.store import CallbackQueue
from callback_dialer.web.auth import hash_password
from callback_dialer.web.ports import Commands, SessionStore, StatusSource
from callback_dialer.web.server import WebApp

PASSWORDS = {"alice": "alice-password-1", "victor": "victor-password-1"}
HOSTILE_NAMES = ("<script>alert(1)</script>", '"><img src=x onerror=alert(2)>')

# Numbers of the seeded day (all valid Russian mobile numbers).
NEW = "+79161230001"
SUPPORT = "+79161230002"
RETRY = "+79161230003"
DONE = "+79161230004"
FAILED = "+79161230005"
SERVED = "+79161230006"
CANCELLED = "+79161230007"


@functools.cache
def _hash(user: str) -> str:
    # Cheap scrypt parameters: these tests check who may do what, not the hash's strength.
    return hash_password(PASSWORDS[user], n=2**10)


def web_users() -> list[dict[str, str]]:
    return [
        {"name": "alice", "role": "supervisor", "password_hash": _hash("alice")},
        {"name": "victor", "role": "viewer", "password_hash": _hash("victor")},
    ]


def users_config(make_config: Callable[..., Config], tmp_path: Path, **sections: Any) -> Config:
    web = {
        "auth": "users",
        "users": web_users(),
        "session_secret": "test-secret",
        **sections.pop("web", {}),
    }
    reports = {"folder": str(tmp_path / "reports"), **sections.pop("reports", {})}
    return make_config(web=web, reports=reports, **sections)


# --------------------------------------------------------------------------- a PBX peer


def queue_member(
    queue: str,
    extension: str,
    *,
    paused: bool = False,
    reason: str = "",
    status: int = 1,
    in_call: bool = False,
) -> list[tuple[str, str]]:
    """A QueueMember item as Asterisk 22 sends it (the simulator's wire format)."""
    location = f"Local/{extension}@agents/n"
    return queue_member_item(
        MemberView(
            queue=queue,
            name=f"Agent {extension}",
            interface=location,
            state_interface=location,
            membership="static",
            penalty=0,
            calls_taken=0,
            last_call=0,
            last_pause=0,
            login_time=1795345778,
            in_call=in_call,
            status=status,
            paused=paused,
            paused_reason=reason if paused else "",
            ringinuse=False,
            wrapuptime=0,
        )
    )


async def start_pbx(members: list[list[tuple[str, str]]]) -> AmiServer:
    """An AMI peer over TCP whose QueueStatus lists ``members``."""
    server = await AmiServer(secret="s3cret").start()

    def queue_status(session: AmiSession, message: Any) -> None:
        session.write(server.list_response("queuestatus", message.get("ActionID"), members))

    server.on_action("QueueStatus", queue_status)
    return server


def ami_section(server: AmiServer) -> dict[str, Any]:
    return {
        "port": server.port,
        "secret": "s3cret",
        "reconnect_min_delay": 0.05,
        "reconnect_max_delay": 0.2,
        "ping_interval": 2,
        "ping_timeout": 2,
        "action_timeout": 2,
    }


# --------------------------------------------------------------------------- a cuttable link


class Link:
    """A TCP relay between a browser and the server whose wire can be cut: ``down()`` drops
    every connection and refuses new ones, ``up()`` lets them through again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.is_up = True
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> Link:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.is_up:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    def down(self) -> None:
        self.is_up = False
        for writer in list(self._writers):
            writer.transport.abort()

    def up(self) -> None:
        self.is_up = True

    async def stop(self) -> None:
        self.down()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


# --------------------------------------------------------------------------- users


@dataclass
class Answer:
    status: int
    headers: Any
    text: str
    cookies: dict[str, Any] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.text)


class User:
    """One browser or API client: its own cookies, its CSRF token once it asked for it."""

    def __init__(self, base: str, name: str = "", address: str = "") -> None:
        self.base = base
        self.name = name
        # ``address``: connect from it (any of 127.0.0.0/8 is this machine), as another host.
        connector = aiohttp.TCPConnector(local_addr=(address, 0)) if address else None
        self.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), connector=connector
        )
        self.csrf = ""

    async def close(self) -> None:
        await self.http.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        csrf: bool = True,
    ) -> Answer:
        sent = dict(headers or {})
        if method != "GET" and csrf and self.csrf and "X-CSRF-Token" not in sent:
            sent["X-CSRF-Token"] = self.csrf
        kwargs: dict[str, Any] = {"headers": sent, "allow_redirects": False}
        if json_body is not None:
            kwargs["json"] = json_body
        if data is not None:
            kwargs["data"] = data
        async with self.http.request(method, self.base + path, **kwargs) as response:
            return Answer(
                response.status, response.headers, await response.text(), dict(response.cookies)
            )

    async def get(self, path: str, **kw: Any) -> Answer:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Answer:
        return await self.request("POST", path, json_body=body, **kw)

    async def login(self, password: str | None = None) -> Answer:
        answer = await self.post(
            "/login", {"user": self.name, "password": password or PASSWORDS[self.name]}
        )
        if answer.status == 200:
            self.csrf = answer.json()["csrf_token"]
        return answer

    async def fetch_csrf(self) -> str:
        answer = await self.get("/api/session")
        assert answer.status == 200, answer.text
        self.csrf = answer.json()["csrf_token"]
        return self.csrf


# --------------------------------------------------------------------------- the interfaces


def protocol_members(protocol: type) -> set[str]:
    return {name for name in vars(protocol) if not name.startswith("_")}


class Narrow:
    """``target`` seen through ``protocol`` alone. Built only when ``target`` offers every
    member with the protocol's parameters; afterwards anything else the web reaches for is an
    AttributeError naming it. The rig serves the page through three of these, so every web
    test proves the page needs nothing but ``StatusSource``, ``Commands`` and
    ``SessionStore``."""

    def __init__(self, target: Any, protocol: type) -> None:
        members = protocol_members(protocol)
        for name in sorted(members):
            assert hasattr(target, name), (
                f"{type(target).__name__} lacks {protocol.__name__}.{name}"
            )
            wanted = list(inspect.signature(getattr(protocol, name)).parameters.values())[1:]
            offered = list(inspect.signature(getattr(target, name)).parameters.values())
            assert [(p.name, p.kind) for p in offered] == [(p.name, p.kind) for p in wanted], (
                f"{type(target).__name__}.{name} does not take what {protocol.__name__} says"
            )
        self._target = target
        self._protocol = protocol
        self._members = members

    def __getattr__(self, name: str) -> Any:
        if name not in self._members:
            raise AttributeError(
                f"{self._protocol.__name__} has no {name!r}; the web may not use it"
            )
        return getattr(self._target, name)


# --------------------------------------------------------------------------- the rig


class WebRig:
    def __init__(
        self, dialer: Dialer, server: TestServer, app: WebApp, pbx: AmiServer | None
    ) -> None:
        self.dialer = dialer
        self.server = server
        self.web = app
        self.pbx = pbx
        self.queue: CallbackQueue = dialer.queue
        self.config = dialer.config
        self.users: list[User] = []
        self.started = False

    async def start(self) -> None:
        """Start the dialer (AMI, dispatching) and wait until it knows the PBX's agents."""
        await self.dialer.start()
        self.started = True
        if self.pbx is not None:
            deadline = time.monotonic() + 5
            while not (self.dialer.ami.authenticated and self.dialer.pipeline.agents.agents):
                assert time.monotonic() < deadline, "the dialer did not log in to the PBX"
                await asyncio.sleep(0.02)

    @property
    def base(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    def user(self, name: str = "", address: str = "") -> User:
        user = User(self.base, name, address)
        self.users.append(user)
        return user

    async def signed_in(self, name: str) -> User:
        user = self.user(name)
        if self.config.web.auth == "users":
            answer = await user.login()
            assert answer.status == 200, answer.text
        else:
            await user.fetch_csrf()
        return user

    def redis_dump(self) -> dict[bytes, Any]:
        """Every key of this test's queue with its value: equal dumps, nothing changed."""
        client = redis.Redis.from_url(self.config.redis.url)
        try:
            out = {}
            keys = Keys(self.config.redis.key_prefix)
            # The leader lease is renewed on a timer, whatever the page does: not queue state.
            lease = keys.leader().encode()
            for key in sorted(client.scan_iter(match=keys.pattern(), count=1000)):
                if key != lease:
                    out[key] = client.dump(key)
            return out
        finally:
            client.close()


@contextlib.asynccontextmanager
async def web_rig(
    config: Config,
    *,
    clock: Clock | None = None,
    redis_url: str | None = None,
    spool: Path,
    pbx: AmiServer | None = None,
    start: bool = False,
) -> AsyncIterator[WebRig]:
    dialer = build_dialer(
        config, clock=clock or ManualClock(), redis_url=redis_url or config.redis.url, spool=spool
    )
    app = WebApp(
        config,
        Narrow(dialer.status, StatusSource),
        Narrow(dialer.commands, Commands),
        Narrow(dialer.sessions, SessionStore),
    )
    server = TestServer(app.build(), host="127.0.0.1")
    await server.start_server()
    rig = WebRig(dialer, server, app, pbx)
    if start:
        await rig.start()
    try:
        yield rig
    finally:
        for user in rig.users:
            await user.close()
        await server.close()
        # The peer never ends a call by itself: let attempts go instead of the drain wait.
        for callback_id in list(dialer.dispatcher.inflight):
            dialer.dispatcher.abort(callback_id, "test over")
        await dialer.stop()
        if pbx is not None:
            await pbx.stop()


# --------------------------------------------------------------------------- a seeded day


async def missed(
    queue: CallbackQueue,
    number: str,
    category: str,
    ago: float,
    *,
    name: str = "",
    source: Source = Source.ABANDON,
) -> str:
    result = await queue.add_missed(
        number=number,
        category=category,
        source=source,
        missed_at=queue.clock.now() - ago,
        name=name,
        call_id=f"call-{number}-{ago}-{queue.clock.now()}",
    )
    return result.id


async def dial(
    queue: CallbackQueue, clock: ManualClock, number: str, category: str, after: float
) -> Any:
    """Claim the callback of ``number`` and ring the customer ``after`` seconds later."""
    await clock.advance(after)
    claim = await queue.claim(
        [category], claimer="test", agent="Local/101@agents/n", exclude_numbers=[]
    )
    assert claim is not None and claim.callback.number == number, claim
    await queue.renew(claim, stage=Stage.RINGING_CUSTOMER, agent="Local/101@agents/n")
    return claim


async def seed_day(queue: CallbackQueue, clock: ManualClock) -> dict[str, str]:
    """A small day: one callback of every fate. Returns their ids by name."""
    ids: dict[str, str] = {}
    ids["done"] = await missed(queue, DONE, "billing", 0, name="Olga")
    claim = await dial(queue, clock, DONE, "billing", 300)
    await clock.advance(60)
    await queue.complete(
        claim,
        Attempt(at=clock.now(), agent="Local/101@agents/n", outcome="answered", talk_seconds=60),
    )
    ids["failed"] = await missed(queue, FAILED, "billing", 0)
    claim = await dial(queue, clock, FAILED, "billing", 1200)
    await queue.fail(
        claim, "no_answer", Attempt(at=clock.now(), agent="Local/101@agents/n", outcome="no_answer")
    )
    ids["served"] = await missed(queue, SERVED, "support", 0, source=Source.IVR_HANGUP)
    await clock.advance(60)
    await queue.resolve_number(SERVED)
    ids["cancelled"] = await missed(queue, CANCELLED, "other", 0)
    await queue.cancel(ids["cancelled"], "asked by email", actor="web:alice")
    ids["retry"] = await missed(queue, RETRY, "support", 0)
    claim = await dial(queue, clock, RETRY, "support", 30)
    await queue.retry(claim, Attempt(at=clock.now(), agent="Local/101@agents/n", outcome="busy"))
    ids["support"] = await missed(queue, SUPPORT, "support", 600, name="Pyotr")
    ids["new"] = await missed(
        queue, NEW, "new_connection", 120, name="Ivan", source=Source.EXPLICIT
    )
    return ids
