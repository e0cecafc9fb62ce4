"""Grafana dashboards as code, their provisioning (API and files), and the static report.

Dashboards are built with grafana-foundation-sdk on the ClickHouse data source
(:mod:`dashboards.definitions`); every statement they run is a named query in
:mod:`dashboards.queries`, which Grafana receives verbatim and which the report and the tests
execute through one macro renderer (:func:`render`). Alert rules, in ``alerts.rules``, use the
same queries and data source.
"""

from __future__ import annotations

from dashboards.clickhouse import DATASOURCE_TYPE, DATASOURCE_UID
from dashboards.definitions import VARIABLES, build_dashboards
from dashboards.errors import DashboardsError, MacroError, ProvisioningError
from dashboards.macros import BoundQuery, QueryContext, interval_for, render
from dashboards.queries import NamedQuery
from dashboards.settings import GrafanaSettings
from dashboards.view import DashboardView, PanelView, view

__all__ = [
    "DATASOURCE_TYPE",
    "DATASOURCE_UID",
    "VARIABLES",
    "BoundQuery",
    "DashboardView",
    "DashboardsError",
    "GrafanaSettings",
    "MacroError",
    "NamedQuery",
    "PanelView",
    "ProvisioningError",
    "QueryContext",
    "build_dashboards",
    "interval_for",
    "render",
    "view",
]
