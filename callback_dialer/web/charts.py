"""Charts drawn on the server as SVG: no script, no library, nothing from the internet.

The page shows them as ``<img>``; an SVG loaded that way cannot run anything, and every text
in it is escaped anyway (category labels come from the config, but a chart is no place to
trust anything). ``Charts`` serves them at ``/charts/hourly.svg`` and
``/charts/categories.svg`` (``?day=&lang=``); the drawing functions take the numbers of
``web.stats`` and the words of ``web.pages`` and know nothing of requests.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from aiohttp import web

from ..config import Config
from ..jobs.reports import check_day
from .errors import ApiError
from .pages import Pages
from .stats import day_summary

if TYPE_CHECKING:
    from .ports import StatusSource

CACHE_SECONDS = 3.0

MISSED = "#d9822b"
CALLED = "#2f7ed8"
GRID = "#d8dde3"
INK = "#33404d"
MUTED = "#6b7785"
FONT = 'font-family="system-ui, sans-serif"'


def _attr(text: str) -> str:
    return escape(text, {'"': "&quot;"})


def _nice_max(value: float) -> float:
    """The top of the y axis: 1, 2, 2.5 or 5 times a power of ten, at least ``value``."""
    if value <= 0:
        return 4.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_attr(title)}">'
        f"<title>{escape(title)}</title>"
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>' + "".join(body) + "</svg>"
    )


def hourly_chart(stats: dict[str, Any], t: dict[str, str]) -> str:
    """Missed calls and callbacks done by hour of day, bars for the day, dashed lines for the
    average of the seven days before it."""
    width, height = 760, 270
    left, right, top, bottom = 44, 12, 56, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    hourly = stats["hourly"]
    missed, called = hourly["missed"], hourly["called_back"]
    week_missed = hourly.get("week_missed") or [0.0] * 24
    week_called = hourly.get("week_called_back") or [0.0] * 24
    top_value = _nice_max(max([*missed, *called, *week_missed, *week_called, 0]))
    step = plot_w / 24

    def y(value: float) -> float:
        return top + plot_h - plot_h * value / top_value

    body = [
        f'<text x="{left}" y="18" {FONT} font-size="14" font-weight="600" '
        f'fill="{INK}">{escape(t["chart_hourly"])}</text>'
    ]
    legend = (
        (MISSED, t["legend_missed"], False),
        (CALLED, t["legend_called_back"], False),
        (MISSED, t["legend_week_missed"], True),
        (CALLED, t["legend_week_called_back"], True),
    )
    x = left
    for color, label, dashed in legend:
        if dashed:
            body.append(
                f'<line x1="{x}" y1="36" x2="{x + 16}" y2="36" stroke="{color}" '
                'stroke-width="2" stroke-dasharray="4 3"/>'
            )
        else:
            body.append(f'<rect x="{x}" y="30" width="12" height="12" fill="{color}"/>')
        body.append(
            f'<text x="{x + 20}" y="40" {FONT} font-size="11" fill="{MUTED}">{escape(label)}</text>'
        )
        x += 30 + int(len(label) * 7.0)  # wide enough for Cyrillic at 11px too
    for i in range(5):
        value = top_value * i / 4
        gy = y(value)
        body.append(
            f'<line x1="{left}" y1="{gy:.1f}" x2="{width - right}" y2="{gy:.1f}" '
            f'stroke="{GRID}" stroke-width="1"/>'
        )
        body.append(
            f'<text x="{left - 6}" y="{gy + 4:.1f}" {FONT} font-size="10" '
            f'text-anchor="end" fill="{MUTED}">{_num(value)}</text>'
        )
    bar = step * 0.36
    for hour in range(24):
        x0 = left + hour * step + step * 0.12
        for offset, value, color in ((0.0, missed[hour], MISSED), (bar, called[hour], CALLED)):
            if value:
                body.append(
                    f'<rect x="{x0 + offset:.1f}" y="{y(value):.1f}" width="{bar:.1f}" '
                    f'height="{top + plot_h - y(value):.1f}" fill="{color}">'
                    f"<title>{hour:02d}:00 {_num(value)}</title></rect>"
                )
        if hour % 2 == 0:
            body.append(
                f'<text x="{left + hour * step + step / 2:.1f}" y="{height - 10}" '
                f'{FONT} font-size="10" text-anchor="middle" fill="{MUTED}">'
                f"{hour:02d}</text>"
            )
    for series, color in ((week_missed, MISSED), (week_called, CALLED)):
        points = " ".join(
            f"{left + h * step + step / 2:.1f},{y(v):.1f}" for h, v in enumerate(series)
        )
        body.append(
            f'<polyline points="{points}" fill="none" stroke="{color}" '
            'stroke-width="2" stroke-dasharray="4 3" stroke-opacity="0.85"/>'
        )
    return _svg(width, height, t["chart_hourly"], body)


def category_chart(stats: dict[str, Any], t: dict[str, str], lang: str) -> str:
    """Each category's share of the day's missed calls, as labelled horizontal bars."""
    rows = stats["by_category"]
    total = sum(r["missed"] for r in rows)
    width = 420
    label_w, row_h, top = 130, 26, 34
    height = top + row_h * max(1, len(rows)) + 10
    bar_max = width - label_w - 90
    body = [
        f'<text x="8" y="18" {FONT} font-size="14" font-weight="600" fill="{INK}">'
        f"{escape(t['chart_categories'])}</text>"
    ]
    if not rows:
        body.append(
            f'<text x="8" y="{top + 16}" {FONT} font-size="12" fill="{MUTED}">'
            f"{escape(t['none'])}</text>"
        )
    for i, row in enumerate(rows):
        y0 = top + i * row_h
        share = row["missed"] / total if total else 0.0
        label = row["label_ru"] if lang == "ru" else row["label"]
        body.append(
            f'<text x="{label_w - 8}" y="{y0 + 16}" {FONT} font-size="12" '
            f'text-anchor="end" fill="{INK}">{escape(label)}</text>'
        )
        body.append(
            f'<rect x="{label_w}" y="{y0 + 5}" width="{bar_max}" height="15" '
            f'fill="{GRID}" fill-opacity="0.45"/>'
        )
        if share:
            body.append(
                f'<rect x="{label_w}" y="{y0 + 5}" width="{bar_max * share:.1f}" '
                f'height="15" fill="{MISSED}"/>'
            )
        body.append(
            f'<text x="{label_w + bar_max + 8}" y="{y0 + 16}" {FONT} font-size="12" '
            f'fill="{INK}">{row["missed"]} · {share * 100:.0f}%</text>'
        )
    return _svg(width, height, t["chart_categories"], body)


class Charts:
    def __init__(self, config: Config, status: StatusSource, pages: Pages) -> None:
        self.config = config
        self.status = status
        self.pages = pages
        self._cache: dict[tuple[str, bool], tuple[float, dict[str, Any]]] = {}

    async def chart(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        lang = self.pages.language(request)
        now = self.status.now()
        day = request.query.get("day") or self.status.day_key(now)
        try:
            check_day(day)
        except ValueError as exc:
            raise ApiError(400, "bad_day", str(exc)) from None
        stats = await self._stats(day, now, week=kind == "hourly")
        t = self.pages.t(lang)
        svg = hourly_chart(stats, t) if kind == "hourly" else category_chart(stats, t, lang)
        return web.Response(text=svg, content_type="image/svg+xml", charset="utf-8")

    async def _stats(self, day: str, now: float, week: bool) -> dict[str, Any]:
        """Every open page fetches both charts after each stats update: they share one
        reading of the day for a few seconds instead of one each."""
        key = (day, week)
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        stats = await day_summary(self.status, self.config, day, now, week=week)
        if len(self._cache) > 64:
            self._cache.clear()
        self._cache[key] = (time.monotonic(), stats)
        return stats
