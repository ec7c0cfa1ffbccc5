"""Calling hours: when a customer may be called back, in the PBX's time zone."""

from __future__ import annotations

import datetime as dt

from .config import HoursConfig

_LOOKAHEAD_DAYS = 400  # a year of holidays and closed weekdays cannot hide the next opening


class CallingHours:
    def __init__(self, config: HoursConfig) -> None:
        self.config = config
        self.tz = config.tzinfo()
        self._holidays = set(config.holidays)
        self._ranges = [config.ranges(day) for day in range(7)]

    def local(self, ts: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(ts, self.tz)

    def day_key(self, ts: float) -> str:
        """The local date of ``ts`` as YYYY-MM-DD: the day a statistic belongs to."""
        return self.local(ts).date().isoformat()

    def hour(self, ts: float) -> int:
        return self.local(ts).hour

    def _windows(self, day: dt.date) -> list[tuple[dt.datetime, dt.datetime]]:
        if day in self._holidays:
            return []
        out = []
        for start, end in self._ranges[day.weekday()]:
            begin = dt.datetime.combine(day, start, self.tz)
            finish = (
                dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), self.tz)
                if end is None
                else dt.datetime.combine(day, end, self.tz)
            )
            out.append((begin, finish))
        return out

    def is_open(self, ts: float) -> bool:
        now = self.local(ts)
        return any(begin <= now < end for begin, end in self._windows(now.date()))

    def next_open(self, ts: float) -> float | None:
        """``ts`` itself when open, else the start of the next opening; None if there is none."""
        now = self.local(ts)
        day = now.date()
        for offset in range(_LOOKAHEAD_DAYS):
            for begin, end in self._windows(day + dt.timedelta(days=offset)):
                if end <= now:
                    continue
                return ts if begin <= now else begin.timestamp()
        return None

    def closes_at(self, ts: float) -> float | None:
        """When the window that is open at ``ts`` ends (None when closed at ``ts``)."""
        now = self.local(ts)
        for begin, end in self._windows(now.date()):
            if begin <= now < end:
                return end.timestamp()
        return None
