#!/usr/bin/env python3
"""Record the AMI capture fixtures (tests/fixtures/*.jsonl) from a real Asterisk.

A development tool, never run by CI: it needs an Asterisk already installed under PREFIX and the
two-instance lab of ../shared/asterisk-lab (a PBX with AMI on 5038, a carrier with its
subscribers on 5039, joined by IAX2 on loopback). It does not build Asterisk.

    .venv/bin/python scripts/record_fixtures.py --prefix /opt/asterisk-22 --lab /tmp/lab22
    .venv/bin/python scripts/record_fixtures.py ... --out /tmp/fixtures busy_hour callbacks

It copies the lab kit into LAB/kit, adds the project's customer-first contexts to the PBX's
dialplan (see ``customer_first_dialplan``), starts both instances, plays every scenario and
stops the lab again. Each capture is one AMI session of the ``dialer`` user, in the format of
callback_dialer/ami/capture.py (``CaptureWriter`` writes every line, secret masked):

- ``abandon_in_queue`` .. ``queue_timeout`` are recorded by the project's own recorder,
  ``callback-dialer record OUT --seconds N --config CFG``, in a subprocess;
- ``agent_states``, ``busy_hour``, ``callbacks`` and ``customer_first`` need actions on the
  recorded connection itself (QueueStatus, QueueSummary, Originate): ``Session`` below logs in
  as the recorded client did for ../shared/ami-captures (ActionIDs ``dialer-1``, ``dialer-2``..)
  and writes what crosses the socket, message by message, through the same CaptureWriter.

The scenario itself is driven from the side, on connections that are not recorded: the PBX's
``driver`` AMI user pauses agents, adds members and sets globals; the carrier's ``driver`` user
places the subscribers' calls (``Originate`` into its ``caller`` context), and presses ``*`` for
a caller or hangs them up when the scenario says so (``PlayDTMF``, ``Hangup``), timed from the
PBX's queue events. Before the first capture ``prime`` puts the PBX in the state the shared
recordings started from (one call made, every agent paused and unpaused), unrecorded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from simpbx.scenarios import BUSY_HOUR_CALLERS

from callback_dialer.ami.capture import CaptureWriter
from callback_dialer.ami.frames import AmiMessage, FrameDecoder, encode_message
from callback_dialer.config import parse_config
from callback_dialer.dispatch.origination import plan_originate
from callback_dialer.dispatch.strategies import strategy_for
from callback_dialer.ivr.dialplan import render_dialplan
from callback_dialer.phone import NumberPolicy

HOST = "127.0.0.1"
PBX_PORT, CARRIER_PORT = 5038, 5039
# AMI users of the lab's manager.conf files (read by read_secrets): the recorded "dialer" of
# the PBX; "driver" of the PBX (pauses, globals) and of the carrier (test calls, hangups).
SECRETS: dict[tuple[str, str], str] = {}
AGENTS = ("Local/101@agents/n", "Local/102@agents/n", "Local/103@agents/n")
CALLER_IDS = itertools.count(1)
REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- the lab


def find_kit() -> Path | None:
    """``shared/asterisk-lab`` beside the checkout or beside any folder above it (a worktree
    may sit deeper than ../), as the tests find ``shared/ami-captures``."""
    for parent in REPO.parents:
        candidate = parent / "shared" / "asterisk-lab"
        if (candidate / "up.sh").is_file():
            return candidate
    return None


def customer_first_dialplan() -> str:
    """The customer-first contexts of ``callback-dialer dialplan``, for the lab's IAX2 trunk.

    Rendered from the project's defaults ([dispatch] customer_channel
    ``Local/{exten}@callback-customer/n``, agent_context ``callback-agent``) with the one trunk
    the lab has: the IAX2 peer ``carrier`` (dial template ``IAX2/{trunk}/{number}``), which the
    Originates name in CALLBACK_TRUNK."""
    rendered = render_dialplan(parse_config(LAB_TRUNK, "lab trunk"))
    section = rendered[rendered.index("; Customer first") :]
    assert "IAX2/carrier/${EXTEN}" in section, "the customer-first contexts dial no IAX2 trunk"
    return section


LAB_TRUNK = {
    "dispatch": {"trunks": [{"name": "carrier", "max_calls": 10, "dial": "IAX2/{trunk}/{number}"}]}
}


def public_callerid_global() -> str:
    """The global the generated callback-customer context reads (its [globals] line)."""
    rendered = render_dialplan(parse_config({}, "defaults"))
    return next(
        line for line in rendered.splitlines() if line.startswith("CALLBACK_PUBLIC_CALLERID")
    )


def prepare_kit(kit_source: Path, lab: Path) -> Path:
    """LAB/kit: the lab's scripts and configs, the PBX dialplan with the customer-first
    contexts (and their global) added. The rest is the lab's, unchanged."""
    kit = lab / "kit"
    if kit.exists():
        shutil.rmtree(kit)
    kit.mkdir(parents=True)
    for name in ("start.sh", "up.sh", "down.sh"):
        shutil.copy(kit_source / name, kit / name)
    for name in ("common", "pbx", "carrier"):
        shutil.copytree(kit_source / name, kit / name)
    for path in kit.rglob("*"):
        path.chmod(0o755 if path.is_dir() or path.suffix == ".sh" else 0o644)
    dialplan = kit / "pbx" / "extensions.conf"
    text = dialplan.read_text()
    assert "[globals]\n" in text and "[callback-customer]" not in text
    text = text.replace("[globals]\n", f"[globals]\n{public_callerid_global()}\n", 1)
    text = (
        text.rstrip("\n")
        + "\n\n"
        + (
            "; ---------------------------------------------------------------- added for the\n"
            "; customer_first capture: the project's customer-first contexts (scripts/\n"
            "; record_fixtures.py, customer_first_dialplan), the customer dialled over IAX2.\n"
            + customer_first_dialplan()
        )
    )
    dialplan.write_text(text)
    return kit


def read_secrets(kit: Path) -> None:
    for role in ("pbx", "carrier"):
        user = ""
        for line in (kit / role / "manager.conf").read_text().splitlines():
            if line.startswith("["):
                user = line.strip("[] ")
            elif line.replace(" ", "").startswith("secret="):
                SECRETS[role, user] = line.split("=", 1)[1].strip()


def login(role: str, user: str) -> tuple[str, str]:
    return user, SECRETS[role, user]


def lab_command(kit: Path, script: str, prefix: Path, lab: Path) -> None:
    env = {**os.environ, "PREFIX": str(prefix), "LAB": str(lab)}
    subprocess.run([str(kit / script)], env=env, check=True)


def asterisk_version(prefix: Path) -> str:
    return subprocess.run(
        [str(prefix / "sbin" / "asterisk"), "-V"], capture_output=True, text=True, check=True
    ).stdout.strip()


# --------------------------------------------------------------------------- AMI connections


class Ami:
    """One AMI connection: actions with their responses, events to whoever waits for them.

    With ``writer`` every message that crosses the socket is also written to a capture, split
    as the project's recorder splits it (the greeting line, then each message up to and
    including its blank line), text exactly as received."""

    def __init__(
        self,
        name: str,
        port: int,
        user: tuple[str, str],
        *,
        writer: CaptureWriter | None = None,
        ids: str = "",
    ) -> None:
        self.name, self.port, self.user, self.writer = name, port, user, writer
        self._ids = itertools.count(1)
        self._id_prefix = ids or f"{name}-"
        self._pending: dict[str, tuple[asyncio.Future, str | None, list[AmiMessage]]] = {}
        self._listeners: list[Callable[[AmiMessage], None]] = []
        self._decoder = FrameDecoder()
        self._text = ""
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task | None = None
        self.greeted = asyncio.Event()
        self.booted = asyncio.Event()

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(HOST, self.port)
        self._task = asyncio.create_task(self._read())
        await asyncio.wait_for(self.greeted.wait(), 5)
        response = await self.action(
            {"Action": "Login", "Username": self.user[0], "Secret": self.user[1], "Events": "on"}
        )
        if response.get("Response") != "Success":
            raise RuntimeError(f"{self.name}: login refused: {response.get('Message')}")
        await asyncio.wait_for(self.booted.wait(), 5)

    def on_event(self, listener: Callable[[AmiMessage], None]) -> None:
        self._listeners.append(listener)

    async def action(
        self,
        fields: dict[str, str | list[str]],
        *,
        complete: str | None = None,
        timeout: float = 10,
    ) -> AmiMessage:
        """Send an action (``ActionID`` added: ``<ids>N``); its response. ``complete``: a list
        action's final event, waited for too (the response's ``items`` are not kept)."""
        assert self._writer is not None
        action_id = f"{self._id_prefix}{next(self._ids)}"
        pairs: list[tuple[str, str]] = [("Action", str(fields["Action"])), ("ActionID", action_id)]
        for key, value in fields.items():
            if key != "Action":
                pairs.extend((key, v) for v in (value if isinstance(value, list) else [value]))
        data = encode_message(pairs)
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending[action_id] = (future, complete, [])
        self._writer.write(data)
        if self.writer is not None:
            self.writer("out", data.decode("utf-8"))
        await self._writer.drain()
        return await asyncio.wait_for(future, timeout)

    async def logoff(self) -> None:
        with contextlib.suppress(Exception):
            await self.action({"Action": "Logoff"}, timeout=3)
        await self.close()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _read(self) -> None:
        assert self._reader is not None
        while data := await self._reader.read(65536):
            if self.writer is not None:
                self._record(data.decode("utf-8", errors="replace"))
            for message in self._decoder.feed(data, time.monotonic()):
                self._dispatch(message)
            if self._decoder.greeting is not None:
                self.greeted.set()

    def _record(self, text: str) -> None:
        assert self.writer is not None
        buffer = self._text + text
        if buffer.startswith("Asterisk Call Manager/") and "\r\n" in buffer:
            line, _, buffer = buffer.partition("\r\n")
            self.writer("in", line + "\r\n")
        while (end := buffer.find("\r\n\r\n")) != -1:
            self.writer("in", buffer[: end + 4])
            buffer = buffer[end + 4 :]
        self._text = buffer

    def _dispatch(self, message: AmiMessage) -> None:
        if message.event == "FullyBooted":
            self.booted.set()
        pending = self._pending.get(message.get("ActionID"))
        if pending is not None:
            future, complete, _ = pending
            if message.response:
                if complete is None or message.response != "Success":
                    self._pending.pop(message.get("ActionID"))
                    if not future.done():
                        future.set_result(message)
                else:
                    pending[2].append(message)
            elif message.event == complete:
                self._pending.pop(message.get("ActionID"))
                if not future.done():
                    future.set_result(pending[2][0] if pending[2] else message)
            return
        for listener in list(self._listeners):
            listener(message)


class Session:
    """The recorded ``dialer`` session of one capture, logged in as the recorded client of
    ../shared/ami-captures was: ``Action: Login``, ``ActionID: dialer-1``, then ``dialer-2``..
    for every action sent on it, ``Logoff`` last."""

    def __init__(self, out: Path, *, logoff: bool = True) -> None:
        self.out = out
        self.handle = out.open("w", encoding="utf-8")
        self.ami: Ami | None = None
        self.logoff = logoff  # False: the link just drops (a reconnect's first half)

    async def __aenter__(self) -> Ami:
        writer = CaptureWriter(self.handle)  # t = 0 here, just before the connect
        self.ami = Ami("dialer", PBX_PORT, login("pbx", "dialer"), writer=writer, ids="dialer-")
        await self.ami.connect()
        return self.ami

    async def __aexit__(self, *exc: object) -> None:
        assert self.ami is not None
        if self.logoff:
            await self.ami.logoff()
        else:
            await self.ami.close()
        await asyncio.sleep(0.05)
        self.handle.close()


@contextlib.asynccontextmanager
async def recorder_cli(out: Path, seconds: float, config: Path):
    """``callback-dialer record OUT --seconds N --config CFG`` in a subprocess; yields once its
    session is logged in (FullyBooted is in the file), returns when it has finished."""
    out.unlink(missing_ok=True)
    log = config.with_name("recorder.log")
    with log.open("w") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "callback_dialer",
            "record",
            str(out),
            "--seconds",
            str(seconds),
            "--config",
            str(config),
            stderr=stderr,
            env={**os.environ, "CALLBACK_DIALER_AMI_SECRET": SECRETS["pbx", "dialer"]},
        )
    deadline = time.monotonic() + 20
    while not (out.exists() and "Event: FullyBooted" in out.read_text("utf-8")):
        if process.returncode is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the recorder did not log in; see {log}")
        await asyncio.sleep(0.001)
    try:
        yield
    finally:
        if await process.wait() != 0:
            raise RuntimeError(f"the recorder failed; see {log}")


def recorder_config(path: Path) -> Path:
    """The recorder's configuration: the lab PBX (the secret goes in the environment), and no
    keep-alive ping in a recording (one goes out only after ping_interval of silence)."""
    path.write_text(f"""\
[ami]
host = "{HOST}"
port = {PBX_PORT}
username = "dialer"
ping_interval = "5m"
""")
    return path


# --------------------------------------------------------------------------- driving the lab


@dataclass(frozen=True)
class Caller:
    """A subscriber calling the PBX from the carrier (its [caller] context): presses ``digit``
    a second after the IVR answers ("" none), hangs up ``hold`` s after that. What they do in
    a queue is timed from the PBX's events by the driver, as the simulator's CallerScript
    times it: ``star_after`` s after joining a queue they press ``*``, ``patience`` s after
    joining they hang up unless an agent answered, ``talk`` s after an agent answered they hang
    up (None: they wait, the agent ends the call)."""

    number: str
    digit: str = ""
    hold: float = 600.0
    name: str = ""
    star_after: float | None = None
    patience: float | None = None
    talk: float | None = None


class Lab:
    """The unrecorded side: the PBX's and the carrier's ``driver`` AMI users."""

    def __init__(self) -> None:
        self.pbx = Ami("driver", PBX_PORT, login("pbx", "driver"))
        self.carrier = Ami("carrier", CARRIER_PORT, login("carrier", "driver"))
        self.calls: dict[str, tuple[Caller, str]] = {}  # number -> (script, carrier uniqueid)
        self.connected: set[str] = set()  # numbers an agent answered
        self._pending: list[asyncio.TimerHandle | asyncio.Future] = []
        self.origin = time.monotonic()

    async def __aenter__(self) -> Lab:
        await self.pbx.connect()
        await self.carrier.connect()
        self.pbx.on_event(self._on_pbx_event)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for pending in self._pending:
            pending.cancel()
        await asyncio.gather(
            *(p for p in self._pending if isinstance(p, asyncio.Future)), return_exceptions=True
        )
        await self.pbx.logoff()
        await self.carrier.logoff()

    # ---- the scenario's clock: seconds since its capture began
    def start_clock(self, origin: float) -> None:
        self.origin = origin

    async def at(self, t: float) -> None:
        await asyncio.sleep(max(0.0, self.origin + t - time.monotonic()))

    # ---- agents and globals on the PBX
    async def pause(
        self, interface: str, paused: bool, reason: str = "lunch", queue: str = ""
    ) -> None:
        fields = {
            "Action": "QueuePause",
            "Interface": interface,
            "Paused": "true" if paused else "false",
            "Reason": reason,
        }
        if queue:
            fields["Queue"] = queue
        await self.pbx.action(fields)

    async def pause_all(self, paused: bool, reason: str = "lunch") -> None:
        # The reason goes with the unpause too: Asterisk then shows it on the
        # QueueMemberPause event (PausedReason: lunch), as in ../shared/ami-captures.
        for interface in AGENTS:
            await self.pause(interface, paused, reason)

    async def set_global(self, name: str, value: str, *, on_carrier: bool = False) -> None:
        ami = self.carrier if on_carrier else self.pbx
        await ami.action({"Action": "Setvar", "Variable": name, "Value": value})

    # ---- subscribers calling in
    async def call(self, caller: Caller) -> None:
        uniqueid = f"caller-{next(CALLER_IDS)}"  # the carrier channel's, to hang it up by
        self.calls[caller.number] = (caller, uniqueid)
        callerid = f'"{caller.name}" <{caller.number}>' if caller.name else caller.number
        await self.carrier.action(
            {
                "Action": "Originate",
                "Channel": "IAX2/pbx",
                "Context": "caller",
                "Exten": "s",
                "Priority": "1",
                "CallerID": callerid,
                "ChannelId": uniqueid,
                "Async": "true",
                "Variable": [f"DIGIT={caller.digit}", f"HOLD={caller.hold:g}"],
            }
        )

    def _on_pbx_event(self, message: AmiMessage) -> None:
        if message.event not in ("QueueCallerJoin", "AgentConnect"):
            return
        entry = self.calls.get(message.get("CallerIDNum"))
        if entry is None:
            return
        caller, uniqueid = entry
        hangup = {"Action": "Hangup", "Channel": uniqueid, "Cause": "16"}
        if message.event == "QueueCallerJoin":
            if caller.star_after is not None:  # the PBX hears a digit when it ends: 100 ms
                self._later(
                    caller.star_after - 0.1,
                    caller,
                    {"Action": "PlayDTMF", "Channel": uniqueid, "Digit": "*", "Duration": "100"},
                )
            if caller.patience is not None:
                self._later(caller.patience, caller, hangup)
        if message.event == "AgentConnect":
            self.connected.add(caller.number)
            if caller.talk is not None:
                self._later(caller.talk, caller, hangup, even_if_connected=True)

    def _later(
        self, delay: float, caller: Caller, action: dict, *, even_if_connected: bool = False
    ) -> None:
        def fire() -> None:
            if even_if_connected or caller.number not in self.connected:
                self._pending.append(asyncio.ensure_future(self.carrier.action(action)))

        self._pending.append(asyncio.get_running_loop().call_later(delay, fire))


# --------------------------------------------------------------------------- the scenarios
# Each one is what ../shared/ami-captures/README.md describes for the file of that name, with
# the numbers, agents, keys and times the tests assert (tests/test_detection_captures.py,
# tests/test_sim_*.py, tests/helpers/recorded_pbx.py).


async def abandon_in_queue(lab: Lab) -> None:
    await lab.pause_all(True)
    await lab.call(Caller("+79161234561", "1", name="Ivan Petrov", patience=8.25))
    await lab.at(12.0)
    await lab.pause_all(False)


async def answered_by_agent(lab: Lab) -> None:
    await lab.pause_all(False)  # all free (they are already: only the events show)
    await lab.call(Caller("89161234562", "2"))  # agent 102 answers; hangs up after TALK=6 s


async def hangup_in_ivr(lab: Lab) -> None:
    await lab.call(Caller("84951234563", hold=3.0))  # no key; gone 4 s after the answer


async def keypress_callback(lab: Lab) -> None:
    await lab.pause_all(True)
    await lab.call(Caller("+79031234564", "1", star_after=4.45))
    await lab.at(12.0)
    await lab.pause_all(False)


async def queue_timeout(lab: Lab) -> None:
    await lab.pause_all(True)
    await lab.set_global("QTIMEOUT", "5")
    await lab.call(Caller("+79261234567", "3"))
    await lab.at(16.0)
    await lab.set_global("QTIMEOUT", "300")
    await lab.pause_all(False)


async def agent_states(lab: Lab, session: Ami) -> None:
    await session.action({"Action": "QueueStatus"}, complete="QueueStatusComplete")
    await lab.pause("Local/102@agents/n", True, "break")
    await lab.at(1.005)
    await lab.pause("Local/102@agents/n", False)
    await lab.pbx.action(
        {
            "Action": "QueueAdd",
            "Queue": "sales",
            "Interface": "Local/104@agents/n",
            "MemberName": "Agent 104",
        }
    )
    await lab.at(2.008)
    await lab.pbx.action(
        {"Action": "QueueRemove", "Queue": "sales", "Interface": "Local/104@agents/n"}
    )
    await lab.at(3.01)
    await session.action({"Action": "QueueSummary"}, complete="QueueSummaryComplete")
    await lab.at(4.01)


def agent_first(agent: str, number: str, callback: str, category: str) -> dict:
    """The agent-first Originate of ../shared/ami-captures/callbacks.jsonl, field for field."""
    return {
        "Action": "Originate",
        "Channel": f"Local/{agent}@agents",
        "Context": "callback-outbound",
        "Exten": number,
        "Priority": "1",
        "CallerID": f'"Callback {category}" <{number}>',
        "Variable": [f"CALLBACK_ID={callback}", f"CALLBACK_CATEGORY={category}", "AGENT_TALK=6"],
        "Async": "true",
        "Timeout": "15000",
    }


async def callbacks(lab: Lab, session: Ami) -> None:
    # customer answers (talks 5 s), busy, congestion; then 14 s later: agent 109 never
    # answers, the customer never answers, a channel that cannot be created
    await lab.pause_all(False)  # all free (only the events show)
    for args in (
        ("101", "79161230001", "cb-1", "new_connection"),
        ("102", "79161230002", "cb-2", "support"),
        ("103", "79161230004", "cb-3", "billing"),
    ):
        await session.action(agent_first(*args))
    await lab.at(14.017)
    for args in (
        ("109", "79161230001", "cb-4", "support"),
        ("101", "79161230003", "cb-5", "support"),
    ):
        await session.action(agent_first(*args))
    await session.action(
        {
            "Action": "Originate",
            "Channel": "Local/nosuch@nowhere",
            "Context": "callback-outbound",
            "Exten": "79161230001",
            "Priority": "1",
            "Variable": "CALLBACK_ID=cb-6",
            "Async": "true",
            "Timeout": "5000",
        }
    )
    await lab.at(54.03)


def customer_first(agent: str, number: str, callback: str, category: str) -> dict:
    """The Originate the dispatcher sends in [dispatch] mode = "customer_first" (the project's
    plan_originate, default templates, trunk "carrier"); our session's ActionID instead of the
    dispatcher's own."""
    config = parse_config(
        {"dispatch": {"mode": "customer_first", "trunks": [{"name": "carrier"}]}}, "customer_first"
    )
    plan = plan_originate(
        config,
        strategy_for(config.dispatch),
        callback_id=callback,
        category=category,
        number=NumberPolicy(config.phone).parse_e164(f"+{number}"),
        interface=f"Local/{agent}@agents/n",
        trunk="carrier",
        attempt_no=1,
    )
    fields = {k: v for k, v in plan.fields.items() if k != "ActionID"}
    return {"Action": "Originate", **fields}


async def customer_first_calls(lab: Lab, session: Ami) -> None:
    # customer answers (talks 5 s) and agent 101 answers (talks TALK=6 s); busy; congestion
    await lab.pause_all(False)
    for args in (
        ("101", "79161230001", "cb-1", "new_connection"),
        ("102", "79161230002", "cb-2", "support"),
        ("103", "79161230004", "cb-3", "billing"),
    ):
        await session.action(customer_first(*args))
    await lab.at(14.0)
    # customers who stay on the line 25 s: one answers but agent 109 never does (15 s); one
    # never answers (the 30 s Dial and the 30 s Originate timeout run out together)
    await lab.set_global("CUSTOMER_TALK", "25", on_carrier=True)
    for args in (
        ("109", "79161230001", "cb-4", "support"),
        ("101", "79161230003", "cb-5", "support"),
    ):
        await session.action(customer_first(*args))
    await lab.at(54.0)
    await lab.set_global("CUSTOMER_TALK", "", on_carrier=True)


async def busy_hour(lab: Lab, session: Ami) -> None:
    """24 callers in a minute (the table of sim/simpbx/scenarios.py, read off the
    shared capture); 101 in sales, 102 in sales and support, 103 (support) on a break
    until 41.87 s; agents end a call after TALK=6 s unless the caller hangs up first."""
    await lab.pause_all(False)
    await session.action({"Action": "QueueStatus"}, complete="QueueStatusComplete")
    await lab.pause("Local/103@agents/n", True, "break")
    for arrival, number, key, choice_after, patience, talk in BUSY_HOUR_CALLERS:
        if key == "hangup":  # hangs up in the IVR, choice_after s after the call began
            caller = Caller(number, hold=round(choice_after) - 1.0)
        else:  # key None: the menu times out after 6 s (category other)
            caller = Caller(number, key or "", patience=patience, talk=talk)
        await lab.at(arrival)
        await lab.call(caller)
    await lab.at(41.87)
    await lab.pause("Local/103@agents/n", False)
    await lab.at(61.88)


async def live_after_break(lab: Lab, session: Ami) -> None:
    """Issue 12's scenario: every agent on a break; three callers give up in ``support``
    (three callbacks due); four callers then wait there; 10 s later agents 102 and 103 come
    back. With no dialer on the line, this is app_queue alone giving them the agents:
    the QueueStatus at the start (agents, nobody waiting), one just before the unpause (four
    QueueEntry items), and every queue event in between."""
    await lab.pause_all(True, "break")
    await session.action({"Action": "QueueStatus"}, complete="QueueStatusComplete")
    for i in range(3):
        await lab.at(1.0 + i)
        await lab.call(Caller(f"+7916555010{i}", "2", patience=4.0))
    for i in range(4):
        await lab.at(9.0 + 0.5 * i)
        await lab.call(Caller(f"+7916555020{i}", "2" if i != 2 else "3"))
    await lab.at(20.0)
    await session.action({"Action": "QueueStatus"}, complete="QueueStatusComplete")
    await lab.at(21.0)
    for interface in ("Local/102@agents/n", "Local/103@agents/n"):
        await lab.pause(interface, False, "break")
    await lab.at(42.0)


async def live_reconnect_first(lab: Lab, session: Ami) -> None:
    """The first connection of a reconnect mid-wait: everyone on a break, three callers join
    ``support`` (one picks billing) and one ``sales``; then the link drops (the session's
    socket closes without a Logoff: ``Session(logoff=False)``)."""
    await lab.pause_all(True, "break")
    await session.action({"Action": "QueueStatus"}, complete="QueueStatusComplete")
    lab.calls.clear()
    for i, digit in enumerate(("2", "3", "1", "2")):
        await lab.at(1.0 + 0.5 * i)
        patience = 6.0 if i == 0 else None  # the first gives up while the link is down
        await lab.call(Caller(f"+7916555030{i}", digit, patience=patience))
    await lab.at(6.0)


async def live_reconnect_second(lab: Lab, session: Ami) -> None:
    """The second connection, 6 s later: meanwhile the first caller gave up and a fifth
    caller joined ``support`` unseen; the QueueStatus after the login tells who waits now.
    Then the agents come back and serve them."""
    await session.action({"Action": "QueueStatus"}, complete="QueueStatusComplete")
    await lab.at(1.0)
    await lab.pause_all(False, "break")
    await lab.at(20.0)


async def live_reconnect_gap(lab: Lab) -> None:
    """Between the two connections (unrecorded): the fifth caller joins support."""
    await lab.call(Caller("+79165550304", "2"))
    await asyncio.sleep(4.0)


@dataclass(frozen=True)
class Scenario:
    name: str
    play: Callable
    seconds: float
    recorder: bool  # recorded by `callback-dialer record` (else by a Session of our own)


SCENARIOS = [  # in this order, on one freshly started PBX (Uniqueids .1, .2 .. as in shared/)
    Scenario("abandon_in_queue", abandon_in_queue, 13, True),
    Scenario("answered_by_agent", answered_by_agent, 18, True),
    Scenario("hangup_in_ivr", hangup_in_ivr, 6, True),
    Scenario("keypress_callback", keypress_callback, 13, True),
    Scenario("queue_timeout", queue_timeout, 17, True),
    Scenario("agent_states", agent_states, 4, False),
    Scenario("callbacks", callbacks, 54, False),
    Scenario("busy_hour", busy_hour, 62, False),
    Scenario("customer_first", customer_first_calls, 54, False),
    # Issue 12 (the live queue); recorded on their own lab (--ports), see tests/fixtures.
    Scenario("live_after_break", live_after_break, 42, False),
    Scenario("live_reconnect", live_reconnect_first, 6, False),
]


async def record_one(scenario: Scenario, out: Path, config: Path) -> None:
    path = out / f"{scenario.name}.jsonl"
    async with Lab() as lab:
        if scenario.recorder:
            async with recorder_cli(path, scenario.seconds, config):
                first = path.read_text("utf-8").splitlines()
                booted = next(json.loads(x)["t"] for x in first if "FullyBooted" in x)
                lab.start_clock(time.monotonic() - booted)
                await scenario.play(lab)
        elif scenario.name == "live_reconnect":
            # Two recorded connections with an unrecorded gap: _1 drops, _2 logs in again.
            first = out / "live_reconnect_1.jsonl"
            async with Session(first, logoff=False) as ami:
                lab.start_clock(ami.writer.origin)
                await scenario.play(lab, ami)
            await live_reconnect_gap(lab)
            path = out / "live_reconnect_2.jsonl"
            async with Session(path) as ami:
                lab.start_clock(ami.writer.origin)
                await live_reconnect_second(lab, ami)
        else:
            session = Session(path)
            async with session as ami:
                lab.start_clock(ami.writer.origin)
                await scenario.play(lab, ami)
    lines = path.read_text("utf-8").splitlines()
    print(f"{scenario.name}: {len(lines)} messages", file=sys.stderr)


async def prime() -> None:
    """Before the first capture, unrecorded: what the PBX of ../shared/ami-captures had done
    before its first capture (there the first call is Uniqueid .1, and pausing everyone shows
    the queues' ``Queue:*_avail`` device states going INUSE, which a fresh PBX does not):
    one call that hangs up in the IVR, every agent paused and unpaused."""
    async with Lab() as lab:
        await lab.pause_all(True)
        await lab.pause_all(False)
        await lab.call(Caller("+79160000000", hold=0.5))
        await asyncio.sleep(3)


async def record_all(names: list[str], out: Path, workdir: Path) -> None:
    config = recorder_config(workdir / "recorder.toml")
    await prime()
    for scenario in SCENARIOS:
        if not names or scenario.name in names:
            await record_one(scenario, out, config)
            await asyncio.sleep(0.5)  # let the last hangups settle before the next one


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--prefix", type=Path, required=True, help="where Asterisk is installed (the lab's PREFIX)"
    )
    parser.add_argument(
        "--lab",
        type=Path,
        required=True,
        help="a scratch folder for the two running instances (the lab's LAB)",
    )
    parser.add_argument(
        "--kit",
        type=Path,
        default=find_kit(),
        help="the lab's scripts and configs (default: shared/asterisk-lab beside the checkout "
        "or beside a folder above it)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "tests" / "fixtures",
        help="where the captures go (default: tests/fixtures)",
    )
    parser.add_argument(
        "--keep-running", action="store_true", help="leave the lab running afterwards"
    )
    parser.add_argument(
        "--ports",
        metavar="PBX_AMI,CARRIER_AMI,PBX_IAX,CARRIER_IAX",
        help="run the two instances on these ports (start.sh) instead of up.sh's 5038/5039 "
        "and 4569/4570: a lab beside another one",
    )
    parser.add_argument(
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help="only these (default: all, in order): " + ", ".join(s.name for s in SCENARIOS),
    )
    args = parser.parse_args(argv)
    if args.kit is None or not (args.kit / "up.sh").is_file():
        parser.error(f"no lab kit (up.sh) at {args.kit}; name it with --kit")
    unknown = set(args.scenarios) - {s.name for s in SCENARIOS}
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    global PBX_PORT, CARRIER_PORT
    ports: list[int] | None = None
    if args.ports:
        try:
            ports = [int(p) for p in args.ports.split(",")]
        except ValueError:
            ports = []
        if len(ports) != 4:
            parser.error("--ports wants four numbers: PBX_AMI,CARRIER_AMI,PBX_IAX,CARRIER_IAX")
        PBX_PORT, CARRIER_PORT = ports[0], ports[1]
    for port in (PBX_PORT, CARRIER_PORT):
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            parser.error(f"something already listens on {HOST}:{port}: stop that lab first")
    args.out.mkdir(parents=True, exist_ok=True)
    print(asterisk_version(args.prefix), file=sys.stderr)
    kit = prepare_kit(args.kit, args.lab)
    read_secrets(kit)
    if ports is None:
        lab_command(kit, "up.sh", args.prefix, args.lab)
    else:
        env = {**os.environ, "PREFIX": str(args.prefix)}
        for role, ami, iax, peer in (
            ("pbx", ports[0], ports[2], ports[3]),
            ("carrier", ports[1], ports[3], ports[2]),
        ):
            subprocess.run(
                [str(kit / "start.sh"), role, str(args.lab / role), str(ami), str(iax), str(peer)],
                env=env,
                check=True,
            )
    try:
        time.sleep(1)
        asyncio.run(record_all(args.scenarios, args.out, args.lab))
        copy_configs(args.lab, args.out / "asterisk")
    finally:
        if not args.keep_running:
            lab_command(kit, "down.sh", args.prefix, args.lab)
    return 0


def copy_configs(lab: Path, into: Path) -> None:
    """The PBX's configuration as it ran (ports filled in by start.sh), secrets masked; the
    carrier's beside it in carrier/ (it decides what callers and customers do)."""
    for etc, folder, names in (
        (lab / "pbx" / "etc", into, ("extensions.conf", "queues.conf", "manager.conf", "iax.conf")),
        (
            lab / "carrier" / "etc",
            into / "carrier",
            ("extensions.conf", "manager.conf", "iax.conf"),
        ),
    ):
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            text = (etc / name).read_text()
            if name == "manager.conf":
                text = re.sub(r"(?m)^(secret\s*=\s*).*$", r"\1********", text)
            (folder / name).write_text(text)


if __name__ == "__main__":
    sys.exit(main())
