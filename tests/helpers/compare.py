"""Hold a recording against another: header order per event type, event sequence per channel.

Two recordings of the same scenario never match byte for byte (Uniqueids, channel numbers and
times differ, and Asterisk interleaves the events of concurrent channels as its threads run).
What must match is what a client can rely on:

- ``header_orders``: for each event type, the header names in wire order;
- ``channel_shapes``: for each call, each channel's own events in order (the channel's role
  instead of its name, the values that carry meaning instead of all values).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from callback_dialer.ami.frames import AmiMessage, FrameDecoder

# Values that are part of a sequence's meaning (everything else varies run to run).
_MEANINGFUL_VARS = frozenset(
    {
        "CALLBACK_CATEGORY",
        "CALLBACK_ID",
        "DIALSTATUS",
        "ABANDONED",
        "QUEUESTATUS",
        "QUEUEPOSITION",
        "AGENT_TALK",
    }
)


def read_messages(source: Path | Iterable[str]) -> list[AmiMessage]:
    """The ``in`` messages of a capture file (or of raw texts), in order."""
    if isinstance(source, Path):
        raws = [
            rec["raw"]
            for rec in map(json.loads, source.read_text("utf-8").splitlines())
            if rec["dir"] == "in"
        ]
    else:
        raws = list(source)
    out: list[AmiMessage] = []
    for raw in raws:
        if raw.startswith("Asterisk Call Manager/"):
            continue
        out.extend(FrameDecoder().feed(raw.encode("utf-8")))
    return out


def header_names(raw_or_message: AmiMessage) -> tuple[str, ...]:
    return tuple(k for k, _ in raw_or_message.pairs())


def header_orders(messages: Iterable[AmiMessage]) -> dict[str, set[tuple[str, ...]]]:
    """Event name -> every header-name sequence seen for it. ``ChanVariable(<channel>)``
    (OriginateResponse) is written as ``ChanVariable(*)``."""
    out: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for m in messages:
        name = m.event or ("Response" if m.response else "")
        names = tuple(
            "ChanVariable(*)" if k.startswith("ChanVariable(") else k for k in header_names(m)
        )
        out[name].add(names)
    return dict(out)


def role_of(channel: str) -> str:
    if channel.startswith("IAX2/"):
        return "trunk"
    if channel.startswith("Local/"):
        return "local;" + channel.rsplit(";", 1)[-1] if ";" in channel else "local"
    return channel.split("/", 1)[0].lower()


def describe(m: AmiMessage, *, as_dest: bool = False) -> str:
    f = m.fields
    event = m.event
    if event == "Newexten":
        return f"Newexten:{f.get('Application', '')}"
    if event == "VarSet":
        var = f.get("Variable", "")
        return f"VarSet:{var}={f.get('Value', '')}" if var in _MEANINGFUL_VARS else f"VarSet:{var}"
    if event == "Newstate":
        return f"Newstate:{f.get('ChannelState', '')}"
    if event in ("Hangup", "HangupRequest", "SoftHangupRequest"):
        return f"{event}:{f.get('Cause', '')}"
    if event in ("DialBegin", "DialEnd", "DialState"):
        status = f.get("DialStatus", "")
        return f"{event}{'<' if as_dest else '>'}{status}"
    if event in ("AgentCalled", "AgentConnect", "AgentComplete", "AgentRingNoAnswer"):
        return f"{event}:{f.get('Reason', '')}" if event == "AgentComplete" else event
    if event == "UserEvent":
        return f"UserEvent:{f.get('UserEvent', '')}:{f.get('Reason', '')}"
    return event


def channel_shapes(messages: Iterable[AmiMessage]) -> dict[str, dict[str, list[str]]]:
    """Call key -> channel role -> that channel's events, in order.

    A call is a Linkedid; its key is the CALLBACK_ID its channels carry, else the caller ID
    of its first channel, else the Linkedid. Roles: ``trunk``, ``local;1``, ``local;2``,
    ``pjsip``; the n-th channel of a role in a call is ``role#n``."""
    by_call: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    keys: dict[str, str] = {}
    names: dict[tuple[str, str], str] = {}

    def role(linkedid: str, channel: str) -> str:
        key = (linkedid, channel)
        if key not in names:
            base = role_of(channel)
            taken = sum(
                1 for (lid, _), r in names.items() if lid == linkedid and r.split("#")[0] == base
            )
            names[key] = base if not taken else f"{base}#{taken + 1}"
        return names[key]

    for m in messages:
        f = m.fields
        if "Linkedid" in f and "Channel" in f:
            lid = f["Linkedid"]
            cbid = _chanvar(m, "CALLBACK_ID")
            if cbid:
                keys[lid] = cbid
            elif lid not in keys and f.get("Uniqueid") == lid:
                keys[lid] = f.get("CallerIDNum", lid)
            by_call[lid][role(lid, f["Channel"])].append(describe(m))
        if "DestLinkedid" in f and "DestChannel" in f:
            lid = f["DestLinkedid"]
            by_call[lid][role(lid, f["DestChannel"])].append(describe(m, as_dest=True))
    return {
        keys.get(lid, lid): {r: list(ev) for r, ev in roles.items()}
        for lid, roles in by_call.items()
    }


def _chanvar(m: AmiMessage, name: str) -> str:
    prefix = name + "="
    for value in m.getall("ChanVariable"):
        if value.startswith(prefix):
            return value[len(prefix) :]
    return ""


def queue_bridge_race_settled(messages: Iterable[AmiMessage]) -> list[AmiMessage]:
    """``messages`` with each AgentComplete put before the BRIDGEPEER clearings it raced.

    When a queue call's bridge breaks up, Asterisk clears BRIDGEPEER on both channels (VarSet
    with an empty Value, from the bridging thread) while app_queue, on the caller's thread,
    sends AgentComplete: the same instant from two threads, so recordings of the same call
    show either order (answered_by_agent: after AgentComplete in ../shared/ami-captures, before
    it in tests/fixtures). Only that is settled: an AgentComplete moves back over the empty
    BRIDGEPEER VarSets of its own two channels (Channel, DestChannel) that directly precede it,
    skipping only events of no channel (DeviceStateChange, QueueMemberStatus); every other
    event of those channels, and every other order, stays as recorded."""
    out = list(messages)
    for i in range(len(out)):
        if out[i].event != "AgentComplete":
            continue
        own = {out[i].get("Channel"), out[i].get("DestChannel")} - {""}
        to = i
        for j in range(i - 1, -1, -1):
            m = out[j]
            if "Channel" not in m.fields:
                continue
            if (
                m.event == "VarSet"
                and m.get("Variable") == "BRIDGEPEER"
                and m.get("Value") == ""
                and m.get("Channel") in own
            ):
                to = j
                continue
            break
        if to < i:
            out.insert(to, out.pop(i))
    return out


def originate_responses(messages: Iterable[AmiMessage]) -> dict[str, tuple[str, str, bool]]:
    """ActionID -> (Response, Reason, whether Uniqueid names a channel)."""
    return {
        m.get("ActionID"): (m.get("Response"), m.get("Reason"), m.get("Uniqueid") != "<unknown>")
        for m in messages
        if m.event == "OriginateResponse"
    }
