"""Reads of failure rates by slice (``failure_rates_by_slice_1m``) and of slice values.

A *slice* is the set of events sharing one value of one slice key (an ``attributes`` entry such
as ``locale``, or ``app``). The pipeline writes each score row's slice values; the view in
``storage.schema`` (migration 13) fans them out into per-minute rates per (key, value).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from storage._sql import add_equal_filters
from storage._time import as_utc

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["SliceCount", "event_slice_sources", "slice_counts", "top_slice_values"]


@dataclass(frozen=True)
class SliceCount:
    """Events and failures of one signal in one slice (a value per key in ``values``)."""

    signal: str
    model: str
    model_version: str
    values: tuple[str, ...]
    events: int
    failures: int


def top_slice_values(client: Client, keys: list[str], limit: int) -> dict[str, list[str]]:
    """Per slice key, its ``limit`` most frequent stored values (by distinct events), most
    frequent first: the pipeline's cardinality cap keeps these across restarts."""
    if not keys:
        return {}
    rows = client.query(
        """
        SELECT slice_key, slice_value FROM (
            SELECT slice_key, slice_value, uniqExactMerge(events) AS n
            FROM failure_rates_by_slice_1m
            WHERE slice_key IN {keys:Array(String)}
            GROUP BY slice_key, slice_value
        )
        ORDER BY slice_key, n DESC, slice_value
        LIMIT {limit:UInt32} BY slice_key
        """,
        parameters={"keys": list(keys), "limit": limit},
    ).result_rows
    found: dict[str, list[str]] = {key: [] for key in keys}
    for key, value in rows:
        found[str(key)].append(str(value))
    return found


def slice_counts(
    client: Client,
    keys: list[str],
    *,
    signal: str | None = None,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[SliceCount]:
    """Events and failures per (signal, model, version) and per combination of ``keys``' values.

    One key reads the per-minute slice table. Several keys need the values of each event
    together, so they are read from the score rows (``FINAL``, deduplicated per event).
    """
    if not keys:
        raise ValueError("at least one slice key is needed")
    where = ["1"]
    params: dict[str, Any] = {}
    add_equal_filters(where, params, signal=signal, model=model)
    if len(keys) == 1:
        column = "minute"
        if since is not None:
            where.append("minute >= toStartOfMinute({since:DateTime64(3, 'UTC')})")
            params["since"] = as_utc(since)
        if until is not None:
            where.append("minute < {until:DateTime64(3, 'UTC')}")
            params["until"] = as_utc(until)
        where.append("slice_key = {key0:String}")
        params["key0"] = keys[0]
        sql = f"""
            SELECT signal, model, model_version, [slice_value] AS vals,
                   uniqExactMerge(events) AS n, uniqExactIfMerge(failures) AS k
            FROM failure_rates_by_slice_1m
            WHERE {" AND ".join(where)}
            GROUP BY signal, model, model_version, vals
            ORDER BY signal, model, model_version, n DESC, vals
        """  # noqa: S608 - only fixed fragments are formatted; values are bound parameters
    else:
        column = "timestamp"
        if since is not None:
            where.append(f"{column} >= {{since:DateTime64(3, 'UTC')}}")
            params["since"] = as_utc(since)
        if until is not None:
            where.append(f"{column} < {{until:DateTime64(3, 'UTC')}}")
            params["until"] = as_utc(until)
        params["keys"] = list(keys)
        sql = f"""
            SELECT signal, model, model_version,
                   arrayMap(x -> slices[x], {{keys:Array(String)}}) AS vals,
                   uniqExact(event_id) AS n, uniqExactIf(event_id, flagged) AS k
            FROM signal_scores FINAL
            WHERE {" AND ".join(where)}
            GROUP BY signal, model, model_version, vals
            ORDER BY signal, model, model_version, n DESC, vals
        """  # noqa: S608 - only fixed fragments are formatted; values are bound parameters
    rows = client.query(sql, parameters=params).result_rows
    return [
        SliceCount(str(r[0]), str(r[1]), str(r[2]), tuple(str(v) for v in r[3]), int(r[4]),
                   int(r[5]))
        for r in rows
    ]  # fmt: skip


def event_slice_sources(
    client: Client, event_ids: list[str]
) -> dict[str, tuple[str, dict[str, str]]]:
    """``app`` and ``attributes`` of stored events, by id: what slice values are made of."""
    rows = client.query(
        "SELECT event_id, any(app), any(attributes) FROM events "
        "WHERE event_id IN {ids:Array(String)} GROUP BY event_id",
        parameters={"ids": list(event_ids)},
    ).result_rows
    return {str(r[0]): (str(r[1]), {str(k): str(v) for k, v in r[2].items()}) for r in rows}
