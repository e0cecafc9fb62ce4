"""The Grafana ClickHouse data source (``grafana-clickhouse-datasource``) as typed SDK objects.

grafana-foundation-sdk ships query types for Grafana's core data sources only; plugins are
added by subclassing its ``Dataquery`` variant (the SDK's documented extension point). A
:class:`ClickHouseQuery` carries one :class:`~dashboards.queries.NamedQuery`, so a panel, an
alert rule and the static report all hold the *same* SQL object, not copies of its text.

The target shape (``editorType``, ``rawSql``, ``format`` 0 = time series / 1 = table,
``queryType``, ``pluginVersion``) is the plugin's v4 query model. ``pluginVersion`` matters: the
plugin's editor treats a target without one (or below 4.0.0) as a v3 query and migrates it
(``src/data/migration.ts``, ``isV3CHQuery``). It names the plugin release docker-compose pins.
"""

from __future__ import annotations

from typing import Literal

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as sdk_dashboard

from dashboards.queries import NamedQuery

__all__ = [
    "DATASOURCE_NAME",
    "DATASOURCE_TYPE",
    "DATASOURCE_UID",
    "GRAFANA_VERSION",
    "PLUGIN_MIN_GRAFANA",
    "PLUGIN_VERSION",
    "ClickHouseAnnotationTarget",
    "ClickHouseAnnotationTargetBuilder",
    "ClickHouseQuery",
    "ClickHouseQueryBuilder",
    "datasource_ref",
]

DATASOURCE_UID = "telltale-clickhouse"
DATASOURCE_TYPE = "grafana-clickhouse-datasource"
DATASOURCE_NAME = "ClickHouse (telltale)"
PLUGIN_VERSION = "4.20.0"
"""The grafana-clickhouse-datasource release docker-compose installs and targets declare."""
PLUGIN_MIN_GRAFANA = "11.6.0"
"""``dependencies.grafanaDependency`` of that release's ``plugin.json`` (``>=11.6.0-0``)."""
GRAFANA_VERSION = "12.2.0"
"""The grafana-oss image docker-compose runs: satisfies :data:`PLUGIN_MIN_GRAFANA`."""

QueryFormat = Literal["timeseries", "table"]
_FORMAT_CODE: dict[QueryFormat, int] = {"timeseries": 0, "table": 1}


def datasource_ref() -> sdk_dashboard.DataSourceRef:
    """A reference to the telltale ClickHouse data source, by uid (never by name or id)."""
    return sdk_dashboard.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)


class ClickHouseQuery(cogvariants.Dataquery):
    """One raw-SQL ClickHouse target. ``query`` is kept so callers can execute its SQL."""

    def __init__(
        self, query: NamedQuery, query_format: QueryFormat = "table", ref_id: str = "A"
    ) -> None:
        self.query = query
        self.query_format = query_format
        self.ref_id = ref_id

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "datasource": datasource_ref(),
            "editorType": "sql",
            "format": _FORMAT_CODE[self.query_format],
            "queryType": self.query_format,
            "rawSql": self.query.sql,
            "pluginVersion": PLUGIN_VERSION,
        }


class ClickHouseQueryBuilder(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builder for :class:`ClickHouseQuery`, usable wherever the SDK takes a query builder."""

    def __init__(self, query: NamedQuery, query_format: QueryFormat = "table") -> None:
        self._internal = ClickHouseQuery(query, query_format)

    def build(self) -> ClickHouseQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> ClickHouseQueryBuilder:
        self._internal.ref_id = ref_id
        return self


class ClickHouseAnnotationTarget(sdk_dashboard.AnnotationTarget):
    """An annotation query on ClickHouse: columns ``time``, ``text`` and ``tags``.

    The SDK's ``AnnotationTarget`` only models Grafana's built-in annotation store; the
    ClickHouse plugin reads a normal query target here.
    """

    def __init__(self, query: NamedQuery) -> None:
        super().__init__()
        self.query = query

    def to_json(self) -> dict[str, object]:
        return {
            "refId": "Anno",
            "datasource": datasource_ref(),
            "editorType": "sql",
            "format": _FORMAT_CODE["table"],
            "queryType": "table",
            "rawSql": self.query.sql,
            "pluginVersion": PLUGIN_VERSION,
        }


class ClickHouseAnnotationTargetBuilder(cogbuilder.Builder[sdk_dashboard.AnnotationTarget]):
    """Builder for :class:`ClickHouseAnnotationTarget` (``AnnotationQuery.target`` takes one)."""

    def __init__(self, query: NamedQuery) -> None:
        self._internal = ClickHouseAnnotationTarget(query)

    def build(self) -> ClickHouseAnnotationTarget:
        return self._internal
