"""Grafana dashboards as code, their provisioning (API and files), and the static report.

Dashboards are built with grafana-foundation-sdk on the ClickHouse data source
(:mod:`dashboards.definitions`); every statement they run is a named query in
:mod:`dashboards.queries`, which Grafana receives verbatim and which the report and the tests
execute through one macro renderer (:func:`render`). Alert rules, in ``alerts.delivery.rules``,
use the same queries and data source.
"""

from __future__ import annotations

from dashboards.clickhouse import DATASOURCE_TYPE, DATASOURCE_UID, ClickHouseQueryBuilder
from dashboards.datasource import datasource_file, datasource_payload
from dashboards.definitions import VARIABLES, build_dashboards
from dashboards.errors import DashboardsError, MacroError, ProvisioningError
from dashboards.files import dashboard_document, dashboard_files, plain, stale_files, write_files
from dashboards.macros import BoundQuery, QueryContext, interval_for, render
from dashboards.provision import (
    Provisioner,
    Upsert,
    connect_grafana,
    dashboard_upsert,
    folder_upsert,
)
from dashboards.queries import (
    DEAD_LETTER_SHARE_RECENT,
    INGEST_LAG_RECENT,
    SECONDS_SINCE_LAST_EVENT,
    NamedQuery,
    open_detections_for,
)
from dashboards.report import build_report
from dashboards.settings import GrafanaConfig
from dashboards.view import DashboardView, PanelView, view

__all__ = [
    "DATASOURCE_TYPE",
    "DATASOURCE_UID",
    "DEAD_LETTER_SHARE_RECENT",
    "INGEST_LAG_RECENT",
    "SECONDS_SINCE_LAST_EVENT",
    "VARIABLES",
    "BoundQuery",
    "ClickHouseQueryBuilder",
    "DashboardView",
    "DashboardsError",
    "GrafanaConfig",
    "MacroError",
    "NamedQuery",
    "PanelView",
    "Provisioner",
    "ProvisioningError",
    "QueryContext",
    "Upsert",
    "build_dashboards",
    "build_report",
    "connect_grafana",
    "dashboard_document",
    "dashboard_files",
    "dashboard_upsert",
    "datasource_file",
    "datasource_payload",
    "folder_upsert",
    "interval_for",
    "open_detections_for",
    "plain",
    "render",
    "stale_files",
    "view",
    "write_files",
]
