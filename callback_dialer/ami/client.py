"""The one long-lived AMI connection: panoramisk, with its faults fixed or contained.

panoramisk 1.4 gives us the protocol's action bookkeeping (ActionIDs, futures, collecting the
events of a list response). Measured against a long-lived daemon's needs it has eleven faults
(../shared/notes/stack-findings.md); each is handled here, and tests/test_ami_faults.py has a
test per fault:

 1. Originate without ``Async`` broke the protocol (KeyError 'async')
      -> ``originate`` always sends ``Async: true`` and asks for the acknowledgement only.
 2. An exception in an event handler dropped the connection and the rest of the read
      -> events go through our router, which isolates every handler.
 3. No dead-connection detection
      -> a watchdog pings and aborts the transport when nothing came back in time.
 4. A wrong password looped silently, futures never resolved
      -> the login response is checked; refusal is logged as an error and retried with backoff.
 5. ``close()`` did not stop a pending reconnect
      -> one reconnect loop of ours, which ``close`` ends.
 6. ``connect()`` raised and scheduled its own retry (connections multiplied)
      -> panoramisk's connect/reconnect is never used; we open the transport ourselves.
 7. ``authenticated`` stayed True while disconnected
      -> ``authenticated`` is true only while connected and logged in.
 8. Actions re-sent after a reconnect (an Originate dialled twice); futures never resolved
      -> nothing is ever re-sent; pending actions fail with AmiNotConnected when the link
         drops (an Originate with OriginateFateUnknown); every action has a timeout.
 9. A UTF-8 character split across two reads was dropped
      -> incremental decoding (frames.FrameDecoder).
10. ``ChanVariable`` was a string once, a list when repeated
      -> AmiMessage.getall / chanvars always give all values.
11. ``send_action(Originate)`` swallowed the OriginateResponse; every reply looked successful
      -> Originate waits for the acknowledgement only (OriginateResponse reaches the
         handlers), and every reply's ``Response`` is checked.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from panoramisk.actions import Action
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.manager import Manager
from panoramisk.message import Message

from ..clock import Clock, RealClock
from ..config import AmiConfig
from ..logs import get_logger
from ..tasks import TaskSet
from .frames import AmiMessage
from .router import EventRouter
from .stream import AmiStream

log = get_logger(__name__)

SUCCESS = ("Success", "Follows", "Goodbye")


class AmiError(Exception):
    pass


class AmiNotConnected(AmiError):
    """No logged-in connection: nothing was sent."""


class AmiConnectionLost(AmiNotConnected):
    """The link dropped while an action waited for its response: it may have been executed."""


class AmiActionTimeout(AmiError):
    pass


class AmiActionFailed(AmiError):
    """Asterisk answered ``Response: Error`` (the message says why)."""


class AmiLoginRefused(AmiError):
    pass


class OriginateFateUnknown(AmiError):
    """The Originate went out but the link dropped (or went silent) before Asterisk
    acknowledged it: the call may or may not exist. Never re-send blindly; reconcile."""


Recorder = Callable[[str, str], None]  # (direction "in"/"out", text)
ReadyHook = Callable[[], Awaitable[None]]


class _Manager(Manager):
    """panoramisk's Manager as a holder of config and action bookkeeping only: its own
    connect, reconnect, ping and re-sending of actions are switched off (faults 5, 6, 8)."""

    def __init__(self, client: AmiClient, **config: Any) -> None:
        super().__init__(**config)
        self.client = client
        # Nothing is re-sent after a reconnect, an Originate least of all (fault 8).
        self.forgetable_actions = ("ping", "login", "originate", "logoff")
        self.callbacks.clear()
        self.patterns.clear()

    def connection_lost(self, exc: Any) -> None:
        self._connected = False
        self.client._on_connection_lost(exc)

    def dispatch(self, event: Any) -> list[str]:
        return []

    def ping(self) -> None:  # pragma: no cover - our watchdog pings
        return None


class _Protocol(AMIProtocol):
    def __init__(self, client: AmiClient) -> None:
        super().__init__()
        self.client = client

    def data_received(self, data: bytes) -> None:
        client = self.client
        client._last_rx = asyncio.get_running_loop().time()
        try:
            client.stream.feed(data, client.clock.now())
        except Exception:  # never let a read kill the link
            log.exception("AMI read could not be processed")

    def close(self) -> None:
        # panoramisk would queue unanswered actions for re-sending; we fail them instead.
        for key in list(self.responses):
            action = self.responses.pop(key)
            if not action.future.done():
                action.future.set_exception(AmiConnectionLost("AMI connection lost"))
        if not self.closed:
            try:
                self.transport.close()
            finally:
                self.closed = True


class AmiClient:
    """Connect, log in, keep alive, reconnect forever with capped backoff, resync, close."""

    def __init__(
        self,
        config: AmiConfig,
        router: EventRouter,
        clock: Clock | None = None,
        *,
        name: str = "dialer",
    ) -> None:
        self.config = config
        self.router = router
        self.clock = clock or RealClock()
        self.stream = AmiStream(router, on_response=self._on_message)
        self._recorder: Recorder | None = None
        self._manager = _Manager(
            self, host=config.host, port=config.port, encoding="utf8", events="on"
        )
        self._protocol: _Protocol | None = None
        self._connected = False
        self._logged_in = False
        self._closing = False
        self._lost = asyncio.Event()
        self._booted = asyncio.Event()
        self._wake = asyncio.Event()
        self._last_rx = 0.0
        self._ids = itertools.count(1)
        self._name = name
        self._ready_hooks: list[tuple[str, ReadyHook]] = []
        self._lost_hooks: list[Callable[[], None]] = []
        self._tasks = TaskSet("ami")
        self.attempts = 0
        self.sessions = 0
        self.last_error = "not connected yet"
        self.login_refused = False

    # ------------------------------------------------------------------ state

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def authenticated(self) -> bool:
        # Fault 7: only while the link is up and the login was accepted.
        return self._connected and self._logged_in

    def on_ready(self, name: str, hook: ReadyHook) -> None:
        """Run ``hook`` after every successful login (in registration order): resync."""
        self._ready_hooks.append((name, hook))

    def on_lost(self, hook: Callable[[], None]) -> None:
        self._lost_hooks.append(hook)

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Keep a session up until ``close()``; Asterisk being down is never fatal."""
        delay = self.config.reconnect_min_delay
        while not self._closing:
            self.attempts += 1
            try:
                await self._session()  # returns when an established session is lost
                delay = self.config.reconnect_min_delay
            except AmiLoginRefused as exc:
                self.login_refused = True
                self.last_error = f"login refused for user {self.config.username!r}: {exc}"
                log.error(
                    "AMI login refused: check ami.username / ami.secret and the user's "
                    "permit/deny in manager.conf",
                    user=self.config.username,
                    asterisk_says=str(exc),
                    retry_in=delay,
                )
            except (TimeoutError, OSError, AmiError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                log.warning(
                    "AMI connection attempt failed",
                    host=self.config.host,
                    port=self.config.port,
                    attempt=self.attempts,
                    error=self.last_error,
                    retry_in=delay,
                )
            finally:
                self._drop_transport()
            if self._closing:
                break
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except TimeoutError:
                pass
            delay = min(delay * 2, self.config.reconnect_max_delay)

    async def _session(self) -> None:
        loop = asyncio.get_running_loop()
        self._lost = asyncio.Event()
        self._booted = asyncio.Event()
        self.stream.reset()
        _, protocol = await asyncio.wait_for(
            loop.create_connection(lambda: _Protocol(self), self.config.host, self.config.port),
            timeout=self.config.connect_timeout,
        )
        self._attach(protocol)
        self._connected = True
        self._last_rx = loop.time()
        response = await self._send(
            {
                "Action": "Login",
                "Username": self.config.username,
                "Secret": self.config.secret,
                "Events": "on",
            },
            timeout=self.config.action_timeout,
            check=False,
            when_logged_out=True,
        )
        if response.get("Response") != "Success":
            raise AmiLoginRefused(response.get("Message") or "no reason given")
        self._logged_in = True
        self.login_refused = False
        self.sessions += 1
        self.last_error = ""
        try:
            await asyncio.wait_for(self._booted.wait(), timeout=self.config.fully_booted_timeout)
        except TimeoutError:
            log.warning("no FullyBooted after login; going on")
        log.info(
            "AMI connected", host=self.config.host, port=self.config.port, session=self.sessions
        )
        watchdog = self._spawn(self._watchdog(), "ami-watchdog")
        self._spawn(self._run_ready_hooks(), "ami-resync")
        try:
            await self._lost.wait()
        finally:
            watchdog.cancel()

    def _attach(self, protocol: _Protocol) -> None:
        # What panoramisk's Manager.connection_made would set up, minus its login and pinger.
        protocol.queue = deque()
        protocol.factory = self._manager
        protocol.log = log
        protocol.config = self._manager.config
        protocol.encoding = "utf8"
        protocol.responses = {}
        self._manager.protocol = protocol
        self._protocol = protocol

    async def _run_ready_hooks(self) -> None:
        for name, hook in self._ready_hooks:
            if not self.authenticated:
                return
            try:
                await hook()
            except AmiError as exc:
                log.warning("resync step failed", step=name, error=str(exc))
            except Exception:
                log.exception("resync step crashed", step=name)

    async def _watchdog(self) -> None:
        """Fault 3: ping, and abort a link that stays silent past ping_interval + ping_timeout."""
        loop = asyncio.get_running_loop()
        interval, grace = self.config.ping_interval, self.config.ping_timeout
        while self.authenticated:
            await asyncio.sleep(min(interval, grace) / 2 if interval > grace else interval / 2)
            silent = loop.time() - self._last_rx
            if silent > interval + grace:
                log.warning(
                    "AMI link silent; dropping it to reconnect", silent_seconds=round(silent, 1)
                )
                self.last_error = f"no data for {silent:.1f}s"
                if self._protocol is not None:
                    self._protocol.transport.abort()
                return
            if silent >= interval:
                self._spawn(self._ping(), "ami-ping")

    async def _ping(self) -> None:
        try:
            await self.send_action({"Action": "Ping"}, timeout=self.config.ping_timeout)
        except AmiError:
            pass  # the watchdog judges by silence, not by one ping

    def _on_connection_lost(self, exc: Any) -> None:
        was_up = self._logged_in
        self._connected = False
        self._logged_in = False
        if self._protocol is not None:
            self._protocol.close()
        self._lost.set()
        if was_up and not self._closing:
            log.warning("AMI connection lost", error=str(exc) if exc else "closed by peer")
        for hook in self._lost_hooks:
            try:
                hook()
            except Exception:
                log.exception("connection-lost hook failed")

    def _drop_transport(self) -> None:
        protocol, self._protocol = self._protocol, None
        self._connected = False
        self._logged_in = False
        if protocol is not None and not protocol.closed:
            protocol.close()

    def _on_message(self, message: AmiMessage) -> bool:
        """Responses (and list events) of our own actions go to panoramisk's bookkeeping."""
        if message.fields.get("Event") == "FullyBooted":
            self._booted.set()
        protocol = self._protocol
        action_id = message.fields.get("ActionID")
        if protocol is None or not action_id or action_id not in protocol.responses:
            return False
        protocol.handle_message(Message(message.to_dict()))
        # A list action's events (QueueMember, CoreShowChannel, ...) also reach the handlers.
        return "Event" not in message.fields

    # ------------------------------------------------------------------ actions

    def _next_id(self, kind: str) -> str:
        return f"{self._name}-{kind}-{next(self._ids)}"

    async def _send(
        self,
        fields: dict[str, Any],
        *,
        timeout: float | None = None,
        as_list: bool | None = None,
        check: bool = True,
        when_logged_out: bool = False,
    ) -> Any:
        protocol = self._protocol
        if protocol is None or not self._connected or (not when_logged_out and not self._logged_in):
            raise AmiNotConnected("not connected to Asterisk")
        fields = dict(fields)
        fields.setdefault("ActionID", self._next_id(str(fields.get("Action", "x")).lower()))
        action = Action(fields, as_list=as_list)
        future = protocol.send(action, as_list=as_list)
        if self.recorder is not None:
            self.recorder("out", str(action))
        try:
            result = await asyncio.wait_for(
                asyncio.shield(future), timeout or self.config.action_timeout
            )
        except TimeoutError:
            protocol.responses.pop(action.id, None)
            raise AmiActionTimeout(f"no response to {fields.get('Action')} in time") from None
        if check:
            first = result[0] if isinstance(result, list) else result
            if first.get("Response") not in SUCCESS:
                raise AmiActionFailed(
                    first.get("Message") or "Response: " + str(first.get("Response"))
                )
        return result

    async def send_action(
        self, fields: dict[str, Any], *, timeout: float | None = None, as_list: bool | None = None
    ) -> Any:
        """Send an action; the reply (or, for list actions, all of it) once it is complete.
        Raises AmiNotConnected, AmiActionTimeout, or AmiActionFailed (``Response: Error``)."""
        return await self._send(fields, timeout=timeout, as_list=as_list)

    async def send_list(
        self, fields: dict[str, Any], *, timeout: float | None = None
    ) -> list[AmiMessage]:
        """Send a list action (QueueStatus, CoreShowChannels, Status, ...) and return its items
        (the events between the acknowledgement and the ``...Complete`` event) as our
        messages. Raises as ``send_action`` does."""
        result = await self._send(fields, timeout=timeout)
        items = result if isinstance(result, list) else [result]
        out = []
        for item in items:
            pairs: list[tuple[str, str]] = []
            for key, value in dict(item.items()).items():
                values = value if isinstance(value, list) else [value]
                pairs.extend((str(key), str(v)) for v in values)
            message = AmiMessage.from_pairs(pairs)
            if message.event and message.get("EventList") != "Complete":
                out.append(message)
        return out

    async def originate(self, fields: dict[str, Any], *, timeout: float | None = None) -> str:
        """Send an Originate at most once; its ActionID once Asterisk has queued it.

        The outcome arrives later as an ``OriginateResponse`` event with this ActionID.
        AmiNotConnected: nothing was sent. AmiActionFailed: Asterisk refused it.
        OriginateFateUnknown: it went out but no acknowledgement came back.
        """
        fields = dict(fields)
        fields["Action"] = "Originate"
        fields["Async"] = "true"  # fault 1
        fields.setdefault("ActionID", self._next_id("originate"))
        try:
            await self._send(fields, timeout=timeout, as_list=False)  # fault 11
        except (AmiActionTimeout, AmiConnectionLost) as exc:
            raise OriginateFateUnknown(str(exc)) from None
        return str(fields["ActionID"])

    # ------------------------------------------------------------------ closing

    async def close(self) -> None:
        """Log off and stop; no reconnect happens after this (fault 5)."""
        self._closing = True
        self._wake.set()
        if self.authenticated:
            try:
                await self._send({"Action": "Logoff"}, timeout=2, check=False)
            except AmiError:
                pass
        self._drop_transport()
        self._lost.set()
        await self._tasks.cancel_all()

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        return self._tasks.spawn(coro, name)

    # ------------------------------------------------------------------ recording

    @property
    def recorder(self) -> Recorder | None:
        """Given every message as it crossed the wire: ``("in", raw)`` for what Asterisk sent
        (the greeting line, then each frame, framed by the decoder the handlers use), and
        ``("out", raw)`` for each action sent."""
        return self._recorder

    @recorder.setter
    def recorder(self, recorder: Recorder | None) -> None:
        self._recorder = recorder
        self.stream.on_raw = None if recorder is None else functools.partial(recorder, "in")
