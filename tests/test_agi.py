"""The FastAGI server and the IVR offer's scripts: Asterisk 22.9.0's own requests (recorded in
tests/fixtures/agi_offer_*.jsonl), and every way a peer can go wrong."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from callback_dialer.agi.offer import OfferScripts
from callback_dialer.agi.protocol import AgiProtocolError, parse_headers, parse_result, quote
from callback_dialer.agi.server import AgiScript, FastAgiServer
from callback_dialer.ami.frames import AmiMessage
from callback_dialer.clock import ManualClock
from callback_dialer.detect.agents import AgentBook
from callback_dialer.detect.facts import MissedCall
from callback_dialer.detect.tracker import CallTracker
from callback_dialer.dispatch.estimate import Estimator
from callback_dialer.queue.store import CallbackQueue

from .helpers.wait import until

FIXTURES = Path(__file__).parent / "fixtures"


def recorded_exchanges(name: str) -> list[list[dict]]:
    """Each FastAGI connection of a recording: its lines in order."""
    conns: dict[int, list[dict]] = {}
    for line in (FIXTURES / name).read_text().splitlines():
        record = json.loads(line)
        conns.setdefault(record["conn"], []).append(record)
    return list(conns.values())


def request_lines(exchange: list[dict]) -> list[str]:
    """What Asterisk sent before the first command: the header block and its empty line."""
    out = []
    for record in exchange:
        if record["dir"] != "asterisk":
            break
        out.append(record["raw"])
    return out


def recorded_answer(exchange: list[dict]) -> list[str]:
    return [r["raw"] for r in exchange if r["dir"] == "dialer"]


def by_script(name: str, script: str) -> list[list[dict]]:
    return [
        ex
        for ex in recorded_exchanges(name)
        if f"agi_network_script: {script}\n" in request_lines(ex)
    ]


class FakeAsterisk:
    """The Asterisk side of one FastAGI exchange: sends ``lines``, answers every command with
    ``200 result=1`` (or what ``answer`` says) and keeps the commands."""

    def __init__(
        self, lines: list[str], answer: str = "200 result=1\n", *, eof: bool = False
    ) -> None:
        self.lines, self.answer, self.eof = lines, answer, eof
        self.commands: list[str] = []

    async def run(self, port: int) -> list[str]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write("".join(self.lines).encode())
        await writer.drain()
        if self.eof:
            writer.write_eof()  # the peer goes away after these lines
        while line := await reader.readline():
            self.commands.append(line.decode())
            writer.write(self.answer.encode())
            await writer.drain()
        writer.close()
        return self.commands


def commands_as_vars(commands: list[str]) -> dict[str, str]:
    out = {}
    for command in commands:
        assert command.startswith("SET VARIABLE "), command
        name, _, value = command[len("SET VARIABLE ") :].rstrip("\n").partition(" ")
        out[name] = json.loads(value)
    return out


# ------------------------------------------------------------------ the wire format


def test_asterisk_22_request_headers_parse_with_their_empty_values() -> None:
    exchange = by_script("agi_offer_door.jsonl", "register")[-1]
    lines = [line.rstrip("\n") for line in request_lines(exchange) if line != "\n"]
    request = parse_headers(lines)
    assert request.script == "register"
    assert request.headers["agi_version"] == "22.9.0"
    assert request.headers["agi_accountcode"] == ""  # "agi_accountcode: " on the wire
    assert request.uniqueid and request.channel.startswith("IAX2/carrier-")
    assert request.arg(1) == "support" and request.arg(2) == "DOOR"
    assert request.arg(9) == ""


def test_result_lines_parse_and_a_non_result_is_a_clear_error() -> None:
    assert parse_result("200 result=1").ok
    assert parse_result("200 result=0 (timeout)").result == "0"
    assert not parse_result("200 result=-1").ok
    assert parse_result("510 Invalid or unknown command").code == 510
    with pytest.raises(AgiProtocolError, match="not an AGI result line"):
        parse_result("")


def test_values_are_quoted_and_line_breaks_refused() -> None:
    assert quote('a "b" \\c') == '"a \\"b\\" \\\\c"'
    with pytest.raises(ValueError):
        quote("two\nlines")


# ------------------------------------------------------------------ the server


@pytest.fixture
async def echo_server():
    def echo(request):
        return {"SEEN_SCRIPT": request.script, "SEEN_ARG": request.arg(1)}

    def boom(request):
        raise RuntimeError("the estimator fell over")

    server = FastAgiServer(
        {
            "echo": AgiScript(echo, {"SEEN_SCRIPT": ""}),
            "boom": AgiScript(boom, {"CALLBACK_OFFER": "no"}),
        },
        port=0,
        timeout=0.5,
    )
    await server.start()
    yield server
    await server.close()


def headers(script: str, *args: str, name: str = "Ivan") -> list[str]:
    lines = [
        "agi_network: yes\n",
        f"agi_network_script: {script}\n",
        f"agi_request: agi://127.0.0.1:4573/{script}\n",
        "agi_channel: IAX2/carrier-1\n",
        "agi_uniqueid: 1796126538.0\n",
        f"agi_calleridname: {name}\n",
    ]
    lines += [f"agi_arg_{i}: {a}\n" for i, a in enumerate(args, 1)]
    return [*lines, "\n"]


async def test_a_script_answer_is_set_and_ok_comes_last(echo_server) -> None:
    commands = await FakeAsterisk(headers("echo", "x")).run(echo_server.address[1])
    assert commands[-1] == 'SET VARIABLE CALLBACK_AGI_STATUS "ok"\n'
    assert commands_as_vars(commands) == {
        "SEEN_SCRIPT": "echo",
        "SEEN_ARG": "x",
        "CALLBACK_AGI_STATUS": "ok",
    }


async def test_a_failing_script_sends_its_safe_answer_and_logs_one_line(echo_server) -> None:
    with capture_logs() as logs:
        commands = await FakeAsterisk(headers("boom")).run(echo_server.address[1])
    assert commands_as_vars(commands) == {"CALLBACK_OFFER": "no", "CALLBACK_AGI_STATUS": "error"}
    [line] = [e for e in logs if e["log_level"] == "error"]
    assert line["error"] == "RuntimeError: the estimator fell over"
    assert "exc_info" not in line and "exception" not in line  # no traceback in the log
    assert not any("Traceback" in c or "estimator" in c for c in commands)


async def test_an_unknown_script_is_told_so(echo_server) -> None:
    commands = await FakeAsterisk(headers("nope")).run(echo_server.address[1])
    assert commands_as_vars(commands) == {"CALLBACK_AGI_STATUS": "unknown_script"}
    assert echo_server.counters["unknown_script"] == 1


async def test_a_caller_name_that_is_not_utf8_is_still_answered(echo_server) -> None:
    port = echo_server.address[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    block = "".join(headers("echo", "1")).replace("Ivan", "@@").encode()
    writer.write(block.replace(b"@@", "Иван".encode("cp1251")))
    await writer.drain()
    first = await reader.readline()
    assert first.startswith(b"SET VARIABLE SEEN_SCRIPT")
    writer.close()


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(["agi_network: yes\n", "agi_network_script: echo\n"], id="closed_mid_block"),
        pytest.param(["hello there\n", "\n"], id="not_agi_headers"),
        pytest.param(["agi_network: yes\n", "\n"], id="no_script"),
    ],
)
async def test_a_broken_request_is_dropped_with_a_reason_and_the_server_goes_on(
    echo_server, broken
) -> None:
    with capture_logs() as logs:
        commands = await FakeAsterisk(broken, eof=True).run(echo_server.address[1])
        await until(lambda: echo_server.counters.get("protocol_error", 0) == 1)
    assert commands == []
    [line] = [e for e in logs if e["event"] == "FastAGI exchange broken"]
    assert line["problem"] and "exc_info" not in line
    # The next caller is served as usual.
    after = await FakeAsterisk(headers("echo", "2")).run(echo_server.address[1])
    assert commands_as_vars(after)["SEEN_ARG"] == "2"


async def test_a_peer_that_stalls_is_dropped_after_the_timeout(echo_server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", echo_server.address[1])
    writer.write(b"agi_network: yes\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server
    assert echo_server.counters["timeout"] == 1
    writer.close()


async def test_asterisk_refusing_a_command_ends_the_exchange(echo_server) -> None:
    fake = FakeAsterisk(headers("echo", "x"), answer="510 Invalid or unknown command\n")
    commands = await fake.run(echo_server.address[1])
    assert len(commands) == 1  # nothing more after the refusal
    await until(lambda: echo_server.counters.get("protocol_error", 0) == 1)


async def test_a_hangup_during_the_answer_is_not_an_error(echo_server) -> None:
    fake = FakeAsterisk(headers("echo", "x"), answer="HANGUP\n200 result=1\n")
    commands = await fake.run(echo_server.address[1])
    assert commands[-1].startswith("SET VARIABLE CALLBACK_AGI_STATUS")


# ------------------------------------------------------------------ the offer's scripts


def support_agent(book: AgentBook, extension: str, *, in_call: bool = False) -> None:
    book.on_member(
        AmiMessage(
            {
                "Event": "QueueMember",
                "Queue": "support",
                "Location": f"Local/{extension}@agents/n",
                "Name": extension,
                "Status": "2" if in_call else "1",
                "Paused": "0",
                "InCall": "1" if in_call else "0",
            }
        )
    )


@pytest.fixture
def offer_rig(config):
    """The offer's scripts over a queue whose Redis does not answer: every answer must come
    from memory."""
    clock = ManualClock()
    facts: list = []
    book = AgentBook(config, clock)
    tracker = CallTracker(config, facts.append, is_agent_channel=book.is_agent_channel)
    dead = CallbackQueue.__new__(CallbackQueue)  # never used: a call on it would fail loudly
    estimator = Estimator(config, clock, dead, book, tracker)
    scripts = OfferScripts(config, clock, tracker, estimator)
    return scripts, tracker, book, facts


async def serve(scripts: OfferScripts):
    server = FastAgiServer(scripts.scripts(), port=0)
    await server.start()
    return server


async def test_recorded_number_checks_get_the_answers_asterisk_got(offer_rig) -> None:
    scripts, *_ = offer_rig
    server = await serve(scripts)
    try:
        exchanges = by_script("agi_offer_door.jsonl", "number")
        assert exchanges, "the recording has number checks"
        for exchange in exchanges:
            commands = await FakeAsterisk(request_lines(exchange)).run(server.address[1])
            assert commands == recorded_answer(exchange)
    finally:
        await server.close()


def test_another_number_is_validated_in_the_default_region(offer_rig) -> None:
    scripts, *_ = offer_rig
    ok = scripts.number(parse_headers(["agi_network_script: number", "agi_arg_1: 89035550211"]))
    assert ok == {
        "CALLBACK_TYPED_OK": "1",
        "CALLBACK_READBACK": "89035550211",
        "CALLBACK_TYPED_NUMBER": "+79035550211",
        "CALLBACK_PROBLEM": "",
    }
    for typed, problem in [("12", "internal"), ("", "empty"), ("8903*55", "not_digits")]:
        bad = scripts.number(parse_headers(["agi_network_script: number", f"agi_arg_1: {typed}"]))
        assert (bad["CALLBACK_TYPED_OK"], bad["CALLBACK_PROBLEM"]) == ("0", problem)
        assert bad["CALLBACK_TYPED_NUMBER"] == "" and bad["CALLBACK_READBACK"] == ""


def test_the_door_offers_when_the_expected_wait_is_longer_than_offer_after(offer_rig) -> None:
    scripts, _, book, _ = offer_rig
    door = parse_headers(["agi_network_script: door", "agi_arg_1: support"])
    support_agent(book, "102")
    assert scripts.door(door) == {"CALLBACK_OFFER": "no", "CALLBACK_WAIT": "0"}
    support_agent(book, "102", in_call=True)
    support_agent(book, "103", in_call=True)
    # Both busy, a typical 300 s each: the first is free in about 100 s; offer_after is 300.
    assert scripts.door(door)["CALLBACK_OFFER"] == "no"
    scripts.offer_after = 60
    assert scripts.door(door) == {"CALLBACK_OFFER": "yes", "CALLBACK_WAIT": "100"}
    unknown = parse_headers(["agi_network_script: door", "agi_arg_1: no-such-queue"])
    assert scripts.door(unknown)["CALLBACK_OFFER"] == "no"


def test_the_offer_reads_back_the_caller_id_as_the_caller_dials_it(offer_rig) -> None:
    scripts, *_ = offer_rig
    answer = scripts.offer(
        parse_headers(
            ["agi_network_script: offer", "agi_callerid: +79165550101", "agi_arg_1: support"]
        )
    )
    assert answer == {"CALLBACK_ETA": "60", "CALLBACK_READBACK": "89165550101"}  # no agents
    anonymous = scripts.offer(
        parse_headers(["agi_network_script: offer", "agi_callerid: anonymous"])
    )
    assert anonymous["CALLBACK_READBACK"] == ""  # the caller is asked to type a number


def test_register_emits_the_missed_call_to_the_typed_number_at_once(offer_rig) -> None:
    scripts, tracker, _, facts = offer_rig
    answer = scripts.register(
        parse_headers(
            [
                "agi_network_script: register",
                "agi_uniqueid: 1796126574.7",
                "agi_channel: IAX2/carrier-14859",
                "agi_callerid: 79165550202",
                "agi_arg_1: support",
                "agi_arg_2: DOOR",
                "agi_arg_3: +79035550211",
            ]
        )
    )
    assert answer["CALLBACK_REGISTERED"] == "1" and answer["CALLBACK_NUMBER"] == "+79035550211"
    [fact] = facts
    assert isinstance(fact, MissedCall)
    assert (fact.number, fact.caller_id, fact.category) == (
        "+79035550211",
        "+79165550202",
        "support",
    )
    assert fact.source.value == "explicit"
    # What the caller heard: "about N minutes" from now.
    assert fact.promised_by == scripts.clock.now() + int(answer["CALLBACK_ETA"]) * 60
    # The typed number counts as on a call with us until this call ends.
    assert "+79035550211" in tracker.active_numbers()
    # The hangup adds nothing: the callback is already registered.
    tracker.on_hangup(AmiMessage({"Event": "Hangup", "Uniqueid": "1796126574.7"}))
    assert len(facts) == 1


def test_register_with_a_number_the_check_would_refuse_registers_nothing(offer_rig) -> None:
    scripts, _, _, facts = offer_rig
    answer = scripts.register(
        parse_headers(
            [
                "agi_network_script: register",
                "agi_uniqueid: 1.1",
                "agi_callerid: 79165550202",
                "agi_arg_1: support",
                "agi_arg_2: DOOR",
                "agi_arg_3: 12;Dial(evil)",
            ]
        )
    )
    assert answer == {"CALLBACK_REGISTERED": "0"}
    assert facts == []


def test_register_for_an_anonymous_caller_without_a_typed_number_registers_nothing(
    offer_rig,
) -> None:
    scripts, _, _, facts = offer_rig
    answer = scripts.register(
        parse_headers(
            ["agi_network_script: register", "agi_uniqueid: 2.2", "agi_callerid: anonymous"]
        )
    )
    assert answer == {"CALLBACK_REGISTERED": "0"} and facts == []
