"""Small typed constructors for the panel kinds telltale uses, all on the ClickHouse source.

Each constructor takes a :class:`~dashboards.queries.NamedQuery` and returns an SDK builder, so
the dashboard definitions read as a list of panels and the SQL stays in ``queries``. Panel
kinds are limited to what the static report can draw: time series, bar chart, table, stat and
text.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import barchart, common, stat, table, text, timeseries
from grafana_foundation_sdk.builders import dashboard as sdk
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models.text import TextMode

from dashboards.clickhouse import ClickHouseQueryBuilder, datasource_ref
from dashboards.queries import NamedQuery

__all__ = ["bar_panel", "stat_panel", "table_panel", "text_panel", "timeseries_panel"]

# Per-minute tables: a finer interval than a minute would only split buckets.
_MIN_INTERVAL = "1m"


def _legend() -> common.VizLegendOptions:
    return (
        common.VizLegendOptions()
        .show_legend(True)
        .display_mode(common_models.LegendDisplayMode.LIST)
        .placement(common_models.LegendPlacement.BOTTOM)
    )


def timeseries_panel(
    title: str, query: NamedQuery, *, description: str, unit: str, span: int = 12, height: int = 8
) -> timeseries.Panel:
    """Lines over time: ``time``, then string columns as series labels, then values."""
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(datasource_ref())
        .with_target(ClickHouseQueryBuilder(query, "timeseries"))
        .interval(_MIN_INTERVAL)
        .unit(unit)
        .min(0)
        .line_width(2)
        .fill_opacity(8)
        .show_points(common_models.VisibilityMode.NEVER)
        .legend(_legend())
        .span(span)
        .height(height)
    )


def bar_panel(
    title: str,
    query: NamedQuery,
    *,
    description: str,
    unit: str,
    x_field: str,
    stacked: bool = False,
    span: int = 12,
    height: int = 8,
) -> barchart.Panel:
    """Bars per category: ``x_field`` names the categories, numeric columns the bars."""
    return (
        barchart.Panel()
        .title(title)
        .description(description)
        .datasource(datasource_ref())
        .with_target(ClickHouseQueryBuilder(query, "table"))
        .x_field(x_field)
        .stacking(common_models.StackingMode.NORMAL if stacked else common_models.StackingMode.NONE)
        .show_value(common_models.VisibilityMode.NEVER)
        .unit(unit)
        .legend(_legend())
        .span(span)
        .height(height)
    )


def table_panel(
    title: str,
    query: NamedQuery,
    *,
    description: str,
    link_column: str | None = None,
    span: int = 24,
    height: int = 8,
) -> table.Panel:
    """Rows as returned. ``link_column`` values become links (they are URLs)."""
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(datasource_ref())
        .with_target(ClickHouseQueryBuilder(query, "table"))
        .show_header(True)
        .span(span)
        .height(height)
    )
    if link_column is not None:
        link = {"title": "open", "url": "${__value.raw}", "targetBlank": True}
        panel = panel.override_by_name(
            link_column, [dashboard_models.DynamicConfigValue(id_val="links", value=[link])]
        )
    return panel


def stat_panel(
    title: str,
    query: NamedQuery,
    *,
    description: str,
    unit: str,
    red_from: float,
    span: int = 6,
    height: int = 8,
) -> stat.Panel:
    """One number, green below ``red_from`` and red from it."""
    steps = [
        dashboard_models.Threshold(value=None, color="green"),
        dashboard_models.Threshold(value=red_from, color="red"),
    ]
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(datasource_ref())
        .with_target(ClickHouseQueryBuilder(query, "table"))
        .unit(unit)
        .thresholds(
            sdk.ThresholdsConfig().mode(dashboard_models.ThresholdsMode.ABSOLUTE).steps(steps)
        )
        .color_mode(common_models.BigValueColorMode.BACKGROUND)
        .graph_mode(common_models.BigValueGraphMode.NONE)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .span(span)
        .height(height)
    )


def text_panel(title: str, content: str, *, span: int = 6, height: int = 8) -> text.Panel:
    """Markdown: for what the dashboards cannot show from ClickHouse, and why."""
    return (
        text.Panel().title(title).mode(TextMode.MARKDOWN).content(content).span(span).height(height)
    )
