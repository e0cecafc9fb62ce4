"""Run a dashboard query against ClickHouse, the way Grafana would, and get its rows back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dashboards.macros import QueryContext, render
from dashboards.queries import NamedQuery

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["Frame", "QueryResultError", "run_query"]


class QueryResultError(RuntimeError):
    """A query returned other columns than its :class:`NamedQuery` promises."""


@dataclass(frozen=True)
class Frame:
    """A query result: column names and rows, in the query's order."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    def column(self, name: str) -> list[Any]:
        index = self.columns.index(name)
        return [row[index] for row in self.rows]


def run_query(client: Client, query: NamedQuery, ctx: QueryContext) -> Frame:
    """Render ``query`` for ``ctx`` (values bound, never formatted) and execute it."""
    bound = render(query.sql, ctx)
    result = client.query(bound.sql, parameters=bound.parameters)
    columns = tuple(str(c) for c in result.column_names)
    if not columns and not result.result_rows:
        # chDB reports no columns for an empty result; a server reports them. Same meaning.
        columns = query.columns
    if columns != query.columns:
        raise QueryResultError(f"{query.name} returned {columns}, expected {query.columns}")
    return Frame(columns=columns, rows=tuple(tuple(r) for r in result.result_rows))
