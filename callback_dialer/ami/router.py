"""Event name -> handler methods, in one table per consumer; one bad handler never stops the
others or the connection (panoramisk fault 2: an exception in a handler dropped the link)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ..logs import get_logger
from .frames import AmiMessage

log = get_logger(__name__)

Handler = Callable[[AmiMessage], Any]


class Consumer(Protocol):
    # Event name -> name of the method that handles it.
    HANDLERS: dict[str, str]


class EventRouter:
    def __init__(self) -> None:
        self._table: dict[str, list[Handler]] = {}
        self._taps: list[Handler] = []
        self.handler_errors = 0

    def add(self, consumer: Consumer) -> None:
        for event, method in consumer.HANDLERS.items():
            self._table.setdefault(event, []).append(getattr(consumer, method))

    def on(self, event: str, handler: Handler) -> None:
        self._table.setdefault(event, []).append(handler)

    def tap(self, handler: Handler) -> None:
        """See every event (recording, debugging), before the handlers."""
        self._taps.append(handler)

    def events(self) -> frozenset[str]:
        """The events somebody handles; everything else is dropped on arrival."""
        return frozenset(self._table)

    def dispatch(self, message: AmiMessage) -> None:
        for tap in self._taps:
            self._call(tap, message)
        handlers = self._table.get(message.fields.get("Event", ""))
        if handlers:
            for handler in handlers:
                self._call(handler, message)

    def _call(self, handler: Handler, message: AmiMessage) -> None:
        try:
            handler(message)
        except Exception:
            self.handler_errors += 1
            log.exception(
                "event handler failed; event skipped, connection kept",
                ami_event=message.event,
                handler=getattr(handler, "__qualname__", "?"),
            )
