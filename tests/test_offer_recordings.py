"""The IVR offer as a real Asterisk 22.9.0 ran it with the generated dialplan
(tests/fixtures/offer_door.jsonl, offer_star.jsonl and their FastAGI exchanges, recorded by
scripts/offer_lab.py): what the dialer concludes from the AMI traffic alone, what the PBX
dialled, and the FastAGI requests replayed against the offer's scripts."""

from __future__ import annotations

import json

import pytest

from callback_dialer.agi.offer import OfferScripts
from callback_dialer.agi.protocol import parse_headers
from callback_dialer.clock import ManualClock
from callback_dialer.detect.agents import AgentBook
from callback_dialer.detect.facts import MissedCall
from callback_dialer.detect.replay import replay_capture
from callback_dialer.detect.tracker import CallTracker
from callback_dialer.dispatch.estimate import Estimator

from .conftest import FIXTURES
from .helpers.captures import load
from .test_agi import by_script, recorded_answer, request_lines

RECORDINGS = ["offer_door", "offer_star"]
CONFIRMED = "+79165550101"  # took the offer on its caller ID
TYPED, TYPED_FROM = "+79035550211", "+79165550202"  # typed 8 903 555 02 11
GARBAGE = "+79165550301"  # typed 12# and 555#, refused, hung up


@pytest.mark.parametrize("name", RECORDINGS)
async def test_replayed_offers_open_callbacks_to_the_numbers_the_callers_chose(
    name, config, redis_client
) -> None:
    # The AMI traffic alone (what a standby dialer sees): the user event the dialplan raises
    # after the offer names the number; the refused caller is a missed call like any other.
    rows = await replay_capture(config, FIXTURES / f"{name}.jsonl", redis_client)
    found = sorted((r["number"], r.get("caller_id", ""), r["source"]) for r in rows)
    refused_source = "ivr_hangup" if name == "offer_door" else "abandon"
    assert found == sorted(
        [
            (CONFIRMED, "", "explicit"),
            (TYPED, TYPED_FROM, "explicit"),
            (GARBAGE, "", refused_source),
        ]
    )


def dials(name: str) -> list[str]:
    out = []
    for record in load(FIXTURES / f"{name}.jsonl"):
        raw = record["raw"]
        if record["dir"] == "in" and raw.startswith("Event: DialBegin"):
            fields = dict(line.split(": ", 1) for line in raw.split("\r\n") if ": " in line)
            out.append(fields.get("DialString", ""))
    return out


@pytest.mark.parametrize("name", RECORDINGS)
def test_the_pbx_called_back_the_chosen_numbers_and_never_a_refused_entry(name) -> None:
    customers = sorted(d for d in dials(name) if d.startswith("carrier/"))
    assert customers == sorted(f"carrier/{n.lstrip('+')}" for n in (CONFIRMED, TYPED, GARBAGE))
    assert not any(d.endswith(("/12", "/555")) for d in dials(name))


@pytest.mark.parametrize("name", RECORDINGS)
def test_recorded_requests_replayed_register_the_same_callbacks(name, config) -> None:
    clock = ManualClock()
    facts: list = []
    book = AgentBook(config, clock)
    tracker = CallTracker(config, facts.append)
    scripts = OfferScripts(
        config,
        clock,
        tracker,
        Estimator(config, clock, None, book, tracker),  # type: ignore[arg-type]
    )
    registered = []
    for exchange in by_script(f"agi_{name}.jsonl", "register"):
        lines = [line.rstrip("\n") for line in request_lines(exchange) if line != "\n"]
        answer = scripts.register(parse_headers(lines))
        recorded = {
            cmd.split(" ")[2]: json.loads(cmd.split(" ", 3)[3]) for cmd in recorded_answer(exchange)
        }
        assert answer["CALLBACK_REGISTERED"] == recorded["CALLBACK_REGISTERED"] == "1"
        assert answer["CALLBACK_NUMBER"] == recorded["CALLBACK_NUMBER"]
        registered.append(answer["CALLBACK_NUMBER"])
    assert sorted(registered) == sorted([CONFIRMED, TYPED])
    missed = {f.number: f.caller_id for f in facts if isinstance(f, MissedCall)}
    assert missed == {CONFIRMED: "", TYPED: TYPED_FROM}


@pytest.mark.parametrize("name", RECORDINGS)
def test_the_refused_numbers_were_checked_and_refused(name) -> None:
    typed = []
    for exchange in by_script(f"agi_{name}.jsonl", "number"):
        request = parse_headers(
            [line.rstrip("\n") for line in request_lines(exchange) if line != "\n"]
        )
        answer = dict(
            (cmd.split(" ")[2], json.loads(cmd.split(" ", 3)[3]))
            for cmd in recorded_answer(exchange)
        )
        typed.append((request.arg(1), answer["CALLBACK_TYPED_OK"]))
    assert sorted(typed) == sorted([("89035550211", "1"), ("12", "0"), ("555", "0")])
