"""An AMI server that speaks the wire format of the recorded Asterisk 22 traffic.

Tests use it as a live peer (login, originate, reconnect, a link that dies or goes silent); the
PBX simulator builds on it. Replies are byte-for-byte what ``../shared/ami-captures`` shows:
the greeting line, ``Response``/``ActionID``/``Message`` order, list responses ending in a
``...Complete`` event, ``Response: Goodbye`` on logoff.

A capture can be played through it (``play_capture``): its recorded events go out on their
recorded schedule, and when the client sends an action the capture also contains (QueueStatus,
say), the recorded answer is sent with the client's ActionID.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from callback_dialer.ami.frames import AmiMessage, FrameDecoder, encode_message

GREETING = "Asterisk Call Manager/11.0.0\r\n"

Pairs = list[tuple[str, str]]
ActionHandler = Callable[["AmiSession", AmiMessage], Awaitable[None] | None]
ActionTap = Callable[[int, AmiMessage], None]


def response(action_id: str, message: str, status: str = "Success", **extra: str) -> bytes:
    pairs: Pairs = [("Response", status), ("ActionID", action_id)]
    pairs += [(k, v) for k, v in extra.items()]
    if message:
        pairs.append(("Message", message))
    return encode_message(pairs)


def fully_booted(uptime: int = 150) -> bytes:
    return encode_message(
        [
            ("Event", "FullyBooted"),
            ("Privilege", "system,all"),
            ("Uptime", str(uptime)),
            ("LastReload", str(uptime)),
            ("Status", "Fully Booted"),
        ]
    )


class AmiSession:
    def __init__(
        self,
        server: AmiServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        index: int,
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.index = index
        self.logged_in = False
        self.events_on = True
        self.closed = False
        self.decoder = FrameDecoder()

    def write(self, data: bytes) -> None:
        if self.closed or self.writer.is_closing():
            return
        chunk = self.server.split_writes
        if chunk:
            # Deliberately cut writes (a UTF-8 character split across TCP reads).
            for i in range(0, len(data), chunk):
                self.writer.write(data[i : i + chunk])
        else:
            self.writer.write(data)

    async def drain(self) -> None:
        if not self.closed and not self.writer.is_closing():
            try:
                await self.writer.drain()
            except ConnectionError:
                self.closed = True

    def abort(self) -> None:
        """Drop the TCP connection without a goodbye (a crash, a cable pulled)."""
        self.closed = True
        transport = self.writer.transport
        transport.abort()

    async def run(self) -> None:
        self.write(self.server.greeting.encode())
        try:
            while not self.closed:
                data = await self.reader.read(65536)
                if not data:
                    break
                for message in self.decoder.feed(data):
                    await self.server._handle(self, message)
                await self.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.closed = True
            if not self.writer.is_closing():
                self.writer.close()


class AmiServer:
    def __init__(
        self,
        *,
        username: str = "dialer",
        secret: str = "secret",
        host: str = "127.0.0.1",
        port: int = 0,
        login_failure_delay: float = 0.05,
        greeting: str = GREETING,
    ) -> None:
        # Asterisk 22 says "Asterisk Call Manager/11.0.0", 20 "…/9.0.0" (the AMI version).
        self.greeting = greeting
        self.username = username
        self.secret = secret
        self.host = host
        self.port = port
        self.login_failure_delay = login_failure_delay
        self.sessions: list[AmiSession] = []
        self.actions: list[tuple[int, AmiMessage]] = []  # (session index, action)
        self.handlers: dict[str, ActionHandler] = {}
        # See every action as it arrives (session index, action): recorders.
        self.action_taps: list[ActionTap] = []
        self.connections = 0
        self.logins = 0
        self.silent = False  # read but never answer (a hung Asterisk)
        self.split_writes = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._uptime_origin = time.monotonic()
        self._capture_answers: dict[str, list[bytes]] = {}
        self._logged_in_waiters: list[asyncio.Future[None]] = []

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> AmiServer:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop_listening(self) -> None:
        """Refuse new connections (Asterisk down); existing sessions are dropped."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.drop_all()

    async def stop(self) -> None:
        await self.stop_listening()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> AmiServer:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        session = AmiSession(self, reader, writer, len(self.sessions))
        self.sessions.append(session)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await session.run()
        finally:
            if task is not None:
                self._tasks.discard(task)

    # ------------------------------------------------------------------ sending

    @property
    def live_sessions(self) -> list[AmiSession]:
        return [s for s in self.sessions if s.logged_in and not s.closed]

    def drop_all(self) -> None:
        for session in self.sessions:
            if not session.closed:
                session.abort()

    async def wait_logged_in(self, count: int = 1, timeout: float = 5.0) -> None:
        """Until ``count`` logins have happened in all."""
        deadline = time.monotonic() + timeout
        while self.logins < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.logins} logins, wanted {count}")
            await asyncio.sleep(0.005)

    async def wait_action(self, name: str, count: int = 1, timeout: float = 5.0) -> AmiMessage:
        deadline = time.monotonic() + timeout
        while True:
            found = [m for _, m in self.actions if m.get("Action").lower() == name.lower()]
            if len(found) >= count:
                return found[count - 1]
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(found)} {name} actions, wanted {count}")
            await asyncio.sleep(0.005)

    def actions_named(self, name: str) -> list[AmiMessage]:
        return [m for _, m in self.actions if m.get("Action").lower() == name.lower()]

    async def send_raw(self, data: bytes) -> None:
        for session in self.live_sessions:
            session.write(data)
            await session.drain()

    async def send_event(self, pairs: Pairs | dict[str, Any]) -> None:
        """Broadcast an event to every logged-in session with events on."""
        data = encode_message(pairs)
        for session in self.live_sessions:
            if session.events_on:
                session.write(data)
                await session.drain()

    def broadcast_nowait(self, data: bytes) -> None:
        """Write an encoded event to every logged-in session with events on, without waiting
        for the sockets: for a sender whose events must not interleave with anything else's
        (the PBX simulator emits whole sequences from synchronous code)."""
        for session in self.live_sessions:
            if session.events_on:
                session.write(data)

    async def send_events(self, events: Iterable[Pairs]) -> None:
        data = b"".join(encode_message(p) for p in events)
        for session in self.live_sessions:
            if session.events_on:
                session.write(data)
                await session.drain()

    def on_action(self, name: str, handler: ActionHandler) -> None:
        self.handlers[name.lower()] = handler

    # ------------------------------------------------------------------ actions

    async def _handle(self, session: AmiSession, message: AmiMessage) -> None:
        name = message.get("Action")
        action_id = message.get("ActionID")
        self.actions.append((session.index, message))
        for tap in self.action_taps:
            tap(session.index, message)
        if self.silent:
            return
        lname = name.lower()
        if lname == "login":
            await self._login(session, message)
            return
        if not session.logged_in:
            session.write(response(action_id, "Permission denied", status="Error"))
            return
        if lname == "logoff":
            session.write(response(action_id, "Thanks for all the fish.", status="Goodbye"))
            await session.drain()
            session.closed = True
            session.writer.close()
            return
        handler = self.handlers.get(lname)
        if handler is not None:
            result = handler(session, message)
            if asyncio.iscoroutine(result):
                await result
            return
        recorded = self._capture_answers.get(lname)
        if recorded is not None:
            session.write(
                b"".join(
                    f.replace(b"ActionID: @@ID@@", b"ActionID: " + action_id.encode())
                    for f in recorded
                )
            )
            return
        if lname == "ping":
            session.write(response(action_id, "", Ping="Pong", Timestamp=f"{time.time():.6f}"))
        elif lname == "originate":
            if not message.get("Channel"):
                session.write(response(action_id, "Channel not specified", status="Error"))
            else:
                session.write(response(action_id, "Originate successfully queued"))
        elif lname in ("queuestatus", "coreshowchannels", "status", "queuesummary"):
            session.write(self.list_response(lname, action_id, []))
        elif lname == "events":
            session.events_on = message.get("EventMask", "on").lower() != "off"
            session.write(response(action_id, "", Events="On" if session.events_on else "Off"))
        else:
            session.write(response(action_id, "Invalid/unknown command", status="Error"))

    async def _login(self, session: AmiSession, message: AmiMessage) -> None:
        action_id = message.get("ActionID")
        if message.get("Username") == self.username and message.get("Secret") == self.secret:
            session.logged_in = True
            session.events_on = message.get("Events", "on").lower() != "off"
            self.logins += 1
            session.write(response(action_id, "Authentication accepted"))
            uptime = int(time.monotonic() - self._uptime_origin) + 24
            session.write(fully_booted(uptime))
        else:
            # Asterisk refuses, waits a moment and hangs up.
            session.write(response(action_id, "Authentication failed", status="Error"))
            await session.drain()
            await asyncio.sleep(self.login_failure_delay)
            session.abort()

    _LIST_TEXT = {
        "queuestatus": ("Queue status will follow", "QueueStatusComplete"),
        "coreshowchannels": ("Channels will follow", "CoreShowChannelsComplete"),
        "status": ("Channel status will follow", "StatusComplete"),
        "queuesummary": ("Queue summary will follow", "QueueSummaryComplete"),
        "dbgettree": ("Result will follow", "DBGetTreeComplete"),
        "dbget": ("Result will follow", "DBGetComplete"),
    }

    def list_response(self, action: str, action_id: str, items: list[Pairs]) -> bytes:
        """A list action's reply: the start response, the items, the Complete event."""
        text, complete = self._LIST_TEXT[action]
        out = [
            encode_message(
                [
                    ("Response", "Success"),
                    ("ActionID", action_id),
                    ("EventList", "start"),
                    ("Message", text),
                ]
            )
        ]
        for item in items:
            out.append(encode_message([*item, ("ActionID", action_id)]))
        tail: Pairs = [
            ("Event", complete),
            ("ActionID", action_id),
            ("EventList", "Complete"),
            ("ListItems", str(len(items))),
        ]
        if action == "status":
            tail.append(("Items", str(len(items))))
        out.append(encode_message(tail))
        return b"".join(out)

    # ------------------------------------------------------------------ captures

    def load_capture_answers(self, path: Path) -> list[tuple[float, bytes]]:
        """Read a capture: remember its answers to the recorded client's actions (replayed for
        the same actions of our client) and return the rest, the PBX's own traffic, as
        (t, frame) in recorded order."""
        records = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]
        recorded_ids: dict[str, str] = {}
        for rec in records:
            if rec["dir"] == "out":
                m = FrameDecoder().feed(rec["raw"].encode())
                if m:
                    recorded_ids[m[0].get("ActionID")] = m[0].get("Action").lower()
        answers: dict[str, list[bytes]] = {}
        traffic: list[tuple[float, bytes]] = []
        for rec in records:
            if rec["dir"] != "in" or rec["raw"].startswith("Asterisk Call Manager/"):
                continue
            raw = rec["raw"]
            frames = FrameDecoder().feed(raw.encode())
            frame = frames[0] if frames else None
            if frame is not None and frame.get("Event") == "FullyBooted":
                continue  # sent by our own login handling
            action_id = frame.get("ActionID") if frame is not None else ""
            if action_id and action_id in recorded_ids:
                name = recorded_ids[action_id]
                if name in ("login", "logoff"):
                    continue
                answers.setdefault(name, []).append(
                    raw.replace(f"ActionID: {action_id}\r\n", "ActionID: @@ID@@\r\n").encode()
                )
                continue
            traffic.append((float(rec["t"]), raw.encode()))
        self._capture_answers.update(answers)
        return traffic

    async def play_capture(self, path: Path, speed: float | None = None) -> int:
        """Send a capture's PBX traffic to the logged-in sessions, on its recorded schedule
        divided by ``speed`` (None: as fast as possible). Returns frames sent."""
        traffic = self.load_capture_answers(path)
        start = time.monotonic()
        first_t = traffic[0][0] if traffic else 0.0
        for t, raw in traffic:
            if speed:
                delay = (t - first_t) / speed - (time.monotonic() - start)
                if delay > 0:
                    await asyncio.sleep(delay)
            await self.send_raw(raw)
        return len(traffic)
