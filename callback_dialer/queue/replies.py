"""Reading Redis's replies, the same way in every reader of the queue's keys and streams.

The queue's clients speak bytes (rq needs ``decode_responses=False``), so every reader turns
values into text itself; and a stream's entry ids compare as (milliseconds, sequence), never
as strings ("10-0" sorts before "9-0").
"""

from __future__ import annotations

from typing import Any


def text(value: Any) -> str:
    """A reply value as text (bytes decoded as UTF-8; anything else as ``str``)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def stream_id(entry_id: str) -> tuple[int, int]:
    """A stream entry id ("1700000000000-3") in the order Redis keeps entries."""
    ms, _, seq = entry_id.partition("-")
    return int(ms or 0), int(seq or 0)
