"""Small SVG charts for BENCHMARKS.md (no plotting library in the environment): step CDFs,
grouped bars, lines on a log axis. Plain SVG 1.1 that GitHub renders as an image."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#7f7f7f")
FONT = 'font-family="DejaVu Sans, Arial, sans-serif"'


class Chart:
    def __init__(
        self,
        width: int = 760,
        height: int = 400,
        *,
        left: int = 64,
        right: int = 200,
        top: int = 40,
        bottom: int = 56,
    ) -> None:
        self.w, self.h = width, height
        self.left, self.right, self.top, self.bottom = left, right, top, bottom
        self.parts: list[str] = []
        self.legend: list[tuple[str, str, str]] = []  # (label, colour, kind)

    @property
    def pw(self) -> float:
        return self.w - self.left - self.right

    @property
    def ph(self) -> float:
        return self.h - self.top - self.bottom

    def text(
        self,
        x: float,
        y: float,
        s: str,
        *,
        size: int = 12,
        anchor: str = "start",
        weight: str = "normal",
        rotate: float | None = None,
        fill: str = "#222",
    ) -> None:
        transform = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate else ""
        self.parts.append(
            f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" {FONT} '
            f'text-anchor="{anchor}" font-weight="{weight}" fill="{fill}"'
            f"{transform}>{escape(s)}</text>"
        )

    def line(
        self,
        x1: float,
        y1: float,
        x2: float,
        y2: float,
        *,
        stroke: str = "#999",
        width: float = 1,
        dash: str = "",
    ) -> None:
        d = f' stroke-dasharray="{dash}"' if dash else ""
        self.parts.append(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
            f'stroke="{stroke}" stroke-width="{width}"{d}/>'
        )

    def polyline(
        self,
        points: Sequence[tuple[float, float]],
        *,
        stroke: str,
        width: float = 2,
        dash: str = "",
    ) -> None:
        d = f' stroke-dasharray="{dash}"' if dash else ""
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        self.parts.append(
            f'<polyline points="{pts}" fill="none" stroke="{stroke}" stroke-width="{width}"{d}/>'
        )

    def rect(self, x: float, y: float, w: float, h: float, *, fill: str) -> None:
        self.parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" '
            f'height="{max(h, 0):.1f}" fill="{fill}"/>'
        )

    def title(self, s: str, sub: str = "") -> None:
        self.text(self.left, 20, s, size=14, weight="bold")
        if sub:
            self.text(self.left, 34, sub, size=11, fill="#555")

    def axes(self, xlabel: str, ylabel: str) -> None:
        x0, y0 = self.left, self.top + self.ph
        self.line(x0, self.top, x0, y0, stroke="#333")
        self.line(x0, y0, x0 + self.pw, y0, stroke="#333")
        self.text(x0 + self.pw / 2, self.h - 14, xlabel, anchor="middle")
        self.text(16, self.top + self.ph / 2, ylabel, anchor="middle", rotate=-90)

    def add_legend(self, label: str, colour: str, kind: str = "line") -> None:
        self.legend.append((label, colour, kind))

    def render(self) -> str:
        x = self.w - self.right + 14
        for i, (label, colour, kind) in enumerate(self.legend):
            y = self.top + 10 + i * 20
            if kind == "line":
                self.line(x, y - 4, x + 22, y - 4, stroke=colour, width=2.5)
            elif kind == "dash":
                self.line(x, y - 4, x + 22, y - 4, stroke=colour, width=2.5, dash="6 4")
            else:
                self.rect(x, y - 10, 22, 11, fill=colour)
            self.text(x + 28, y, label, size=11)
        body = "\n".join(self.parts)
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.w}" height="{self.h}" '
            f'viewBox="0 0 {self.w} {self.h}">\n<rect width="100%" height="100%" '
            f'fill="white"/>\n{body}\n</svg>\n'
        )


def cdf_chart(
    series: list[tuple[str, list[float], str]] | list[tuple[str, list[float], str, str]],
    *,
    title: str,
    subtitle: str = "",
    xmax: float = 60.0,
    xlabel: str = "minutes from the missed call",
    marker: float | None = 15.0,
) -> str:
    """Step CDFs: the share of callers (y) reached within x minutes. ``series``: (label,
    values in minutes - inf for never, style "line" or "dash"[, colour])."""
    c = Chart()
    c.title(title, subtitle)
    c.axes(xlabel, "share of missed callers")
    sx = lambda v: c.left + min(v, xmax) / xmax * c.pw  # noqa: E731
    sy = lambda v: c.top + (1 - v) * c.ph  # noqa: E731
    for i in range(0, 11, 2):
        y = sy(i / 10)
        c.line(c.left, y, c.left + c.pw, y, stroke="#eee")
        c.text(c.left - 6, y + 4, f"{i * 10}%", size=10, anchor="end")
    step = 10 if xmax > 30 else 5
    for m in range(0, int(xmax) + 1, step):
        c.line(sx(m), c.top + c.ph, sx(m), c.top + c.ph + 4, stroke="#333")
        c.text(sx(m), c.top + c.ph + 17, str(m), size=10, anchor="middle")
    if marker is not None:
        c.line(sx(marker), c.top, sx(marker), c.top + c.ph, stroke="#888", dash="3 3")
        c.text(sx(marker) + 4, c.top + 12, f"{marker:g} min", size=10, fill="#666")
    for i, (label, values, style, *rest) in enumerate(series):
        colour = rest[0] if rest else COLORS[i % len(COLORS)]
        data = sorted(values)
        n = len(data)
        if not n:
            continue
        pts = [(sx(0), sy(0))]
        for k, v in enumerate(data, 1):
            if v > xmax:
                break
            pts.append((sx(v), pts[-1][1]))
            pts.append((sx(v), sy(k / n)))
        pts.append((sx(xmax), pts[-1][1]))
        c.polyline(pts, stroke=colour, dash="6 4" if style == "dash" else "")
        c.add_legend(f"{label} (n={n})", colour, style)
    return c.render()


def bar_chart(
    groups: list[str],
    bars: list[tuple[str, list[float]]],
    *,
    title: str,
    subtitle: str = "",
    ylabel: str = "minutes",
    whiskers: list[list[float]] | None = None,
    colours: Sequence[str] = COLORS,
) -> str:
    """Grouped bars (one group per category, one bar per series); values may be inf (drawn as
    a hatched full-height bar labelled "never")."""
    c = Chart()
    c.title(title, subtitle)
    c.axes("", ylabel)
    finite = [v for _, vals in bars for v in vals if math.isfinite(v)]
    if whiskers:
        finite += [v for w in whiskers for v in w if math.isfinite(v)]
    top = _nice(max(finite, default=1.0))
    sy = lambda v: c.top + (1 - min(v, top) / top) * c.ph  # noqa: E731
    for i in range(6):
        v = top * i / 5
        c.line(c.left, sy(v), c.left + c.pw, sy(v), stroke="#eee")
        c.text(c.left - 6, sy(v) + 4, f"{v:g}", size=10, anchor="end")
    gw = c.pw / len(groups)
    bw = gw * 0.8 / len(bars)
    for g, name in enumerate(groups):
        c.text(c.left + gw * (g + 0.5), c.top + c.ph + 17, name, size=11, anchor="middle")
        for b, (_, vals) in enumerate(bars):
            v = vals[g]
            x = c.left + gw * g + gw * 0.1 + b * bw
            colour = colours[b % len(colours)]
            if math.isnan(v):
                continue
            c.rect(x, sy(v), bw - 2, c.top + c.ph - sy(v), fill=colour)
            label = "never" if not math.isfinite(v) else (f"{v:.1f}" if v < 10 else f"{v:.0f}")
            c.text(x + (bw - 2) / 2, sy(v) - 4, label, size=9, anchor="middle")
            if whiskers and math.isfinite(whiskers[b][g]):
                w = whiskers[b][g]
                cx = x + (bw - 2) / 2
                c.line(cx, sy(v), cx, sy(w), stroke="#333")
                c.line(cx - 4, sy(w), cx + 4, sy(w), stroke="#333")
    for b, (label, _) in enumerate(bars):
        c.add_legend(label, colours[b % len(colours)], "box")
    return c.render()


def log_lines(
    xs: list[float],
    series: list[tuple[str, list[float]]],
    *,
    title: str,
    subtitle: str = "",
    xlabel: str,
    ylabel: str,
) -> str:
    """Lines over a log10 x axis (the agent sweep)."""
    c = Chart()
    c.title(title, subtitle)
    c.axes(xlabel, ylabel)
    lo, hi = math.log10(min(xs)), math.log10(max(xs))
    top = _nice(max(v for _, vals in series for v in vals))
    sx = lambda v: c.left + (math.log10(v) - lo) / (hi - lo or 1) * c.pw  # noqa: E731
    sy = lambda v: c.top + (1 - v / top) * c.ph  # noqa: E731
    for i in range(6):
        v = top * i / 5
        c.line(c.left, sy(v), c.left + c.pw, sy(v), stroke="#eee")
        c.text(c.left - 6, sy(v) + 4, f"{v:g}", size=10, anchor="end")
    for x in xs:
        c.text(sx(x), c.top + c.ph + 17, f"{x:g}", size=10, anchor="middle")
    for i, (label, vals) in enumerate(series):
        colour = COLORS[i % len(COLORS)]
        c.polyline([(sx(x), sy(v)) for x, v in zip(xs, vals, strict=True)], stroke=colour)
        for x, v in zip(xs, vals, strict=True):
            c.parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(v):.1f}" r="3" fill="{colour}"/>')
        c.add_legend(label, colour)
    return c.render()


def _nice(v: float) -> float:
    if v <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if v <= m * exp:
            return m * exp
    return 10 * exp


def scatter(
    points: list[tuple[str, float, float]],
    *,
    title: str,
    subtitle: str = "",
    xlabel: str,
    ylabel: str,
    vline: tuple[float, str] | None = None,
    highlight: str = "",
) -> str:
    """Labelled points (a trade-off: further left and lower is better); ``vline`` a limit."""
    c = Chart()
    c.title(title, subtitle)
    c.axes(xlabel, ylabel)
    xs = [x for _, x, _ in points] + ([vline[0]] if vline else [])
    lo_x, hi_x = min(xs), max(xs)
    pad = (hi_x - lo_x) * 0.1 or 1.0
    lo_x, hi_x = lo_x - pad, hi_x + pad
    top = _nice(max(y for _, _, y in points))
    sx = lambda v: c.left + (v - lo_x) / (hi_x - lo_x) * c.pw  # noqa: E731
    sy = lambda v: c.top + (1 - v / top) * c.ph  # noqa: E731
    for i in range(6):
        v = top * i / 5
        c.line(c.left, sy(v), c.left + c.pw, sy(v), stroke="#eee")
        c.text(c.left - 6, sy(v) + 4, f"{v:g}", size=10, anchor="end")
    for i in range(6):
        v = lo_x + (hi_x - lo_x) * i / 5
        c.text(sx(v), c.top + c.ph + 17, f"{v:.1f}", size=10, anchor="middle")
    if vline:
        c.line(sx(vline[0]), c.top, sx(vline[0]), c.top + c.ph, stroke="#d62728", dash="6 4")
        c.add_legend(vline[1], "#d62728", "dash")
    for label, x, y in points:
        colour = "#d62728" if label == highlight else "#1f77b4"
        c.parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="{colour}"/>')
        weight = "bold" if label == highlight else "normal"
        c.text(sx(x) + 6, sy(y) - 6, label, size=10, weight=weight)
    c.add_legend("a variant", "#1f77b4", "box")
    if highlight:
        c.add_legend(f"shipped: {highlight}", "#d62728", "box")
    return c.render()
