"""Calling hours in the PBX's time zone."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from callback_dialer.config import HoursConfig
from callback_dialer.hours import CallingHours

MSK = ZoneInfo("Europe/Moscow")


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=MSK).timestamp()


hours = CallingHours(
    HoursConfig(
        timezone="Europe/Moscow",
        weekly={
            "mon": ("09:00-13:00", "14:00-21:00"),
            "tue": ("09:00-21:00",),
            "sat": ("10:00-18:00",),
        },
        holidays=(dt.date(2026, 11, 24),),
    )
)


def test_open_and_closed() -> None:
    assert hours.is_open(at("2026-11-23T09:00"))  # Monday
    assert not hours.is_open(at("2026-11-23T13:30"))  # lunch gap
    assert not hours.is_open(at("2026-11-23T21:00"))  # the end is exclusive
    assert not hours.is_open(at("2026-11-24T12:00"))  # a holiday (Tuesday)
    assert not hours.is_open(at("2026-11-29T12:00"))  # Sunday


def test_next_opening_skips_gaps_holidays_and_closed_days() -> None:
    assert hours.next_open(at("2026-11-23T10:00")) == at("2026-11-23T10:00")
    assert hours.next_open(at("2026-11-23T13:30")) == at("2026-11-23T14:00")
    # Monday night -> Tuesday is a holiday -> Saturday 10:00
    assert hours.next_open(at("2026-11-23T22:00")) == at("2026-11-28T10:00")


def test_no_hours_at_all_means_no_opening() -> None:
    never = CallingHours(HoursConfig(weekly={}))
    assert never.next_open(at("2026-11-23T10:00")) is None


def test_day_and_hour_are_local() -> None:
    ts = at("2026-11-23T00:30")  # 21:30 UTC the day before
    assert hours.day_key(ts) == "2026-11-23"
    assert hours.hour(ts) == 0
