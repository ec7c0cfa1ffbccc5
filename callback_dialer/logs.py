"""structlog for every log line: key-value events, coloured on a terminal, JSON elsewhere.

Libraries that log through the standard ``logging`` module (panoramisk, aiohttp, rq) are routed
through the same renderer, so one stream holds everything in one format.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Any

import structlog

from .config import LoggingConfig

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _timestamp(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """ISO 8601 local time WITH its UTC offset (2026-12-01T09:30:42.617+03:00): a line read
    beside Asterisk's logs, in another zone or across a DST change, still says when it was."""
    event["timestamp"] = dt.datetime.now().astimezone().isoformat(timespec="milliseconds")
    return event


def _renderer(fmt: str, stream: Any) -> Any:
    use_console = fmt == "console" or (fmt == "auto" and getattr(stream, "isatty", lambda: False)())
    if use_console:
        return structlog.dev.ConsoleRenderer(colors=stream.isatty())
    return structlog.processors.JSONRenderer(ensure_ascii=False)


def configure_logging(config: LoggingConfig, stream: Any = None) -> None:
    stream = stream or sys.stderr
    level = _LEVELS[config.level]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _timestamp,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _renderer(config.format, stream),
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # panoramisk logs every message at debug and its own reconnect noise at info/error; our
    # wrapper reports connection changes itself.
    logging.getLogger("panoramisk").setLevel(max(level, logging.WARNING))
    logging.getLogger("aiohttp.access").setLevel(max(level, logging.WARNING))


def get_logger(name: str, **bound: Any) -> Any:
    # A lazy proxy: modules take their logger at import time, before logging is configured.
    return structlog.get_logger(name, **bound)
