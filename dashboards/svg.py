"""Hand-written inline SVG charts for the static report: lines over time and grouped bars.

No plotting library is needed (nor installed); the output is plain SVG markup that any
browser draws, embedded in the report so the file stays self-contained. Text is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

__all__ = ["PALETTE", "Marker", "Series", "bar_chart", "format_value", "line_chart"]

# Grafana's classic palette, so the report looks like the dashboards.
PALETTE = (
    "#7EB26D",
    "#EAB839",
    "#6ED0E0",
    "#EF843C",
    "#E24D42",
    "#1F78C1",
    "#BA43A9",
    "#705DA0",
    "#508642",
    "#CCA300",
)

_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 12, 10, 26


@dataclass(frozen=True)
class Series:
    """A named line: ``points`` are (unix seconds, value), in any order."""

    name: str
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Marker:
    """A vertical marker (a release) at unix seconds ``x``."""

    x: float
    label: str


def format_value(value: float, unit: str) -> str:
    """``value`` in a Grafana ``unit`` (the subset the dashboards use)."""
    if not math.isfinite(value):
        return "–"
    if unit == "percentunit":
        return f"{value * 100:.3g}%"
    if unit == "s":
        return _duration(value)
    if unit == "ms":
        return _duration(value / 1000)
    suffix = "/s" if unit == "reqps" else ""
    return _short(value) + suffix


def _duration(seconds: float) -> str:
    magnitude = abs(seconds)
    if magnitude == 0:
        return "0 s"
    if magnitude < 1:
        return f"{seconds * 1000:.3g} ms"
    if magnitude < 120:
        return f"{seconds:.3g} s"
    if magnitude < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def _short(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 1e12:  # e-values of strong detections: 3.22e+17, not "3.22e+08G"
        return f"{value:.3g}"
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= factor:
            return f"{value / factor:.3g}{suffix}"
    if magnitude and magnitude < 1e-3:
        return f"{value:.2e}"
    return f"{value:.3g}"


def _shorten(label: str, limit: int = 18) -> str:
    """Keep the end of long labels: it is what tells categories apart (``model #3``)."""
    return label if len(label) <= limit else "…" + label[-(limit - 1) :]


def _nice_ceiling(value: float) -> float:
    """The smallest 1/2/2.5/5 × 10^k at or above ``value`` (1 for nothing to show)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10 * power


def _frame(width: int, height: int, top: float, unit: str) -> list[str]:
    plot_w, plot_h = width - _LEFT - _RIGHT, height - _TOP - _BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" class="chart">',
        f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" fill="#ffffff" '
        'stroke="#d0d4da"/>',
    ]
    for i in range(5):
        value = top * i / 4
        y = _TOP + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{_LEFT}" x2="{width - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eceef1"/>'
        )
        parts.append(
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">'
            f"{escape(format_value(value, unit))}</text>"
        )
    return parts


def _time_label(seconds: float, span: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%H:%M" if span <= 2 * 86400 else "%m-%d %H:%M")


def line_chart(
    series: Sequence[Series],
    *,
    x_range: tuple[float, float],
    unit: str,
    markers: Sequence[Marker] = (),
    width: int = 560,
    height: int = 220,
) -> str:
    """Lines over the time range ``x_range`` (unix seconds), y from 0, with release markers."""
    x0, x1 = x_range
    span = max(x1 - x0, 1.0)
    values = [y for s in series for _, y in s.points if math.isfinite(y)]
    top = _nice_ceiling(max(values, default=0.0))
    plot_w, plot_h = width - _LEFT - _RIGHT, height - _TOP - _BOTTOM

    def px(x: float) -> float:
        return _LEFT + plot_w * (x - x0) / span

    def py(y: float) -> float:
        return _TOP + plot_h - plot_h * min(max(y, 0.0), top) / top

    parts = _frame(width, height, top, unit)
    for i in range(5):
        x = x0 + span * i / 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(
            f'<text x="{px(x):.1f}" y="{height - 8}" text-anchor="{anchor}" class="tick">'
            f"{_time_label(x, span)}</text>"
        )
    for marker in markers:
        if x0 <= marker.x <= x1:
            x = px(marker.x)
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP}" y2="{height - _BOTTOM}" '
                'stroke="#8F3BB8" stroke-dasharray="4 3"><title>'
                f"{escape(marker.label)}</title></line>"
            )
    for index, line in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        points = sorted((x, y) for x, y in line.points if math.isfinite(y))
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        title = f"<title>{escape(line.name)}</title>"
        if len(points) == 1:
            x, y = points[0]
            parts.append(
                f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}">{title}</circle>'
            )
        elif points:
            parts.append(
                f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2" '
                f'stroke-linejoin="round">{title}</polyline>'
            )
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    unit: str,
    stacked: bool = False,
    width: int = 560,
    height: int = 220,
) -> str:
    """One group (or stack) of bars per category; ``series`` are (name, value per category)."""
    if stacked:
        totals = [sum(values[i] for _, values in series) for i in range(len(categories))]
    else:
        totals = [v for _, values in series for v in values]
    top = _nice_ceiling(max((t for t in totals if math.isfinite(t)), default=0.0))
    plot_w, plot_h = width - _LEFT - _RIGHT, height - _TOP - _BOTTOM
    slot = plot_w / max(len(categories), 1)
    bars = 1 if stacked else max(len(series), 1)
    bar_w = slot * 0.8 / bars
    parts = _frame(width, height, top, unit)
    every = max(1, math.ceil(len(categories) / 12))
    for i, category in enumerate(categories):
        left = _LEFT + slot * i + slot * 0.1
        base = 0.0
        for j, (name, values) in enumerate(series):
            value = values[i] if math.isfinite(values[i]) else 0.0
            h = plot_h * min(max(value, 0.0), top) / top
            x = left if stacked else left + bar_w * j
            y = _TOP + plot_h - h - (plot_h * base / top if stacked else 0.0)
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                f'height="{h:.1f}" fill="{PALETTE[j % len(PALETTE)]}"><title>'
                f"{escape(category)} · {escape(name)}: {escape(format_value(value, unit))}"
                "</title></rect>"
            )
            base += value if stacked else 0.0
        if i % every == 0:
            parts.append(
                f'<text x="{_LEFT + slot * (i + 0.5):.1f}" y="{height - 8}" '
                f'text-anchor="middle" class="tick">{escape(_shorten(category))}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)
