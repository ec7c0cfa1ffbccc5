"""Reading and reshaping the recorded captures for tests, and looking up in a recording what
differs from one recording to the next (Uniqueids, channel names, times)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from callback_dialer.ami.frames import FrameDecoder


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def rewrite(path: Path, out: Path, change: Callable[[dict], dict | None]) -> Path:
    """A variant of a capture: ``change`` may alter a record or drop it (None)."""
    lines = []
    for record in load(path):
        changed = change(dict(record))
        if changed is not None:
            lines.append(json.dumps(changed, ensure_ascii=False))
    out.write_text("\n".join(lines) + "\n", "utf-8")
    return out


def replace_in_raw(old: str, new: str) -> Callable[[dict], dict]:
    def change(record: dict) -> dict:
        record["raw"] = record["raw"].replace(old, new)
        return record

    return change


@dataclass(frozen=True, slots=True)
class RecordedChannel:
    """A channel as one recording shows it: what Asterisk named it, and when (``t``)."""

    uniqueid: str
    name: str
    created: float  # t of its Newchannel
    hung_up: float | None  # t of its Hangup (None: still up when the recording ended)


def caller_channel(path: Path, caller_num: str) -> RecordedChannel:
    """The first channel created for ``caller_num`` (the caller ID as it came in): an inbound
    call's trunk channel, whose Uniqueid is the call id the dialer reports."""
    found: RecordedChannel | None = None
    for record in load(path):
        if record["dir"] != "in" or not record["raw"].startswith(
            ("Event: Newchannel", "Event: Hangup\r")
        ):
            continue
        message = FrameDecoder().feed(record["raw"].encode())[0]
        if found is None:
            if message.event == "Newchannel" and message.get("CallerIDNum") == caller_num:
                found = RecordedChannel(
                    message.get("Uniqueid"), message.get("Channel"), record["t"], None
                )
        elif message.event == "Hangup" and message.get("Uniqueid") == found.uniqueid:
            return RecordedChannel(found.uniqueid, found.name, found.created, record["t"])
    if found is None:
        raise LookupError(f"{path.name}: no channel was created for {caller_num!r}")
    return found
