"""On the recordings of a real Asterisk 22.9.0 running the generated dialplan with the IAX2 trunk
``carrier`` (tests/fixtures/README.md, "Whisper and queue_log"): the whisper said on each
agent's channel with the facts the Originate carried, before the customer's Dial over the
trunk; the noun forms Asterisk played for each number; a queue_log in which every recall is
found from its abandon; Asterisk's answers to QueueLog, matched by the simulator."""

from __future__ import annotations

import json
import re
from collections import defaultdict

import pytest
from simpbx.ami import PbxAmi

from callback_dialer.ami.client import AmiActionFailed
from callback_dialer.ami.frames import AmiMessage
from callback_dialer.config import parse_config
from callback_dialer.queuelog import VERBS, QueueLogLine, QueueLogWriter

from .conftest import FIXTURES
from .helpers.compare import read_messages

DIALER = FIXTURES / "whisper_queue_log.jsonl"  # the dialer's own session (user "kit")
DIALPLAN = FIXTURES / "whisper_queue_log.dialplan.jsonl"  # a second session, "dialplan" class
QUEUE_LOG = FIXTURES / "whisper_queue_log.queue_log"  # the PBX's queue_log file
REFUSED = FIXTURES / "queue_log_refused.jsonl"  # QueueLog by a user without "agent"
FORMS = FIXTURES / "whisper_forms.txt"  # callback-whisper played with chosen arguments


def _both(path) -> list[AmiMessage]:
    """Every message of a capture, both directions, in order."""
    raws = [json.loads(line)["raw"] for line in path.read_text("utf-8").splitlines()]
    return read_messages(raws)


def _out(path, action: str) -> list[AmiMessage]:
    return [m for m in _both(path) if m.get("Action") == action]


def _originates() -> dict[str, dict[str, str]]:
    """The recorded Originates by callback id: their fields and their variables."""
    out = {}
    for m in _out(DIALER, "Originate"):
        variables = dict(v.split("=", 1) for v in m.getall("Variable"))
        out[variables["CALLBACK_ID"]] = {**dict(m.pairs()), **variables}
    return out


def test_each_recorded_originate_carries_the_whisper_facts_and_the_trunk() -> None:
    sent = _originates()
    assert sorted(sent) == ["cb-1", "cb-2", "cb-3"]
    for callback_id, fields in sent.items():
        assert fields["CALLBACK_TRUNK"] == "carrier"
        assert fields["CALLBACK_WHISPER"] == "1"
        for name in ("CALLBACK_CALLS", "CALLBACK_WAITED", "CALLBACK_WAITED_HOURS"):
            assert fields[name].isdigit(), (callback_id, name)
    # +79161230021 called twice: one callback, "2 times"; agent 101 hears Russian.
    assert sent["cb-2"]["CALLBACK_CALLS"] == "2"
    assert (sent["cb-1"]["Channel"], sent["cb-1"]["CALLBACK_LANG"]) == ("Local/101@agents", "ru")
    assert sent["cb-3"]["CALLBACK_LANG"] == "en"


def test_the_agent_hears_the_whisper_before_the_customer_is_dialled_over_iax2() -> None:
    sent = _originates()
    by_channel: dict[str, list[AmiMessage]] = defaultdict(list)
    begins: dict[str, int] = {}
    events = read_messages(DIALPLAN)
    for i, m in enumerate(events):
        if m.event == "Newexten":
            by_channel[m.get("Channel")].append(m)
        if m.event == "DialBegin" and m.get("Context") == "callback-outbound":
            begins[m.get("Channel")] = i
    assert len(begins) == 3
    for channel, at in begins.items():
        steps = [m for m in by_channel[channel] if events.index(m) < at]
        noop = next(m for m in steps if m.get("AppData").startswith("callback cb-"))
        callback_id = re.match(r"callback (cb-\d+) ", noop.get("AppData")).group(1)
        fields = sent[callback_id]
        gosub = next(m for m in steps if m.get("Application") == "Gosub")
        expected = ",".join(
            [
                fields["CALLBACK_CATEGORY"],
                fields["CALLBACK_WAITED"],
                fields["CALLBACK_WAITED_HOURS"],
                fields["CALLBACK_CALLS"],
                fields["CALLBACK_LANG"],
            ]
        )
        assert gosub.get("AppData") == f"callback-whisper,s,1({expected})"
        played = [m.get("AppData") for m in steps if m.get("Application") == "Playback"]
        assert played[:3] == [
            "callback-whisper",
            f"callback-category-{fields['CALLBACK_CATEGORY']}",
            "callback-whisper-called",
        ]
        assert "callback-ago" in played
        dial = [m for m in by_channel[channel] if m.get("Application") == "Dial"]
        assert dial[0].get("AppData") == f"IAX2/carrier/{fields['Exten']},30"
        assert events[at].get("DestChannel").startswith("IAX2/carrier-")


def _form(n: int, language: str) -> str:
    """The suffix SayCountedNoun would choose (app_saycounted.c)."""
    if language == "ru":
        if n % 10 == 1 and n % 100 != 11:
            return ""
        if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
            return "x1"
        return "x2"
    return "" if n == 1 else "s"


def test_asterisk_played_the_noun_form_each_number_needs() -> None:
    cases = re.findall(r"^== (\S+)\n(.*)$", FORMS.read_text("utf-8"), re.M)
    assert len(cases) == 7
    for args, line in cases:
        category, minutes, hours, calls, language = args.split(",")
        played = re.findall(r"'([^']+)'", line)
        assert played[:3] == [
            "callback-whisper",
            f"callback-category-{category}",
            "callback-whisper-called",
        ]
        unit, amount = ("hour", int(hours)) if int(hours) else ("minute", int(minutes))
        assert f"callback-{unit}{_form(amount, language)}" in played, args
        assert played[-1] == f"callback-time{_form(int(calls), language)}", args
        if language == "ru" and amount % 10 in (1, 2) and amount % 100 not in (11, 12):
            assert f"digits/{amount % 10}f" in played or unit == "hour", args


def _queue_log() -> list[list[str]]:
    return [line.split("|") for line in QUEUE_LOG.read_text("utf-8").splitlines()]


def test_a_queue_log_reader_finds_every_recall_from_its_abandon() -> None:
    rows = _queue_log()
    abandons = {(r[1], r[2]) for r in rows if r[4] == "ABANDON"}
    ours = [r for r in rows if r[4].startswith("CALLBACK")]
    assert {r[4] for r in ours} <= set(VERBS)
    # Every abandon has its callback, under that call's own uniqueid and queue.
    opened = {(r[1], r[2]): r[5] for r in ours if r[4] in ("CALLBACKQUEUED", "CALLBACKMERGED")}
    assert set(opened) == abandons
    # Every later line of a callback is under the uniqueid of one of its abandons.
    by_callback: dict[str, list[list[str]]] = defaultdict(list)
    for r in ours:
        by_callback[r[5]].append(r)
        assert (r[1], r[2]) in abandons
    fates = {cb: [r[4] for r in lines] for cb, lines in by_callback.items()}
    assert fates == {
        "cb-1": ["CALLBACKQUEUED", "CALLBACKATTEMPT", "CALLBACKREACHED"],
        "cb-2": ["CALLBACKQUEUED", "CALLBACKMERGED", "CALLBACKATTEMPT", "CALLBACKREACHED"],
        "cb-3": ["CALLBACKQUEUED", "CALLBACKATTEMPT", "CALLBACKRETRY"],
    }
    [retry] = [r for r in ours if r[4] == "CALLBACKRETRY"]
    assert retry[3] == "Local/103@agents/n" and retry[7] == "busy"
    for reached in (r for r in ours if r[4] == "CALLBACKREACHED"):
        talk, waited = int(reached[7]), int(reached[8])
        assert talk >= 5 and waited > 60


def test_asterisk_acknowledged_each_line_and_the_simulator_answers_alike() -> None:
    messages = _both(DIALER)
    sent = [m for m in messages if m.get("Action") == "QueueLog"]
    answers = {m.get("ActionID"): m for m in messages if m.get("Response")}
    assert len(sent) == len([r for r in _queue_log() if r[4].startswith("CALLBACK")]) == 10
    real = {(answers[m.get("ActionID")].get("Response"), answers[m.get("ActionID")].get("Message"))
            for m in sent}  # fmt: skip
    assert real == {("Success", "Event added successfully")}

    class Session:
        def __init__(self) -> None:
            self.data = b""

        def write(self, data: bytes) -> None:
            self.data += data

    class Pbx:
        def __init__(self) -> None:
            self.lines: list[tuple] = []

        def log_queue(self, *line) -> None:
            self.lines.append(line)

    sim = object.__new__(PbxAmi)
    sim.pbx, sim.taps = Pbx(), []
    for m in sent:
        session = Session()
        sim.queue_log(session, m)
        [answer] = read_messages([session.data.decode()])
        assert (answer.get("Response"), answer.get("Message")) == (
            "Success",
            "Event added successfully",
        )
    assert [line[3] for line in sim.pbx.lines] == [m.get("Event") for m in sent]


async def test_a_user_without_the_agent_class_is_refused_and_the_writer_skips_it() -> None:
    messages = _both(REFUSED)
    [answer] = [m for m in messages if m.get("ActionID") == "lab-2" and m.get("Response")]
    assert (answer.get("Response"), answer.get("Message")) == ("Error", "Permission denied")

    class Ami:
        authenticated = True

        async def send_action(self, fields, *, timeout=None):
            raise AmiActionFailed(answer.get("Message"))

    writer = object.__new__(QueueLogWriter)
    writer.ami, writer.config, writer.refused, writer.written = (
        Ami(),
        parse_config({}, "test").queue_log,
        0,
        0,
    )
    ok = await writer._write(QueueLogLine("support", "1.1", "NONE", "CALLBACKQUEUED", ("cb-1",)))
    assert ok is False and writer.refused == 1


@pytest.mark.parametrize("path", [DIALER, DIALPLAN, REFUSED])
def test_the_recordings_hold_no_secret(path) -> None:
    for m in _both(path):
        if m.get("Action") == "Login":
            assert m.get("Secret") == "********"


def test_customer_first_whispers_after_the_agent_answers_and_connects_after_it() -> None:
    events = read_messages(FIXTURES / "customer_first_whisper.jsonl")
    [begin] = [
        i
        for i, m in enumerate(events)
        if m.event == "DialBegin" and m.get("Context") == "callback-agent"
    ]
    agent = events[begin].get("DestChannel")
    [end] = [
        i
        for i, m in enumerate(events)
        if m.event == "DialEnd" and m.get("Context") == "callback-agent"
    ]
    assert events[end].get("DialStatus") == "ANSWER"
    whisper = [
        i
        for i, m in enumerate(events)
        if m.event == "Newexten"
        and m.get("Channel") == agent
        and m.get("Context") == "callback-whisper"
    ]
    played = [
        events[i].get("AppData") for i in whisper if events[i].get("Application") == "Playback"
    ]
    assert played[:3] == [
        "callback-whisper",
        "callback-category-support",
        "callback-whisper-called",
    ]
    # Said between the agent's answer and the DialEnd ANSWER, on which the dialer starts the
    # talk: the customer waits through it, and it is not counted as talk.
    assert begin < whisper[0] and whisper[-1] < end
    [bridged] = [
        i for i, m in enumerate(events) if m.event == "BridgeEnter" and m.get("Channel") == agent
    ]
    assert bridged > end
