"""The one long-lived AMI connection: panoramisk as the link, everything above it ours.

What panoramisk does here: its ``AMIProtocol`` is the connection, the asyncio protocol of the
TCP link (it takes the transport when the link opens and is told when it is lost). What we do
on top, because of the faults below: open the link and reconnect (one loop of ours), log in,
watch for silence, frame and parse every byte (``frames.FrameDecoder``, the one framer, for
recordings too), keep the one table of actions in flight (``pending.PendingActions``: ActionID
-> waiter, a list's items collected up to ``EventList: Complete``), and hand events to the
router. Its Manager, Action and Message are not used: above this package there is only our
``AmiMessage``; ``send_action`` returns one, ``send_list`` a list of them.

panoramisk 1.4 measured against a long-lived daemon's needs has eleven faults
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
      -> panoramisk's Manager (connect, reconnect, login, ping) is not used; we open the link.
 7. ``authenticated`` stayed True while disconnected
      -> ``authenticated`` is true only while connected and logged in.
 8. Actions re-sent after a reconnect (an Originate dialled twice); futures never resolved
      -> nothing is ever re-sent (there is no queue of actions to re-send); pending actions
         fail with AmiConnectionLost when the link drops (an Originate with
         OriginateFateUnknown); every action has a timeout.
 9. A UTF-8 character split across two reads was dropped
      -> incremental decoding (frames.FrameDecoder).
10. ``ChanVariable`` was a string once, a list when repeated
      -> AmiMessage.getall / chanvars always give all values.
11. ``send_action(Originate)`` swallowed the OriginateResponse; every reply looked successful
      -> an event never answers a single action, so ``originate`` waits for the
         acknowledgement only and OriginateResponse reaches the handlers; every reply's
         ``Response`` is checked.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from panoramisk.ami_protocol import AMIProtocol

from ..clock import Clock, RealClock
from ..config import AmiConfig
from ..logs import get_logger
from ..tasks import TaskSet
from .frames import AmiMessage, encode_message
from .pending import SUCCESS, PendingAction, PendingActions
from .router import EventRouter
from .stream import AmiStream

log = get_logger(__name__)


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


def encode_action(fields: Mapping[str, Any]) -> bytes:
    """An action on the wire: headers sorted by name, a list value one header per item. The
    order is the one panoramisk wrote, kept so that what Asterisk receives does not change."""
    return encode_message({key: fields[key] for key in sorted(fields)})


class _Protocol(AMIProtocol):
    """panoramisk's protocol as the link: it holds the transport and is told of its loss. What
    it would do with the bytes and with actions is ours (the stream, the pending table)."""

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

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.close()
            self.client._on_connection_lost(exc)

    def close(self) -> None:
        # panoramisk's close would queue unanswered actions for re-sending (fault 8); the
        # client fails them instead.
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
        self._pending = PendingActions()
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

    @property
    def in_flight(self) -> int:
        """Actions sent and waiting for their answer."""
        return len(self._pending)

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
        self._protocol = protocol
        self._connected = True
        self._last_rx = loop.time()
        login = await self._send(
            {
                "Action": "Login",
                "Username": self.config.username,
                "Secret": self.config.secret,
                "Events": "on",
            },
            timeout=self.config.action_timeout,
            when_logged_out=True,
        )
        response = _response(login)
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

    def _on_connection_lost(self, exc: Exception | None) -> None:
        was_up = self._logged_in
        self._connected = False
        self._logged_in = False
        if self._protocol is not None:
            self._protocol.close()
        self._fail_pending()
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
        self._fail_pending()

    def _fail_pending(self) -> None:
        # Whatever was in flight may or may not have been executed: say so, re-send nothing.
        self._pending.fail_all(lambda: AmiConnectionLost("AMI connection lost"))

    def _on_message(self, message: AmiMessage) -> bool:
        """Answers to our own actions go to the pending table; True when nobody else needs the
        message (a response). Events, a list's included, go on to the handlers."""
        if message.fields.get("Event") == "FullyBooted":
            self._booted.set()
        return self._pending.take(message)

    # ------------------------------------------------------------------ actions

    def _next_id(self, kind: str) -> str:
        return f"{self._name}-{kind}-{next(self._ids)}"

    async def _send(
        self,
        fields: Mapping[str, Any],
        *,
        timeout: float | None = None,
        is_list: bool = False,
        when_logged_out: bool = False,
    ) -> PendingAction:
        """Write the action once and wait for its whole answer (unchecked)."""
        protocol = self._protocol
        if protocol is None or not self._connected or (not when_logged_out and not self._logged_in):
            raise AmiNotConnected("not connected to Asterisk")
        fields = dict(fields)
        fields.setdefault("ActionID", self._next_id(str(fields.get("Action", "x")).lower()))
        data = encode_action(fields)
        pending = self._pending.add(
            str(fields["ActionID"]), str(fields.get("Action")), is_list=is_list
        )
        try:
            protocol.write(data)
            if self._recorder is not None:
                self._recorder("out", data.decode("utf-8"))
            await asyncio.wait_for(pending.done, timeout or self.config.action_timeout)
        except TimeoutError:
            raise AmiActionTimeout(f"no response to {pending.name} in time") from None
        finally:
            self._pending.discard(pending)  # a no-op once answered or failed
        return pending

    async def send_action(
        self, fields: Mapping[str, Any], *, timeout: float | None = None
    ) -> AmiMessage:
        """Send an action that has one response (Ping, Hangup, QueuePause, ...) and return it.
        Raises AmiNotConnected (nothing sent), AmiConnectionLost (sent, the link dropped before
        the answer), AmiActionTimeout, or AmiActionFailed (``Response: Error``)."""
        return _checked(await self._send(fields, timeout=timeout))

    async def send_list(
        self, fields: Mapping[str, Any], *, timeout: float | None = None
    ) -> list[AmiMessage]:
        """Send a list action (QueueStatus, CoreShowChannels, Status, ...) and return its items:
        the events between the acknowledgement and the ``EventList: Complete`` event, in order.
        They also reach the handlers as they arrive. Raises as ``send_action`` does."""
        pending = await self._send(fields, timeout=timeout, is_list=True)
        _checked(pending)
        return pending.items

    async def originate(self, fields: Mapping[str, Any], *, timeout: float | None = None) -> str:
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
            _checked(await self._send(fields, timeout=timeout))  # the acknowledgement: fault 11
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
                await self._send({"Action": "Logoff"}, timeout=2)
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


def _response(pending: PendingAction) -> AmiMessage:
    assert pending.response is not None  # an action is done only once its response came
    return pending.response


def _checked(pending: PendingAction) -> AmiMessage:
    response = _response(pending)
    if response.fields.get("Response") not in SUCCESS:
        raise AmiActionFailed(
            response.get("Message") or "Response: " + str(response.fields.get("Response"))
        )
    return response
