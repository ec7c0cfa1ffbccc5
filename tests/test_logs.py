"""Log lines: structlog key-value events whose timestamps say their UTC offset."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import time

from callback_dialer.config import LoggingConfig
from callback_dialer.logs import configure_logging, get_logger


def test_a_json_log_line_carries_an_iso_timestamp_with_its_utc_offset(monkeypatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Moscow")
    time.tzset()
    stream = io.StringIO()
    try:
        configure_logging(LoggingConfig(level="info", format="json"), stream=stream)
        get_logger("test").info("callback attempt finished", outcome="answered")
        logging.getLogger("aiohttp.server").warning("a library's line")
    finally:
        monkeypatch.undo()
        time.tzset()
        logging.getLogger().handlers.clear()
    ours, theirs = (json.loads(line) for line in stream.getvalue().splitlines())
    assert ours["event"] == "callback attempt finished" and ours["outcome"] == "answered"
    for line in (ours, theirs):
        stamp = dt.datetime.fromisoformat(line["timestamp"])
        assert stamp.utcoffset() == dt.timedelta(hours=3), line["timestamp"]
        assert line["timestamp"].endswith("+03:00")
        assert abs(stamp.timestamp() - time.time()) < 60
