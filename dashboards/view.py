"""A typed read of built dashboards: what each panel shows and from which query.

The static report and the tests walk the *built* SDK models through this view, so they see
exactly the panels, SQL and annotations that Grafana receives; nothing is declared twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from grafana_foundation_sdk.models import barchart, common, text
from grafana_foundation_sdk.models import dashboard as models

from dashboards.clickhouse import ClickHouseAnnotationTarget, ClickHouseQuery
from dashboards.macros import parse_interval_s
from dashboards.queries import NamedQuery

__all__ = ["DashboardView", "PanelKind", "PanelView", "view"]

PanelKind = Literal["timeseries", "barchart", "table", "stat", "text"]
_KINDS: frozenset[str] = frozenset(("timeseries", "barchart", "table", "stat", "text"))


@dataclass(frozen=True)
class PanelView:
    """One panel: its kind, its query (none for text) and how to show its values."""

    title: str
    kind: PanelKind
    description: str
    query: NamedQuery | None
    unit: str
    width: int
    x_field: str | None = None
    stacked: bool = False
    content: str = ""
    min_interval_s: int = 1
    """The panel's *Min interval* (Grafana's ``interval``), in seconds."""


@dataclass(frozen=True)
class DashboardView:
    uid: str
    title: str
    description: str
    panels: tuple[PanelView, ...]
    annotations: tuple[NamedQuery, ...]
    variables: tuple[str, ...]


def view(dashboard: models.Dashboard) -> DashboardView:
    """The :class:`DashboardView` of a built dashboard; raises on panels it cannot read."""
    panels: list[PanelView] = []
    for panel in dashboard.panels or []:
        if not isinstance(panel, models.Panel):
            raise TypeError(f"rows are not used by telltale dashboards: {panel!r}")
        panels.append(_panel(panel))
    annotations = tuple(
        a.target.query
        for a in dashboard.annotations.list_val or []
        if isinstance(a.target, ClickHouseAnnotationTarget)
    )
    variables = tuple(v.name for v in dashboard.templating.list_val or [])
    return DashboardView(
        uid=dashboard.uid or "",
        title=dashboard.title or "",
        description=dashboard.description or "",
        panels=tuple(panels),
        annotations=annotations,
        variables=variables,
    )


def _panel(panel: models.Panel) -> PanelView:
    if panel.type_val not in _KINDS:
        raise TypeError(f"panel type {panel.type_val!r} is not supported by the report")
    kind = cast(PanelKind, panel.type_val)
    targets = [t for t in panel.targets or [] if isinstance(t, ClickHouseQuery)]
    if kind != "text" and len(targets) != 1:
        raise TypeError(f"panel {panel.title!r} must have exactly one ClickHouse query")
    options = panel.options
    defaults = panel.field_config.defaults
    return PanelView(
        title=panel.title or "",
        kind=kind,
        description=panel.description or "",
        query=targets[0].query if targets else None,
        unit=(defaults.unit or "") if defaults is not None else "",
        width=panel.grid_pos.w if panel.grid_pos else 24,
        x_field=options.x_field if isinstance(options, barchart.Options) else None,
        stacked=isinstance(options, barchart.Options)
        and options.stacking == common.StackingMode.NORMAL,
        content=options.content if isinstance(options, text.Options) else "",
        min_interval_s=parse_interval_s(panel.interval),
    )
