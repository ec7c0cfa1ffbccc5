"""AMI wire format: bytes in, messages out. The one parser for live links and recordings.

A message is ``Key: Value`` lines ended by ``\\r\\n`` and closed by a blank line. What Asterisk
really sends, and what a damaged link delivers, differs from that in ways this module absorbs:

- a UTF-8 character split across two reads (decoding is incremental, so "Жанна" stays whole);
- a header repeated on one message (``ChanVariable``): all values are kept, in order;
- lines without a colon, binary junk, a frame cut by a disconnect, a megabyte-long header:
  the bad part is dropped and counted, the stream goes on with the next message.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

GREETING_PREFIX = "Asterisk Call Manager/"
# No real AMI message comes near this; a frame longer than this is junk (or an attack).
MAX_FRAME_CHARS = 256 * 1024


class AmiMessage:
    """One AMI message: headers in wire order, repeats kept; first value by key is O(1)."""

    __slots__ = ("_multi", "fields", "received_at")

    def __init__(
        self,
        fields: dict[str, str],
        multi: dict[str, list[str]] | None = None,
        received_at: float = 0.0,
    ) -> None:
        self.fields = fields
        self._multi = multi
        self.received_at = received_at

    @classmethod
    def from_pairs(cls, pairs: list[tuple[str, str]], received_at: float = 0.0) -> AmiMessage:
        fields: dict[str, str] = {}
        multi: dict[str, list[str]] | None = None
        for key, value in pairs:
            if key in fields:
                if multi is None:
                    multi = {}
                multi.setdefault(key, [fields[key]]).append(value)
            else:
                fields[key] = value
        return cls(fields, multi, received_at)

    # -- reading

    def get(self, key: str, default: str = "") -> str:
        return self.fields.get(key, default)

    def __getitem__(self, key: str) -> str:
        return self.fields[key]

    def __contains__(self, key: object) -> bool:
        return key in self.fields

    def getall(self, key: str) -> list[str]:
        """Every value of a header, in order: a list even when it appeared once (or never)."""
        if self._multi and key in self._multi:
            return list(self._multi[key])
        value = self.fields.get(key)
        return [] if value is None else [value]

    @property
    def event(self) -> str:
        return self.fields.get("Event", "")

    @property
    def response(self) -> str:
        return self.fields.get("Response", "")

    @property
    def action_id(self) -> str:
        return self.fields.get("ActionID", "")

    def chanvars(self, header: str = "ChanVariable") -> dict[str, str]:
        """``ChanVariable: NAME=value`` headers as a dict. OriginateResponse spells them
        ``ChanVariable(<channel>): NAME=value``; those are found too."""
        out: dict[str, str] = {}
        values = self.getall(header)
        if not values and header == "ChanVariable":
            for key in self.fields:
                if key.startswith("ChanVariable("):
                    values.extend(self.getall(key))
        for item in values:
            name, sep, value = item.partition("=")
            if sep:
                out[name] = value
        return out

    def pairs(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for key, value in self.fields.items():
            if self._multi and key in self._multi:
                out.extend((key, v) for v in self._multi[key])
            else:
                out.append((key, value))
        return out

    def to_dict(self) -> dict[str, str | list[str]]:
        out: dict[str, str | list[str]] = dict(self.fields)
        if self._multi:
            out.update({k: list(v) for k, v in self._multi.items()})
        return out

    def __repr__(self) -> str:
        name = self.event or self.response or "?"
        return f"<AmiMessage {name} {len(self.fields)} headers>"


def encode_message(pairs: list[tuple[str, str]] | dict[str, str | list[str]]) -> bytes:
    """Serialise headers the way Asterisk does: ``Key: Value\\r\\n`` lines and a blank line."""
    items = pairs.items() if isinstance(pairs, dict) else pairs
    lines = []
    for key, value in items:
        if isinstance(value, (list, tuple)):
            lines.extend(f"{key}: {v}\r\n" for v in value)
        else:
            lines.append(f"{key}: {value}\r\n")
    return ("".join(lines) + "\r\n").encode("utf-8")


@dataclass
class DecoderStats:
    messages: int = 0
    bad_lines: int = 0
    dropped_frames: int = 0
    oversized_frames: int = 0
    reasons: list[str] = field(default_factory=list)

    def note(self, reason: str) -> None:
        # The last few reasons, for the log; counters say how many.
        self.reasons.append(reason)
        del self.reasons[:-20]


class Frame(NamedTuple):
    """One record of the stream as it crossed the wire, and its message if it is one."""

    raw: str  # the greeting line with its CRLF, or a frame with its closing blank line
    message: AmiMessage | None  # None: the greeting, a blank, damaged or oversized frame


class FrameDecoder:
    """Feed it bytes as they arrive; it yields complete messages (``iter_feed``), or every
    record with its raw text (``iter_frames``, for recordings). One framer for both, so a
    recording holds exactly the frames the handlers were given. Use one of the two per decoder:
    only ``iter_frames`` keeps an oversized frame's text (a recording wants it whole; the live
    path must not hold a megabyte of junk)."""

    def __init__(self, max_frame_chars: int = MAX_FRAME_CHARS) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._skipping = False  # inside an oversized frame: drop until its end
        self._skipped: list[str] = []  # the dropped text of that frame (iter_frames only)
        self.max_frame_chars = max_frame_chars
        self.greeting: str | None = None
        self.stats = DecoderStats()

    def reset(self) -> None:
        """A new connection: forget any half-received frame and partial character."""
        if self._buffer.strip() or self._skipping:
            self.stats.dropped_frames += 1
            self.stats.note("frame cut by a disconnect")
        self._decoder.reset()
        self._buffer = ""
        self._skipping = False
        self._skipped.clear()
        self.greeting = None

    def feed(self, data: bytes, received_at: float = 0.0) -> list[AmiMessage]:
        return list(self.iter_feed(data, received_at))

    def iter_feed(self, data: bytes, received_at: float = 0.0) -> Iterator[AmiMessage]:
        return self._frames(data, received_at, keep_raw=False)

    def iter_frames(self, data: bytes, received_at: float = 0.0) -> Iterator[Frame]:
        """Every record complete in ``data``, in wire order: the greeting line, then each frame
        (blank, damaged and oversized ones too) with its text exactly as received."""
        return self._frames(data, received_at, keep_raw=True)

    def _frames(self, data: bytes, received_at: float, keep_raw: bool) -> Iterator[Any]:
        # The framer: with keep_raw it yields a Frame per record, without it only the messages
        # (the live path, which must not pay for cutting out text it never uses).
        text = self._decoder.decode(data)
        buffer = self._buffer + text if self._buffer else text
        if self.greeting is None and buffer.startswith(GREETING_PREFIX):
            line, sep, rest = buffer.partition("\r\n")
            if not sep:
                self._buffer = buffer
                return
            self.greeting = line
            buffer = rest
            if keep_raw:
                yield Frame(line + "\r\n", None)
        start = 0
        while True:
            end = buffer.find("\r\n\r\n", start)
            if end == -1:
                break
            frame = buffer[start:end]
            begin, start = start, end + 4
            if self._skipping:
                self._skipping = False
                if keep_raw:
                    self._skipped.append(buffer[begin:start])
                    raw = "".join(self._skipped)
                    self._skipped.clear()
                    yield Frame(raw, None)
                continue
            message = None
            if "\x00" in frame:  # junk: gone from the message, kept in the raw text
                frame = frame.replace("\x00", "")
            if not frame.strip():
                pass
            elif len(frame) > self.max_frame_chars:
                self.stats.oversized_frames += 1
                self.stats.note(f"frame over {self.max_frame_chars} characters dropped")
            else:
                message = self._parse(frame, received_at)
            if keep_raw:
                yield Frame(buffer[begin:start], message)
            elif message is not None:
                yield message
        rest = buffer[start:] if start else buffer
        if len(rest) > self.max_frame_chars or (self._skipping and len(rest) > 3):
            # An endless frame: drop what we have and everything up to its end.
            if not self._skipping:
                self.stats.oversized_frames += 1
                self.stats.note(f"frame over {self.max_frame_chars} characters dropped")
                self._skipping = True
            if keep_raw:
                self._skipped.append(rest[:-3])
            # Keep a tail so a terminator split across reads is still seen.
            rest = rest[-3:]
        self._buffer = rest

    def _parse(self, frame: str, received_at: float) -> AmiMessage | None:
        fields: dict[str, str] = {}
        multi: dict[str, list[str]] | None = None
        for line in frame.split("\r\n"):
            key, sep, value = line.partition(":")
            if not sep or not key or key != key.strip() or " " in key:
                if line.strip():
                    self.stats.bad_lines += 1
                    self.stats.note("line without a header name")
                continue
            if value.startswith(" "):
                value = value[1:]
            if key in fields:
                if multi is None:
                    multi = {}
                multi.setdefault(key, [fields[key]]).append(value)
            else:
                fields[key] = value
        if "Event" not in fields and "Response" not in fields and "Action" not in fields:
            self.stats.dropped_frames += 1
            self.stats.note("message without Event, Response or Action")
            return None
        self.stats.messages += 1
        return AmiMessage(fields, multi, received_at)
