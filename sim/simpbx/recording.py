"""The simulator's traffic in the capture format of ../shared/ami-captures.

    {"t": 9.4702, "dir": "in", "raw": "Event: QueueCallerAbandon\\r\\n...\\r\\n\\r\\n"}

``t`` is seconds of the shared clock since the recording began (so a simulated day replays
with its true durations), ``dir`` is ``in`` for what the PBX says and ``out`` for the actions a
client sent it. A recording starts with the AMI greeting line, like the captures, so
``callback-dialer replay`` and ``CaptureSource`` take it as they take a real one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .amiserver import GREETING
from .clock import Clock


@dataclass(frozen=True, slots=True)
class Record:
    t: float
    direction: str
    raw: str

    def to_json(self) -> str:
        return json.dumps(
            {"t": round(self.t, 4), "dir": self.direction, "raw": self.raw}, ensure_ascii=False
        )


class Recorder:
    """Collects records in memory and, given a handle, writes each as a line as it comes.

    Use as a PBX listener (``pbx.listeners.append(recorder)``: every event, ``in``) and as a
    PbxAmi tap (``ami.taps.append(recorder.tap)``: the clients' actions and our replies)."""

    def __init__(
        self,
        clock: Clock,
        handle: IO[str] | None = None,
        *,
        keep: bool = True,
        greeting: bool = True,
    ) -> None:
        self.clock = clock
        self.handle = handle
        self.keep = keep
        self.origin = clock.now()
        self.records: list[Record] = []
        self.count = 0
        if greeting:
            self._add("in", GREETING)

    def __call__(self, data: bytes) -> None:
        self._add("in", data.decode("utf-8"))

    def tap(self, direction: str, data: bytes) -> None:
        self._add(direction, data.decode("utf-8"))

    def _add(self, direction: str, raw: str) -> None:
        record = Record(self.clock.now() - self.origin, direction, raw)
        self.count += 1
        if self.keep:
            self.records.append(record)
        if self.handle is not None:
            self.handle.write(record.to_json() + "\n")

    def flush(self) -> None:
        if self.handle is not None:
            self.handle.flush()

    def write(self, path: Path) -> Path:
        """Write the kept records to ``path`` as a capture file."""
        with path.open("w", encoding="utf-8") as out:
            for record in self.records:
                out.write(record.to_json() + "\n")
        return path

    def events(self) -> list[str]:
        """The raw text of every ``in`` record except the greeting."""
        return [r.raw for r in self.records if r.direction == "in" and r.raw.startswith("Event:")]
