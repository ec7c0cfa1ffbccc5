"""The catch-up against what real Asterisk 20.20.1 and 22.9.0 sent (tests/fixtures/catchup/).

Each recording (scripts/record_catchup.py) is the ``dialer`` user's session on a lab PBX
running the generated dialplan, after traffic no dialer heard: DBGetTree of the call records
the hangup handler wrote, DBGet/DBDel/DBPut/DBDelTree found and not found, and the fates of
two callbacks. The tests hold the simulator's replies to the recorded ones byte for byte, and
run the dialer's catch-up on the recorded records.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis
from simpbx.ami import PbxAmi
from simpbx.amiserver import AmiServer, AmiSession, response
from simpbx.clock import ManualClock as SimClock
from simpbx.pbx import SimPbx

from callback_dialer.ami.frames import AmiMessage, FrameDecoder
from callback_dialer.app import build_dialer
from callback_dialer.clock import ScaledClock
from callback_dialer.detect.callrecord import parse_call_record
from callback_dialer.queue.keys import Keys

from .helpers.wait import until

FIXTURES = Path(__file__).parent / "fixtures" / "catchup"
VERSIONS = ("20", "22")
DB_ACTIONS = {"DBGetTree", "DBGet", "DBPut", "DBDel", "DBDelTree"}


def load(version: str) -> tuple[str, list[tuple[AmiMessage, bytes]]]:
    """The greeting, and every action of the session with the bytes that answered it."""
    greeting = ""
    order: list[AmiMessage] = []
    replies: dict[str, list[bytes]] = {}
    for line in (FIXTURES / version / "catchup.jsonl").read_text("utf-8").splitlines():
        record = json.loads(line)
        raw = record["raw"]
        if record["dir"] == "in" and raw.startswith("Asterisk Call Manager/"):
            greeting = raw
            continue
        (message,) = FrameDecoder().feed(raw.encode())
        action_id = message.get("ActionID")
        if record["dir"] == "out":
            order.append(message)
            replies[action_id] = []
        elif action_id in replies:
            replies[action_id].append(raw.encode())
    return greeting, [(m, b"".join(replies[m.get("ActionID")])) for m in order]


def calls_reply(session: list[tuple[AmiMessage, bytes]]) -> bytes:
    return next(r for m, r in session if m.get("Action") == "DBGetTree" and m.get("Key") == "calls")


def tree_entries(reply: bytes) -> dict[str, str]:
    out = {}
    for message in FrameDecoder().feed(reply):
        if message.event == "DBGetTreeResponse":
            out[message.get("Key")] = message.get("Val")
    return out


class Captured(AmiSession):
    def __init__(self) -> None:  # a session that only keeps what is written to it
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)


@pytest.mark.parametrize("version", VERSIONS)
def test_the_simulator_answers_every_db_action_as_asterisk_did(version: str) -> None:
    _, session = load(version)
    pbx = SimPbx(SimClock(1_796_000_000.0))
    ami = PbxAmi.__new__(PbxAmi)  # its handlers, without a socket
    ami.pbx, ami.taps = pbx, []
    ami.server = AmiServer()
    checked = 0
    for message, recorded in session:
        action = message.get("Action")
        if action not in DB_ACTIONS:
            continue
        if action == "DBGetTree":  # the store held what Asterisk listed
            for key, value in tree_entries(recorded).items():
                pbx.astdb.entries[key] = value
        captured = Captured()
        getattr(ami, _HANDLERS[action])(captured, message)
        assert b"".join(captured.out) == recorded, (version, action, message.fields)
        checked += 1
    assert checked == 11  # every DB action of the session, found and not found


_HANDLERS = {
    "DBGetTree": "db_get_tree",
    "DBGet": "db_get",
    "DBPut": "db_put",
    "DBDel": "db_del",
    "DBDelTree": "db_del_tree",
}


def test_the_versions_differ_in_the_greeting_only() -> None:
    # What Asterisk 20 and 22 sent for the same actions: the same frames, field for field,
    # but for the AMI version in the greeting line (and the records' own times and ids).
    (g20, s20), (g22, s22) = load("20"), load("22")
    assert (g20, g22) == ("Asterisk Call Manager/9.0.0\r\n", "Asterisk Call Manager/11.0.0\r\n")

    def shape(session: list[tuple[AmiMessage, bytes]]) -> list[list[list[str]]]:
        return [
            [[name for name, _ in m.pairs()] for m in FrameDecoder().feed(reply)]
            for action, reply in session
            if action.get("Action") in DB_ACTIONS
        ]

    assert shape(s20) == shape(s22)


@pytest.mark.parametrize("version", VERSIONS)
def test_the_records_asterisk_wrote_are_read_as_the_dialplan_meant(version: str) -> None:
    _, session = load(version)
    entries = tree_entries(calls_reply(session))
    records = {
        k.rsplit("/", 1)[1]: parse_call_record(k.rsplit("/", 1)[1], v) for k, v in entries.items()
    }
    by_number = {}
    for record in records.values():
        by_number.setdefault(record.number, []).append(record)
    (ivan,) = by_number["+79161110001"]
    # URIENCODE'd by Asterisk, decoded here: the name with its &, = and % unharmed.
    assert ivan.name == "Иван & Co=100% Ваня"
    assert (ivan.abandoned, ivan.queue, ivan.category, ivan.answered) == (
        True,
        "sales",
        "new_connection",
        False,
    )
    (served,) = by_number["+79161110003"]
    assert served.answered and served.agent == "Local/102@agents/n" and served.queue == "support"
    assert 5900 < served.answered_ms < 6200  # the agent's 6 s talk, to the millisecond
    (star,) = by_number["+79161110009"]
    assert star.request == "KEYPRESS"
    (ivr,) = by_number["+79161110002"]
    assert (ivr.queue, ivr.answered_ms, ivr.category) == ("", 0, "")
    assert 4.9 < ivr.ended_at - ivr.started_at < 5.2  # STRFTIME(,,%s.%3q): milliseconds
    fates = tree_entries(next(r for m, r in session if m.get("Key") == "fates"))
    assert sorted(fates) == ["/callback-dialer/fates/cb-901", "/callback-dialer/fates/cb-902"]


@pytest.fixture
async def recorded_pbx(request: Any) -> AsyncIterator[tuple[AmiServer, dict[str, str], float]]:
    greeting, session = load(request.param)
    entries = {k.split("/", 2)[2]: v for k, v in tree_entries(calls_reply(session)).items()}
    server = AmiServer(secret="s3cret", greeting=greeting)
    store = {f"/callback-dialer/{k}": v for k, v in entries.items()}

    def tree(s: AmiSession, message: AmiMessage) -> None:
        prefix = f"/{message.get('Family')}/{message.get('Key')}/"
        items = [
            [("Event", "DBGetTreeResponse"), ("Key", k), ("Val", v)]
            for k, v in sorted(store.items())
            if k.startswith(prefix)
        ]
        s.write(server.list_response("dbgettree", message.get("ActionID"), items))

    def delete(s: AmiSession, message: AmiMessage) -> None:
        gone = store.pop(f"/{message.get('Family')}/{message.get('Key')}", None)
        text = "Key deleted successfully" if gone else "Database entry could not be deleted"
        s.write(response(message.get("ActionID"), text, "Success" if gone else "Error"))

    server.on_action("DBGetTree", tree)
    server.on_action("DBDel", delete)
    await server.start()
    ended = max(parse_call_record(k, v).ended_at for k, v in entries.items())
    yield server, store, ended
    await server.stop()


@pytest.mark.parametrize("recorded_pbx", VERSIONS, indirect=True)
async def test_a_dialer_back_after_the_recorded_traffic_makes_the_owed_callbacks(
    recorded_pbx, make_config, redis_url, key_prefix, tmp_path
) -> None:
    server, store, ended = recorded_pbx
    config = make_config(ami={"port": server.port, "secret": "s3cret"}, dispatch={"enabled": False})
    dialer = build_dialer(config, clock=ScaledClock(1.0, start=ended + 30), spool=tmp_path / "s")
    await dialer.start()
    try:
        await until(lambda: dialer.dispatcher.synced, timeout=20)
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        found = {}
        for key in client.scan_iter(match=Keys(key_prefix).pattern()):
            if key.count(":") == 2 and ":cb:" in key:
                cb = client.hgetall(key)
                found[cb["number"]] = (
                    cb["state"],
                    cb["category"],
                    cb["source"],
                    cb["missed_count"],
                )
        client.close()
    finally:
        await dialer.stop()
    assert found == {
        "+79161110001": ("pending", "new_connection", "abandon", "1"),
        "+79161110002": ("pending", "other", "ivr_hangup", "1"),
        "+79161110004": ("pending", "new_connection", "abandon", "2"),
        "+79161110008": ("done", "new_connection", "abandon", "1"),
        "+79161110009": ("pending", "new_connection", "explicit", "1"),
    }
    assert [k for k in store if "/calls/" in k] == []  # each record deleted once applied
