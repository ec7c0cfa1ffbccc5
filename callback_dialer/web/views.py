"""What the page and the API show, as JSON-ready dicts, masked for viewers where the config
says so.

Numbers are only ever shown as E.164 (``+79161234567``) or, to a viewer with
``[web] mask_numbers_for_viewers``, masked (``+7•••••••••67``). Every free text is masked the
same way for them (``phone.mask_numbers``: anything number-shaped, however it is spelled):
caller names (a PBX often sends the number as the name), notes, cancel and pause reasons,
who did it, history details, agents' pause reasons, side jobs' errors. Text is also cleaned of
control and bidi characters on the way out (``phone.clean_text``), so a record stored before
the input was cleaned cannot reorder the page either. Otherwise text is returned as the raw
text it is; the page puts it in with ``textContent``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..config import Config
from ..phone import NumberPolicy, clean_text, mask_numbers
from ..queue.models import Callback, HistoryEntry, Outage

if TYPE_CHECKING:
    from .auth import Principal
    from .ports import StatusSource


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
        """Free text as shown: cleaned, and with every number-shaped run masked for viewers."""
        shown = clean_text(text)
        return mask_numbers(shown, self.numbers) if masked and shown else shown

    def detail(self, value: Any, masked: bool) -> Any:
        """A history entry's details, every text in them shown as ``text`` shows it."""
        if isinstance(value, str):
            return self.text(value, masked)
        if isinstance(value, dict):
            return {k: self.detail(v, masked) for k, v in value.items()}
        if isinstance(value, list):
            return [self.detail(v, masked) for v in value]
        return value

    # ------------------------------------------------------------------ callbacks

    def callback(self, cb: Callback, masked: bool, position: int | None = None) -> dict[str, Any]:
        out = cb.to_public()
        out["number"] = self.number(cb.number, masked)
        out["caller_id"] = self.number(cb.caller_id, masked) if cb.caller_id else ""
        out["name"] = self.text(cb.name, masked)
        out["note"] = self.text(cb.note, masked)
        out["reason"] = self.text(cb.reason, masked)  # a supervisor's cancel reason is free text
        out["agent"] = self.text(cb.agent, masked)
        out["attempt_log"] = self.detail(out["attempt_log"], masked)
        out["first_dialed_at"] = cb.first_dialed_at
        out["day"] = cb.day
        if position is not None:
            out["position"] = position
        return out

    def outage(self, outage: Outage, masked: bool) -> dict[str, Any]:
        out = outage.to_public()
        # Free text typed by people (or a dialplan): masked like every other note.
        out["message"] = self.text(outage.message, masked)
        out["declared_by"] = self.text(outage.declared_by, masked)
        out["ended_by"] = self.text(outage.ended_by, masked)
        return out

    def history(self, entries: list[HistoryEntry], masked: bool) -> list[dict[str, Any]]:
        return [
            {
                "at": e.at,
                "event": e.event,
                "state": e.state,
                "reason": self.text(e.reason, masked),
                "actor": self.text(e.actor, masked),
                "detail": self.detail(e.detail, masked),
            }
            for e in entries
        ]

    def in_progress(
        self, flights: list[dict[str, Any]], dialing: list[Callback], masked: bool
    ) -> list[dict[str, Any]]:
        """Attempts this dialer is making, and callbacks another dialer holds (by lease)."""
        names = {cb.id: self.text(cb.name, masked) for cb in dialing}
        agent_names = {a.interface: self.text(a.name, masked) for a in self.status.agents()}
        out = []
        for f in flights:
            out.append(
                {
                    "id": f["id"],
                    "agent": self.text(f["agent"], masked),
                    "agent_name": agent_names.get(f["agent"], ""),
                    "number": self.number(f["number"], masked),
                    "name": names.get(f["id"], ""),
                    "category": f["category"],
                    "stage": f["stage"],
                    "since": f["since"],
                    "started_at": f["started_at"],
                    # Placed by a previous run (or a replaced leader) and taken over by us.
                    "adopted": bool(f.get("adopted")),
                }
            )
        ours = {f["id"] for f in flights}
        for cb in dialing:
            if cb.id in ours:
                continue
            out.append(
                {
                    "id": cb.id,
                    "agent": self.text(cb.agent, masked),
                    "agent_name": agent_names.get(cb.agent, ""),
                    "number": self.number(cb.number, masked),
                    "name": names.get(cb.id, ""),
                    "category": cb.category,
                    "stage": cb.stage or "claimed",
                    "since": cb.updated_at,
                    "started_at": cb.updated_at,
                    "adopted": False,
                }
            )
        return out

    def stats(self, summary: dict[str, Any], masked: bool) -> dict[str, Any]:
        """A day's numbers as shown: why callbacks failed is the one text among them."""
        if not masked:
            return summary

        def reasons(counts: dict[str, int]) -> dict[str, int]:
            out: dict[str, int] = {}
            for reason, count in counts.items():
                shown = self.text(reason, True)
                out[shown] = out.get(shown, 0) + count
            return out

        return {
            **summary,
            "failed_by_reason": reasons(summary["failed_by_reason"]),
            "by_category": [
                {**row, "failed_by_reason": reasons(row["failed_by_reason"])}
                for row in summary["by_category"]
            ],
        }

    # ------------------------------------------------------------------ the rest

    def agents(self, masked: bool) -> list[dict[str, Any]]:
        return [
            {
                "interface": self.text(a.interface, masked),
                "name": self.text(a.name, masked),
                "state": a.state,
                "paused_reason": self.text(a.paused_reason, masked),
                "queues": list(a.queues),
                "categories": list(a.categories),
                "since": a.since,
                "reserved_for": self.text(a.reserved_for, masked),
            }
            for a in self.status.agents()
        ]

    def live(self, masked: bool) -> dict[str, Any]:
        """Asterisk's queues, live, and the free agents calling back leaves to them."""
        live = self.status.live_queues()
        return {
            "queues": [
                {
                    "queue": self.text(q.queue, masked),
                    "waiting": q.waiting,
                    "longest_wait_seconds": round(q.longest_wait),
                    "oldest_joined_at": q.oldest_joined_at,
                    "logged_in": q.logged_in,
                    "agents_free": q.agents_free,
                    "agents_on_live": q.agents_on_live,
                    "agents_on_callbacks": q.agents_on_callbacks,
                    "agents_paused": q.agents_paused,
                }
                for q in live.queues
            ],
            "holding_off": [
                {
                    "agent": self.text(h.agent, masked),
                    "queue": self.text(h.queue, masked),
                    "reason": h.reason,
                    "waiting": h.waiting,
                    "longest_wait_seconds": round(h.longest_wait),
                    "detail": self.text(h.detail, masked),
                }
                for h in live.holding
            ],
            "holding_since": live.holding_since,
            "callback_handicap_seconds": live.handicap,
        }

    def dispatch(self, masked: bool) -> dict[str, Any]:
        d = self.status.dispatch_state()
        return {
            "paused": d.paused,
            "paused_by": self.text(d.paused_by, masked),
            "paused_reason": self.text(d.paused_reason, masked),
            "alarm": self.text(d.alarm, masked),
            "dispatching": d.dispatching,
            "blocked_by": d.blocked_by,
            "instance": d.instance,
            "leader": d.leader,
        }

    def categories(self) -> list[dict[str, str]]:
        return [
            {"name": c.name, "label": c.label or c.name, "label_ru": c.label_ru or c.name}
            for c in self.config.categories
        ]

    def clock_rate(self) -> float:
        """Seconds of the dialer's clock per real second (the demo runs faster; 0: frozen)."""
        return self.status.clock_rate()
