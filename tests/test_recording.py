"""Recording a live link (``callback-dialer record``): each message written exactly as it crossed
the wire, framed by the same decoder the handlers read, however the bytes were cut into reads."""

from __future__ import annotations

from itertools import cycle
from pathlib import Path

import pytest

from callback_dialer.ami.client import AmiClient
from callback_dialer.ami.router import EventRouter
from callback_dialer.config import AmiConfig

from .helpers.captures import load

# Odd read sizes: frames, CRLFs and multi-byte characters all end up cut somewhere.
READ_SIZES = (1, 7, 2, 13, 3, 4093, 5, 61)
NAMES = "CallerIDName: Жанна Jérôme 😀 "  # 2-, 3- and 4-byte UTF-8 characters


def chunks(data: bytes, sizes: tuple[int, ...] = READ_SIZES) -> list[bytes]:
    out, i = [], 0
    for size in cycle(sizes):
        if i >= len(data):
            return out
        out.append(data[i : i + size])
        i += size
    raise AssertionError("unreachable")


def splits_inside_a_character(reads: list[bytes]) -> int:
    # A read that starts on a UTF-8 continuation byte began in the middle of a character.
    return sum(1 for read in reads[1:] if read and 0x80 <= read[0] < 0xC0)


def record_reads(reads: list[bytes]) -> tuple[list[tuple[str, str]], list[str]]:
    """Feed the reads to a recording client's stream; (records written, events handled)."""
    router = EventRouter()
    handled: list[str] = []
    router.tap(lambda m: handled.append(m.event))
    client = AmiClient(AmiConfig(), router, name="recorder")
    records: list[tuple[str, str]] = []
    client.recorder = lambda direction, raw: records.append((direction, raw))
    for t, read in enumerate(reads):
        client.stream.feed(read, float(t))
    return records, handled


@pytest.mark.captures
@pytest.mark.parametrize(
    "name", ["busy_hour", "callbacks", "agent_states", "abandon_in_queue", "hangup_in_ivr"]
)
def test_recording_a_captured_stream_again_gives_back_its_records(name, captures: Path) -> None:
    # The capture with non-ASCII names, so that reads split characters as well as frames.
    incoming = [
        r["raw"].replace("CallerIDName: ", NAMES)
        for r in load(captures / f"{name}.jsonl")
        if r["dir"] == "in"
    ]
    assert incoming[0] == "Asterisk Call Manager/11.0.0\r\n"
    reads = chunks("".join(incoming).encode("utf-8"))
    if name == "busy_hour":
        assert splits_inside_a_character(reads) > 10
    records, handled = record_reads(reads)
    assert records == [("in", raw) for raw in incoming]
    assert len(handled) == sum(1 for raw in incoming if raw.startswith("Event:"))


def test_greeting_blank_damaged_and_oversized_frames_are_recorded_as_they_came() -> None:
    pieces = [
        b"Asterisk Call Manager/11.0.0\r\n",
        f"Event: Newchannel\r\n{NAMES}x\r\nUniqueid: 1.1\r\n\r\n".encode(),
        b"\r\n\r\n",  # a blank frame
        b"no colon at all\r\n\r\n",
        b"Foo: bar\r\n\r\n",  # neither Event nor Response
        b"\x00\x00Event: Newstate\r\nUniqueid: 1.1\r\n\r\n",  # NULs: junk
        b"Event: Newexten\r\nAppData: " + b"y" * 300_000 + b"\r\n\r\n",  # oversized
        b"\xff\xfe binary junk\r\n\r\n",  # not UTF-8
        b"Response: Success\r\nActionID: x-1\r\nPing: Pong\r\n\r\n",
        b"Event: Hangup\r\nUniqueid: 1.1\r\nCause: 16\r\n\r\n",
    ]
    reads = chunks(b"".join(pieces), (3, 1, 2, 5, 7))
    assert splits_inside_a_character(reads) > 0
    records, handled = record_reads(reads)
    # What could not be decoded is recorded as the decoder read it (U+FFFD), as before.
    assert records == [("in", p.decode("utf-8", errors="replace")) for p in pieces]
    # The frames the handlers were given are the ones recorded as messages, nothing more.
    assert handled == ["Newchannel", "Newstate", "Hangup"]


def test_a_partial_frame_is_recorded_once_complete() -> None:
    frame = "Event: Hangup\r\nUniqueid: 1.1\r\n\r\n"
    records, _ = record_reads([frame[:-3].encode()])
    assert records == []
    records, _ = record_reads([frame[:-3].encode(), frame[-3:].encode()])
    assert records == [("in", frame)]
