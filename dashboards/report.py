"""The static report: the dashboards' panels as one self-contained HTML file, without Grafana.

For teams that run telltale without Grafana. It walks the *built* dashboards
(:mod:`dashboards.view`), runs each panel's named query through the same macro renderer the
tests use, and draws time series and bars as inline SVG, tables as HTML tables and stats as
numbers. No script, stylesheet or image is loaded from anywhere: the file can be mailed.

Each panel's ``$__interval`` follows Grafana's rule (:func:`dashboards.macros.interval_for`):
the range divided by the panel's width in pixels (its max data points), rounded to Grafana's
ladder, never below the panel's *Min interval*. A day on a full-width panel is one minute. It
is never below the report's bucket either (:func:`bucket_s`): the shortest of 1 m, 5 m, 15 m,
1 h, 6 h and 1 d whose buckets hold a median of at least :data:`MIN_BUCKET_EVENTS` events per
model version, so that a rate per bucket can be read (at two events a minute, per-minute
failure rates are spikes between 0 and 100 %).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING, Any

from dashboards.macros import QueryContext, interval_for
from dashboards.queries import EVENTS_PER_BUCKET, REPORT_BUCKET_WIDTHS_S
from dashboards.run import Frame, run_query
from dashboards.svg import PALETTE, Marker, Series, bar_chart, format_value, line_chart
from dashboards.view import DashboardView, PanelView

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["MIN_BUCKET_EVENTS", "PanelResult", "Report", "bucket_s", "build_report",
           "panel_interval_s"]  # fmt: skip

MIN_BUCKET_EVENTS = 30
"""Median events per bucket and model version the report's buckets hold at least (where the
data allow): a failure rate of 30 events moves in steps of 3 %, not 50 %."""

_MAX_TABLE_ROWS = 100
_LINK = re.compile(r"^(https?|file)://", re.IGNORECASE)
_SPACES = re.compile(r"(\s+)")
_BREAKS = re.compile(r"(?<=_)(?=.)")
_LONG_BREAKS = re.compile(r"(?<=[_/.:])(?=.)")
_LONG_WORD = 16


@dataclass(frozen=True)
class PanelResult:
    dashboard: str
    title: str
    kind: str
    rows: int
    interval_s: int = 60


@dataclass(frozen=True)
class Report:
    html: str
    panels: tuple[PanelResult, ...]

    def summary(self) -> list[dict[str, Any]]:
        return [
            {
                "dashboard": p.dashboard,
                "panel": p.title,
                "kind": p.kind,
                "rows": p.rows,
                "interval_s": p.interval_s,
            }
            for p in self.panels
        ]


def build_report(
    client: Client,
    dashboards: Sequence[DashboardView],
    ctx: QueryContext,
    *,
    source: str,
    generated_at: datetime,
    controls: str = "",
) -> Report:
    """Run every panel of ``dashboards`` for ``ctx`` and render the report.

    ``source`` names the data (a redacted DSN); it is shown, escaped, in the header.
    ``controls`` is trusted HTML put under the header (the live report's time range picker).
    """
    results: list[PanelResult] = []
    sections = []
    bucket = bucket_s(client, ctx)
    for dashboard in dashboards:
        markers = [
            Marker(_seconds(row[0]), str(row[1]))
            for query in dashboard.annotations
            for row in run_query(client, query, ctx).rows
        ]
        cards = []
        for panel in dashboard.panels:
            panel_ctx = replace(ctx, interval_s=max(panel_interval_s(panel, ctx), bucket))
            frame = run_query(client, panel.query, panel_ctx) if panel.query else None
            rows = len(frame.rows) if frame else 0
            results.append(PanelResult(dashboard.uid, panel.title, panel.kind, rows,
                                       panel_ctx.interval_s))  # fmt: skip
            cards.append(_card(panel, frame, panel_ctx, markers))
        sections.append(
            f'<section id="{escape(dashboard.uid)}"><h2>{escape(dashboard.title)}</h2>'
            f'<p class="muted">{escape(dashboard.description)}</p>'
            f'<div class="grid">{"".join(cards)}</div></section>'
        )
    page = _page(dashboards, sections, replace(ctx, interval_s=bucket), source, generated_at,
                 controls)  # fmt: skip
    return Report(page, tuple(results))


def bucket_s(client: Client, ctx: QueryContext) -> int:
    """The report's shortest bucket (module docstring): the first width of
    ``REPORT_BUCKET_WIDTHS_S`` whose buckets in ``ctx``'s range hold a median of at least
    :data:`MIN_BUCKET_EVENTS` events per model version (buckets without events left out).
    Where none does, the longest width that fits in the range; one minute without data."""
    medians = {int(w): float(m) for w, m in run_query(client, EVENTS_PER_BUCKET, ctx).rows}
    for width in REPORT_BUCKET_WIDTHS_S:
        if medians.get(width, 0.0) >= MIN_BUCKET_EVENTS:
            return width
    span_s = (ctx.end - ctx.start).total_seconds()
    return max([w for w in REPORT_BUCKET_WIDTHS_S if w <= span_s and medians], default=60)


def _chart_width(panel: PanelView) -> int:
    """The panel's drawing width in pixels (46 per grid column of 24)."""
    return 46 * max(6, min(panel.width, 24))


def panel_interval_s(panel: PanelView, ctx: QueryContext) -> int:
    """The ``$__interval`` Grafana would give ``panel`` over ``ctx``'s range (module docstring)."""
    return interval_for(ctx.start, ctx.end, _chart_width(panel), panel.min_interval_s)


def _seconds(value: Any) -> float:
    return float(value.timestamp()) if isinstance(value, datetime) else float(value)


def _card(panel: PanelView, frame: Frame | None, ctx: QueryContext, markers: list[Marker]) -> str:
    width = max(6, min(panel.width, 24))
    body = _body(panel, frame, ctx, markers, chart_width=_chart_width(panel))
    description = f'<p class="muted">{escape(panel.description)}</p>' if panel.description else ""
    return (
        f'<div class="panel {panel.kind}" style="grid-column: span {width}">'
        f"<h3>{escape(panel.title)}</h3>{description}{body}</div>"
    )


def _body(
    panel: PanelView,
    frame: Frame | None,
    ctx: QueryContext,
    markers: list[Marker],
    *,
    chart_width: int,
) -> str:
    if panel.kind == "text":
        return f'<div class="text">{_markdown(panel.content)}</div>'
    if frame is None or not frame.rows:
        return '<p class="nodata">No data</p>'
    if panel.kind == "timeseries":
        series = _series(frame)
        window = (ctx.start.timestamp(), ctx.end.timestamp())
        chart = line_chart(
            series, x_range=window, unit=panel.unit, markers=markers, width=chart_width
        )
        return chart + _legend([s.name for s in series])
    if panel.kind == "barchart":
        x_field = panel.x_field or frame.columns[0]
        categories = [str(v) for v in frame.column(x_field)]
        values = [(c, [_number(v) for v in frame.column(c)]) for c in _numeric(frame, x_field)]
        chart = bar_chart(
            categories, values, unit=panel.unit, stacked=panel.stacked, width=chart_width
        )
        return chart + _legend([name for name, _ in values])
    if panel.kind == "stat":
        value = _number(frame.rows[-1][-1])
        return f'<p class="bignum">{escape(format_value(value, panel.unit))}</p>'
    return _table(frame)


def _numeric(frame: Frame, *skip: str) -> list[str]:
    """Columns whose values are all numbers (not booleans), except ``skip``."""
    return [
        name
        for index, name in enumerate(frame.columns)
        if name not in skip
        and all(
            isinstance(row[index], int | float) and not isinstance(row[index], bool)
            for row in frame.rows
            if row[index] is not None
        )
    ]


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def _series(frame: Frame) -> list[Series]:
    """Grafana's long-to-wide rule: one series per value column and per set of string labels."""
    time_index = frame.columns.index("time")
    values = _numeric(frame, "time")
    labels = [i for i, c in enumerate(frame.columns) if c != "time" and c not in values]
    points: dict[str, list[tuple[float, float]]] = {}
    for row in frame.rows:
        label = " ".join(str(row[i]) for i in labels)
        for name in values:
            key = f"{name} {label}".strip() if len(values) > 1 or not label else label
            value = row[frame.columns.index(name)]
            y = _number(value) if value is not None else math.nan
            points.setdefault(key, []).append((_seconds(row[time_index]), y))
    return [Series(name, tuple(p)) for name, p in points.items()]


def _legend(names: list[str]) -> str:
    items = "".join(
        f'<span><i style="background:{PALETTE[i % len(PALETTE)]}"></i>{escape(n)}</span>'
        for i, n in enumerate(names)
    )
    return f'<div class="legend">{items}</div>'


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return escape(value.strftime("%Y-%m-%d %H:%M:%S"))
    if isinstance(value, float):
        return escape(format_value(value, ""))
    text = str(value)
    if column == "image" and _LINK.match(text):
        return f'<a href="{escape(text, quote=True)}">{_breakable(text)}</a>'
    return _breakable(text)


def _breakable(text: str) -> str:
    """``text`` escaped, with line-break opportunities after ``_`` (column and signal names)
    and, in words of :data:`_LONG_WORD` characters or more, after ``/ . :`` too (embedder ids,
    event ids, URLs; numbers and short words stay whole): a table then wraps into its panel."""
    out = []
    for word in _SPACES.split(text):
        after = _LONG_BREAKS if len(word) >= _LONG_WORD else _BREAKS
        out.append("<wbr>".join(escape(piece) for piece in after.split(word)))
    return "".join(out)


def _table(frame: Frame) -> str:
    head = "".join(f"<th>{_breakable(c)}</th>" for c in frame.columns)
    rows = "".join(
        "<tr>"
        + "".join(f"<td>{_cell(c, v)}</td>" for c, v in zip(frame.columns, row, strict=True))
        + "</tr>"
        for row in frame.rows[:_MAX_TABLE_ROWS]
    )
    more = len(frame.rows) - _MAX_TABLE_ROWS
    note = f'<p class="muted">{more} more rows not shown</p>' if more > 0 else ""
    return f'<div class="table"><table><tr>{head}</tr>{rows}</table></div>{note}'


def _markdown(text: str) -> str:
    """The little Markdown the text panels use: paragraphs, **bold**, *emphasis*, `code`."""
    paragraphs = []
    for block in text.split("\n\n"):
        html = escape(" ".join(block.split()))
        html = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html)
        html = re.sub(r"\*(.+?)\*", r"<em>\1</em>", html)
        html = re.sub(r"`(.+?)`", r"<code>\1</code>", html)
        paragraphs.append(f"<p>{html}</p>")
    return "".join(paragraphs)


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
 background:#f4f5f7;color:#1f2328}
header{background:#181b1f;color:#fff;padding:16px 24px}
header h1{margin:0 0 4px;font-size:20px}
header p{margin:2px 0;color:#c8ccd2}
nav{padding:8px 24px;background:#fff;border-bottom:1px solid #d0d4da}
nav a{margin-right:16px;color:#1f62e0;text-decoration:none}
section{padding:8px 24px 16px}
h2{font-size:18px;margin:12px 0 2px}
.grid{display:grid;grid-template-columns:repeat(24,1fr);gap:12px;align-items:start}
.panel{background:#fff;border:1px solid #d0d4da;border-radius:4px;padding:10px;min-width:0}
.panel h3{font-size:14px;margin:0 0 4px}
.muted{color:#6e7681;font-size:12px;margin:2px 0 6px}
.nodata{color:#6e7681;text-align:center;padding:40px 0}
.bignum{font-size:40px;font-weight:600;text-align:center;color:#1f62e0;margin:30px 0}
.chart .tick{font-size:10px;fill:#555}
.legend{font-size:12px;margin-top:4px}
.legend span{display:inline-block;margin-right:12px}
.legend i{display:inline-block;width:10px;height:3px;margin-right:4px;vertical-align:middle}
.table{overflow-x:auto}
table{border-collapse:collapse;font-size:12px;width:100%}
th,td{border-bottom:1px solid #eceef1;padding:3px 6px;text-align:left;vertical-align:top;
 overflow-wrap:break-word}
th{background:#f4f5f7}
td{max-width:320px}
"""


def _page(
    dashboards: Sequence[DashboardView],
    sections: list[str],
    ctx: QueryContext,
    source: str,
    generated_at: datetime,
    controls: str = "",
) -> str:
    chosen = ", ".join(
        f"{name}={'All' if values is None else ','.join(values)}"
        for name, values in sorted(ctx.variables.items())
    )
    nav = "".join(f'<a href="#{escape(d.uid)}">{escape(d.title)}</a>' for d in dashboards)
    window = f"{ctx.start:%Y-%m-%d %H:%M} – {ctx.end:%Y-%m-%d %H:%M} UTC"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>telltale report</title><style>{_CSS}</style></head><body>"
        f"<header><h1>telltale report</h1><p>{escape(window)} · buckets of at least "
        f"{escape(_duration(ctx.interval_s))} (a median of {MIN_BUCKET_EVENTS} events per model "
        "version where the data allow), wider where a panel is narrow (Grafana's rule)"
        f" · {escape(chosen)}</p><p>source {escape(source)} · generated "
        f"{generated_at:%Y-%m-%d %H:%M:%S} UTC · same SQL as the Grafana dashboards</p>"
        f"{controls}</header>"
        f"<nav>{nav}</nav>{''.join(sections)}</body></html>\n"
    )


def _duration(seconds: int) -> str:
    """``seconds`` in its largest whole unit: ``15m``, ``6h``, ``1d`` (``90s``)."""
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
