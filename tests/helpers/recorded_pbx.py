"""A test PBX that answers Originates with what a real Asterisk 22 sent for the same outcome.

It plays the repo's own recordings (tests/fixtures), never ../shared: the dispatcher's tests
run the same on every checkout. The ``callbacks`` capture holds six agent-first originations
(customer answers, busy, congestion, agent never answers, customer never answers, channel that
cannot be created), ``customer_first`` five customer-first ones (customer and agent answer,
busy, congestion, agent never answers, customer never answers). For each Originate our
dispatcher sends, this peer picks the recording of its mode (customer first: the Originate
names CALLBACK_AGENT) and the scenario for the outcome wanted, and plays its frames back on
their recorded schedule (scaled), with the identifiers rewritten to ours: ActionID, the
pre-assigned ChannelId/OtherChannelId, CALLBACK_ID, the number, the agent. Agents come from
the QueueMember frames of the ``agent_states`` capture, re-filled.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from simpbx.amiserver import AmiServer, AmiSession, response

from callback_dialer.ami.asterisk import CALLBACK_AGENT_VAR
from callback_dialer.ami.frames import AmiMessage, FrameDecoder, encode_message

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

# What happened in the capture -> its recorded callback id, per recording.
SCENARIOS = {
    "answered": "cb-1",
    "busy": "cb-2",
    "congestion": "cb-3",
    "agent_no_answer": "cb-4",
    "customer_no_answer": "cb-5",
    "cannot_create": "cb-6",
}
CUSTOMER_FIRST_SCENARIOS = {
    "answered": "cb-1",
    "busy": "cb-2",
    "congestion": "cb-3",
    "agent_no_answer": "cb-4",
    "customer_no_answer": "cb-5",
}


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def _frame(raw: str) -> AmiMessage:
    return FrameDecoder().feed(raw.encode())[0]


@dataclass
class Scenario:
    name: str
    originate: AmiMessage  # what the recorded client sent
    frames: list[tuple[float, str]]  # (seconds after the originate, raw)
    uids: dict[str, str]  # recorded uniqueid -> role (first, other, extra)


def _variables(message: AmiMessage) -> dict[str, str]:
    return dict(v.split("=", 1) for v in message.getall("Variable") if "=" in v)


def _agent_of(originate: AmiMessage) -> str:
    """The agent an Originate rings: its Channel agent first, CALLBACK_AGENT customer first."""
    return _variables(originate).get(CALLBACK_AGENT_VAR) or originate.get("Channel")


def _number_of(originate: AmiMessage) -> str:
    """The customer's number: the Exten agent first, in the Local Channel customer first."""
    if CALLBACK_AGENT_VAR in _variables(originate):
        return originate.get("Channel").split("/", 1)[1].split("@", 1)[0]
    return originate.get("Exten")


def _swap(text: str, changes: dict[str, str]) -> str:
    pattern = "|".join(re.escape(old) for old in sorted(changes, key=len, reverse=True) if old)
    return re.sub(pattern, lambda m: changes[m.group(0)], text) if pattern else text


def load_scenarios(path: Path, scenarios: dict[str, str]) -> dict[str, Scenario]:
    records = _records(path)
    out: dict[str, Scenario] = {}
    for name, cb in scenarios.items():
        sent = next(
            r
            for r in records
            if r["dir"] == "out" and f"Variable: CALLBACK_ID={cb}\r\n" in r["raw"]
        )
        originate = _frame(sent["raw"])
        action_id = originate.get("ActionID")
        linked: set[str] = set()
        for r in records:
            if r["dir"] == "in" and f"CALLBACK_ID={cb}\r\n" in r["raw"]:
                m = _frame(r["raw"])
                for key in ("Linkedid", "DestLinkedid"):
                    if m.get(key):
                        linked.add(m.get(key))
        first = originate.get("Channel").removesuffix("/n")  # e.g. Local/101@agents
        frames: list[tuple[float, str]] = []
        uids: dict[str, str] = {}
        if originate.get("ChannelId"):  # the dialer's own form: the ids are named
            uids[originate.get("ChannelId")] = "first"
            uids[originate.get("OtherChannelId")] = "other"
        end = sent["t"]
        for r in records:
            if r["dir"] != "in" or r["t"] < sent["t"] or r["raw"].startswith("Response:"):
                continue
            m = _frame(r["raw"])
            mine = m.get("ActionID") == action_id or any(
                m.get(k) in linked for k in ("Linkedid", "DestLinkedid", "LocalOneLinkedid")
            )
            if mine:
                frames.append((r["t"] - sent["t"], r["raw"]))
                end = r["t"]
                for key in ("Uniqueid", "DestUniqueid", "LocalOneUniqueid", "LocalTwoUniqueid"):
                    uid = m.get(key)
                    if uid and uid != "<unknown>" and uid not in uids:
                        channel = m.get(key.replace("Uniqueid", "Channel")) or ""
                        if uid in linked:
                            uids[uid] = "first"
                        elif channel.endswith(";2") and channel.startswith(first):
                            uids[uid] = "other"
                        else:
                            uids[uid] = "extra"
        # The agent's queue-member status changes while the callback rings/talks.
        member = f"{_agent_of(originate).removesuffix('/n')}/n"
        for r in records:
            if (
                r["dir"] == "in"
                and sent["t"] <= r["t"] <= end
                and r["raw"].startswith("Event: QueueMemberStatus")
                and f"Interface: {member}\r\n" in r["raw"]
            ):
                frames.append((r["t"] - sent["t"], r["raw"]))
        frames.sort(key=lambda f: f[0])
        out[name] = Scenario(name, originate, frames, uids)
    return out


@dataclass
class Member:
    interface: str
    name: str
    queues: list[str]
    status: int = 1
    paused: bool = False
    paused_reason: str = ""
    in_call: bool = False
    calls_taken: int = 0


@dataclass
class RecordedPbx:
    server: AmiServer
    speed: float = 50.0
    outcome_for: dict[str, str] = field(default_factory=dict)  # number digits -> scenario
    default_outcome: str = "answered"
    members: dict[str, Member] = field(default_factory=dict)
    played: list[tuple[str, str]] = field(default_factory=list)  # (callback id, scenario)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _tasks: set[asyncio.Task] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.scenarios = load_scenarios(FIXTURES / "callbacks.jsonl", SCENARIOS)
        self.customer_first = load_scenarios(
            FIXTURES / "customer_first.jsonl", CUSTOMER_FIRST_SCENARIOS
        )
        records = _records(FIXTURES / "agent_states.jsonl")
        self._member_template = next(
            r["raw"] for r in records if r["raw"].startswith("Event: QueueMember\r\n")
        )
        self._status_template = next(
            r["raw"]
            for r in _records(FIXTURES / "callbacks.jsonl")
            if r["raw"].startswith("Event: QueueMemberStatus")
        )
        self.server.on_action("QueueStatus", self._queue_status)
        self.server.on_action("Originate", self._originate)

    # ---------------------------------------------------------------- agents

    def add_agent(self, extension: str, queues: list[str], **state) -> Member:
        interface = f"Local/{extension}@agents/n"
        member = Member(interface=interface, name=f"Agent {extension}", queues=queues, **state)
        self.members[interface] = member
        return member

    def _fill(self, template: str, member: Member, queue: str) -> str:
        values = {
            "Queue": queue,
            "Name": member.name,
            "MemberName": member.name,
            "Location": member.interface,
            "Interface": member.interface,
            "StateInterface": member.interface,
            "Status": str(member.status),
            "Paused": "1" if member.paused else "0",
            "PausedReason": member.paused_reason,
            "InCall": "1" if member.in_call else "0",
            "CallsTaken": str(member.calls_taken),
        }
        lines = []
        for line in template.split("\r\n"):
            key, sep, _ = line.partition(": ")
            if sep and key in values:
                line = f"{key}: {values[key]}"
            lines.append(line)
        return "\r\n".join(lines)

    async def _queue_status(self, session: AmiSession, message: AmiMessage) -> None:
        items = []
        for member in self.members.values():
            for queue in member.queues:
                frame = _frame(self._fill(self._member_template, member, queue))
                items.append([(k, v) for k, v in frame.pairs() if k != "ActionID"])
        session.write(self.server.list_response("queuestatus", message.get("ActionID"), items))

    async def set_agent(self, extension: str, **state) -> None:
        """Change an agent as Asterisk would report it (QueueMemberStatus per queue)."""
        member = self.members[f"Local/{extension}@agents/n"]
        for key, value in state.items():
            setattr(member, key, value)
        event = "Event: QueueMemberPause" if "paused" in state else "Event: QueueMemberStatus"
        for queue in member.queues:
            raw = self._fill(self._status_template, member, queue)
            await self.server.send_raw(raw.replace("Event: QueueMemberStatus", event, 1).encode())

    # ---------------------------------------------------------------- originate

    async def _originate(self, session: AmiSession, message: AmiMessage) -> None:
        action_id = message.get("ActionID")
        session.write(response(action_id, "Originate successfully queued"))
        variables = _variables(message)
        name = self.outcome_for.get(_number_of(message), self.default_outcome)
        self.played.append((variables.get("CALLBACK_ID", ""), name))
        recorded = self.customer_first if CALLBACK_AGENT_VAR in variables else self.scenarios
        task = asyncio.create_task(self._play(recorded[name], message, variables))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _rewrite(
        self,
        raw: str,
        scenario: Scenario,
        ours: AmiMessage,
        variables: dict[str, str],
        extra: dict[str, str],
    ) -> str:
        recorded = scenario.originate
        rec_vars = _variables(recorded)
        # The first leg's Local channel (the agent's, or customer first the customer's).
        old_agent = recorded.get("Channel").removesuffix("/n")  # Local/101@agents
        new_agent = ours.get("Channel").removesuffix("/n")
        old_ext = old_agent.split("/", 1)[1].split("@")[0]
        new_ext = new_agent.split("/", 1)[1].split("@")[0]
        uid_map = {}
        for uid, role in scenario.uids.items():
            if role == "first":
                uid_map[uid] = ours.get("ChannelId")
            elif role == "other":
                uid_map[uid] = ours.get("OtherChannelId")
            else:
                uid_map[uid] = extra.setdefault(uid, f"1795400000.{next(self._ids)}")
        old_name = re.search(r'"([^"]*)"', recorded.get("CallerID", ""))
        new_name = re.search(r'"([^"]*)"', ours.get("CallerID", ""))
        lines = []
        for line in raw.split("\r\n"):
            key, sep, value = line.partition(": ")
            if not sep:
                lines.append(line)
                continue
            if value in uid_map:
                value = uid_map[value]
            elif key == "ActionID":
                value = ours.get("ActionID")
            elif key.endswith("Exten") and value == old_ext:
                value = new_ext
            # The number and the Exten (the same agent first; the agent's customer first),
            # swapped in one pass so that one's replacement is never taken for the other.
            value = _swap(
                value,
                {
                    _number_of(recorded): _number_of(ours),
                    recorded.get("Exten"): ours.get("Exten"),
                },
            )
            value = value.replace(old_agent, new_agent).replace(
                f"{old_ext}@agents", f"{new_ext}@agents"
            )
            value = value.replace(f"Agent {old_ext}", f"Agent {new_ext}")
            value = value.replace(
                f"CALLBACK_ID={rec_vars['CALLBACK_ID']}",
                f"CALLBACK_ID={variables.get('CALLBACK_ID', '')}",
            )
            if "CALLBACK_CATEGORY" in rec_vars:
                value = value.replace(
                    f"CALLBACK_CATEGORY={rec_vars['CALLBACK_CATEGORY']}",
                    f"CALLBACK_CATEGORY={variables.get('CALLBACK_CATEGORY')}",
                )
            if old_name and new_name:
                value = value.replace(old_name.group(1), new_name.group(1))
            lines.append(f"{key}: {value}")
        return "\r\n".join(lines)

    async def _play(self, scenario: Scenario, ours: AmiMessage, variables: dict[str, str]) -> None:
        extra: dict[str, str] = {}
        loop = asyncio.get_running_loop()
        start = loop.time()
        for t, raw in scenario.frames:
            delay = t / self.speed - (loop.time() - start)
            if delay > 0:
                await asyncio.sleep(delay)
            await self.server.send_raw(
                self._rewrite(raw, scenario, ours, variables, extra).encode()
            )

    @property
    def playing(self) -> bool:
        """A recorded call is still being played."""
        return bool(self._tasks)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def encode(pairs: list[tuple[str, str]]) -> bytes:
    return encode_message(pairs)
