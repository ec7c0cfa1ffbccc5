"""What the page and the API show, as JSON-ready dicts, masked for viewers where the config
says so.

Numbers are only ever shown as E.164 (``+79161234567``) or, to a viewer with
``[web] mask_numbers_for_viewers``, masked (``+7•••••••••67``). Free text that may carry a
number someone typed (a note, a gateway's error message) is masked the same way for them.
Names are returned as the raw text they are; the page puts them in with ``textContent``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ..config import Config
from ..phone import NumberPolicy
from ..queue.models import Callback, HistoryEntry

if TYPE_CHECKING:
    from .auth import Principal
    from .ports import StatusSource

_NUMBER_IN_TEXT = re.compile(r"\+?[1-9]\d{6,14}")


class Views:
    def __init__(self, config: Config, status: StatusSource) -> None:
        self.status = status
        self.config = config
        self.numbers = NumberPolicy(config.phone)

    # ------------------------------------------------------------------ masking

    def masked_for(self, who: Principal) -> bool:
        """Whether ``who`` sees numbers masked."""
        return who.role == "viewer" and self.config.web.mask_numbers_for_viewers

    def number(self, number: str, masked: bool) -> str:
        if not masked:
            return number
        try:
            return self.numbers.parse_e164(number).masked()
        except ValueError:
            return "+" + "•" * max(0, len(number) - 1)

    def text(self, text: str, masked: bool) -> str:
        if not masked or not text:
            return text

        def hide(match: re.Match[str]) -> str:
            found = match.group(0)
            return self.number(found if found.startswith("+") else "+" + found, True)

        return _NUMBER_IN_TEXT.sub(hide, text)

    # ------------------------------------------------------------------ callbacks

    def callback(self, cb: Callback, masked: bool, position: int | None = None) -> dict[str, Any]:
        out = cb.to_public()
        out["number"] = self.number(cb.number, masked)
        out["note"] = self.text(cb.note, masked)
        out["reason"] = self.text(cb.reason, masked)  # a supervisor's cancel reason is free text
        out["first_dialed_at"] = cb.first_dialed_at
        out["day"] = cb.day
        if position is not None:
            out["position"] = position
        return out

    def history(self, entries: list[HistoryEntry], masked: bool) -> list[dict[str, Any]]:
        return [
            {
                "at": e.at,
                "event": e.event,
                "state": e.state,
                "reason": self.text(e.reason, masked),
                "actor": e.actor,
                "detail": e.detail,
            }
            for e in entries
        ]

    def in_progress(
        self, flights: list[dict[str, Any]], dialing: list[Callback], masked: bool
    ) -> list[dict[str, Any]]:
        """Attempts this dialer is making, and callbacks another dialer holds (by lease)."""
        names = {cb.id: cb.name for cb in dialing}
        agent_names = {a.interface: a.name for a in self.status.agents()}
        out = []
        for f in flights:
            out.append(
                {
                    "id": f["id"],
                    "agent": f["agent"],
                    "agent_name": agent_names.get(f["agent"], ""),
                    "number": self.number(f["number"], masked),
                    "name": names.get(f["id"], ""),
                    "category": f["category"],
                    "stage": f["stage"],
                    "since": f["since"],
                    "started_at": f["started_at"],
                }
            )
        ours = {f["id"] for f in flights}
        for cb in dialing:
            if cb.id in ours:
                continue
            out.append(
                {
                    "id": cb.id,
                    "agent": cb.agent,
                    "agent_name": agent_names.get(cb.agent, ""),
                    "number": self.number(cb.number, masked),
                    "name": cb.name,
                    "category": cb.category,
                    "stage": cb.stage or "claimed",
                    "since": cb.updated_at,
                    "started_at": cb.updated_at,
                }
            )
        return out

    # ------------------------------------------------------------------ the rest

    def agents(self) -> list[dict[str, Any]]:
        return [
            {
                "interface": a.interface,
                "name": a.name,
                "state": a.state,
                "paused_reason": a.paused_reason,
                "queues": list(a.queues),
                "categories": list(a.categories),
                "since": a.since,
                "reserved_for": a.reserved_for,
            }
            for a in self.status.agents()
        ]

    def dispatch(self) -> dict[str, Any]:
        d = self.status.dispatch_state()
        return {
            "paused": d.paused,
            "paused_by": d.paused_by,
            "paused_reason": d.paused_reason,
            "alarm": d.alarm,
            "dispatching": d.dispatching,
            "blocked_by": d.blocked_by,
        }

    def categories(self) -> list[dict[str, str]]:
        return [
            {"name": c.name, "label": c.label or c.name, "label_ru": c.label_ru or c.name}
            for c in self.config.categories
        ]

    def clock_rate(self) -> float:
        """Seconds of the dialer's clock per real second (the demo runs faster; 0: frozen)."""
        return self.status.clock_rate()
