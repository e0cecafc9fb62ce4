"""What a rate row's events are worth as independent draws, from the contents they repeat.

A classifier gives identical content the same flag, so a retry storm of one answer moves a
flag count by its size at once. With content groups of sizes ``m_i`` in a row of ``n`` events,
the row is worth ``n² / Σ m_i²`` independent events (Kish's effective sample size for identical
copies); ``signals.audit.ErrorModel.correct`` takes it for the flag rate's uncertainty.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from storage._sql import add_equal_filters
from storage._time import as_utc
from storage.rows import FIELD_COLUMNS

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["RowKey", "effective_events"]

RowKey = tuple[str, str, str, tuple[str, ...]]
"""(signal, model, model version, the row's values: its bucket as ``YYYY-MM-DD HH:MM:SS``
UTC, its slice values, or () in total)."""

_BUCKETS = {"minute": "toStartOfMinute", "hour": "toStartOfHour", "day": "toStartOfDay"}


def effective_events(
    client: Client,
    signal: str,
    field: str,
    *,
    by: Literal["total", "minute", "hour", "day"] | list[str] = "total",
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[RowKey, float]:
    """Per rate row of ``signal`` (grouped as ``rates`` groups it: in total, per time bucket,
    or per slice keys' values), ``n² / Σ m_i²`` over groups of identical ``field`` content."""
    column = FIELD_COLUMNS[field]  # a fixed column name, never user input
    where = ["signal = {signal:String}"]
    params: dict[str, Any] = {"signal": signal}
    add_equal_filters(where, params, model=model)
    if since is not None:
        where.append("timestamp >= {since:DateTime64(3, 'UTC')}")
        params["since"] = as_utc(since)
    if until is not None:
        where.append("timestamp < {until:DateTime64(3, 'UTC')}")
        params["until"] = as_utc(until)
    if isinstance(by, list):
        values = "arrayMap(x -> s.slices[x], {keys:Array(String)})"
        params["keys"] = list(by)
    elif by == "total":
        values = "CAST([], 'Array(String)')"
    else:
        values = f"[formatDateTime({_BUCKETS[by]}(s.timestamp), '%Y-%m-%d %H:%i:%S', 'UTC')]"
    cond = " AND ".join(where)
    rows = client.query(
        f"""
        SELECT signal, model, model_version, vals, sum(c) * sum(c) / sum(c * c)
        FROM (
            SELECT s.signal AS signal, s.model AS model, s.model_version AS model_version,
                   {values} AS vals, cityHash64(e.content) AS h, count() AS c
            FROM (SELECT event_id, signal, model, model_version, timestamp, slices
                  FROM signal_scores FINAL WHERE {cond}) AS s
            INNER JOIN (SELECT event_id, any({column}) AS content FROM events
                        WHERE event_id IN (SELECT event_id FROM signal_scores WHERE {cond})
                        GROUP BY event_id) AS e ON e.event_id = s.event_id
            GROUP BY signal, model, model_version, vals, h
        )
        GROUP BY signal, model, model_version, vals
        """,  # noqa: S608 - only fixed fragments are formatted; values are bound parameters
        parameters=params,
    ).result_rows
    return {
        (str(r[0]), str(r[1]), str(r[2]), tuple(str(v) for v in r[3])): float(r[4]) for r in rows
    }
