"""Capture files: AMI traffic recorded one message a line, the format of ../shared/ami-captures.

    {"t": 9.4702, "dir": "in", "raw": "Event: QueueCallerAbandon\\r\\n...\\r\\n\\r\\n"}

``t`` is seconds since the connection opened; ``dir`` is ``in`` (from Asterisk) or ``out``
(our actions); ``raw`` is the message as on the wire. A capture replays through the same decoder
and handlers as a live link (``CaptureSource``); ``CaptureWriter`` records a live link.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..clock import Clock
from .stream import AmiStream


class CaptureError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class CaptureRecord:
    t: float
    direction: str
    raw: str


def read_capture(path: Path) -> Iterator[CaptureRecord]:
    """Records in order; a damaged line is an error naming the file and line."""
    try:
        handle = path.open("r", encoding="utf-8")
    except OSError as exc:
        raise CaptureError(f"{path}: cannot read ({exc.strerror})") from None
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                record = CaptureRecord(float(data["t"]), str(data["dir"]), str(data["raw"]))
            except (ValueError, KeyError, TypeError) as exc:
                raise CaptureError(f"{path}:{number}: not a capture record ({exc})") from None
            if record.direction not in ("in", "out"):
                raise CaptureError(f"{path}:{number}: dir must be 'in' or 'out'")
            yield record


class CaptureSource:
    """Feeds a capture's ``in`` traffic into an AmiStream, as a live connection would.

    ``start`` maps the capture's ``t`` to this clock's time (default: now). With ``pace`` the
    frames go out on their recorded schedule (scaled by the clock); without, at once, each
    stamped with its recorded time so durations stay true.
    """

    def __init__(
        self,
        path: Path,
        stream: AmiStream,
        clock: Clock,
        *,
        start: float | None = None,
        pace: bool = False,
        skip_events: int = 0,
    ) -> None:
        self.path = path
        self.stream = stream
        self.clock = clock
        self.start = start
        self.pace = pace
        self.skip_events = skip_events  # fuzzing: attach as if mid-way through the capture

    async def run(self) -> int:
        origin = self.clock.now() if self.start is None else self.start
        fed = skipped = 0
        for record in read_capture(self.path):
            if record.direction != "in":
                continue
            if skipped < self.skip_events and record.raw.startswith("Event:"):
                skipped += 1
                continue
            at = origin + record.t
            if self.pace:
                await self.clock.sleep(at - self.clock.now())
            fed += self.stream.feed(record.raw.encode("utf-8"), at)
        return fed


class CaptureWriter:
    """Writes a live link's traffic in the capture format, the secret masked."""

    _SECRET = re.compile(r"^(Secret:)[^\r\n]*", re.MULTILINE | re.IGNORECASE)

    def __init__(self, handle: IO[str]) -> None:
        self.handle = handle
        self.origin = time.monotonic()
        self.count = 0

    def __call__(self, direction: str, raw: str) -> None:
        if direction == "out":
            raw = self._SECRET.sub(r"\1 ********", raw)
        record = {"t": round(time.monotonic() - self.origin, 4), "dir": direction, "raw": raw}
        self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.handle.flush()
        self.count += 1
