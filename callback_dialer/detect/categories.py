"""The category of a call: what the caller chose in the IVR.

In order: the ``CALLBACK_CATEGORY`` channel variable the IVR sets (manager.conf ``channelvars``
brings it on every channel event), the ``Category`` of a CallbackRequested user event, the
queue the caller waited in (``detection.queue_categories``), else the fallback (``other``). A
name that is not a configured category maps to the fallback, with one warning per name.
"""

from __future__ import annotations

from ..config import Config
from ..logs import get_logger

log = get_logger(__name__)


class CategoryResolver:
    def __init__(self, config: Config) -> None:
        self.names = frozenset(config.category_names())
        self.by_queue = dict(config.detection.queue_categories)
        self.fallback = config.detection.fallback_category
        self._warned: set[str] = set()
        self.unknown_seen: dict[str, int] = {}

    def resolve(self, chanvar: str = "", requested: str = "", queue: str = "") -> str:
        for value in (chanvar, requested):
            if value:
                if value in self.names:
                    return value
                return self._unknown(value)
        if queue and queue in self.by_queue:
            return self.by_queue[queue]
        return self.fallback

    def _unknown(self, name: str) -> str:
        self.unknown_seen[name] = self.unknown_seen.get(name, 0) + 1
        if name not in self._warned:
            self._warned.add(name)
            # The name came from the dialplan, not a caller; still, keep it printable.
            shown = "".join(ch for ch in name[:40] if ch.isprintable())
            log.warning(
                "unknown category from the dialplan; using the fallback",
                category=shown,
                fallback=self.fallback,
                known=sorted(self.names),
            )
        return self.fallback
