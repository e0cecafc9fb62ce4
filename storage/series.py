"""Reads for the alert monitor: per-minute failure counts and samples of prompt embeddings."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = [
    "EmbeddingSample",
    "MinuteCounts",
    "SeriesKey",
    "data_bounds",
    "minute_counts",
    "prompt_models",
    "prompt_sample",
]

SeriesKey = tuple[str, str, str]
"""``(model, model_version, signal)``."""

MinuteCounts = dict[datetime, tuple[int, int]]
"""Minute start → ``(events, failures)``; minutes without events are absent."""


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return value.astimezone(UTC)


def minute_counts(
    client: Client,
    since: datetime,
    until: datetime,
    *,
    model: str | None = None,
    model_version: str | None = None,
) -> dict[SeriesKey, MinuteCounts]:
    """Events and failures per minute for every (model, version, signal) in ``[since, until)``.

    Versions of one signal are merged: their ``uniqExact`` states count each event once.
    """
    where = [
        "minute >= {since:DateTime64(3, 'UTC')}",
        "minute < {until:DateTime64(3, 'UTC')}",
    ]
    params: dict[str, Any] = {"since": _utc(since), "until": _utc(until)}
    if model is not None:
        where.append("model = {model:String}")
        params["model"] = model
    if model_version is not None:
        where.append("model_version = {version:String}")
        params["version"] = model_version
    sql = f"""
        SELECT model, model_version, signal, minute,
               uniqExactMerge(events) AS n, uniqExactIfMerge(failures) AS k
        FROM failure_rates_1m
        WHERE {" AND ".join(where)}
        GROUP BY model, model_version, signal, minute
        ORDER BY model, model_version, signal, minute
    """  # noqa: S608 - only fixed fragments are formatted; values are bound parameters
    series: dict[SeriesKey, MinuteCounts] = defaultdict(dict)
    for r in client.query(sql, parameters=params).result_rows:
        series[(str(r[0]), str(r[1]), str(r[2]))][r[3].astimezone(UTC)] = (int(r[4]), int(r[5]))
    return dict(series)


def data_bounds(client: Client) -> tuple[datetime, datetime] | None:
    """First and last minute with events, or ``None`` on an empty database."""
    rows = client.query("SELECT min(minute), max(minute), count() FROM events_1m")
    first, last, count = rows.result_rows[0]
    if not count:
        return None
    return first.astimezone(UTC), last.astimezone(UTC)


def prompt_models(client: Client, since: datetime, until: datetime, field: str) -> list[str]:
    """Models with embeddings of ``field`` in ``[since, until)``."""
    rows = client.query(
        """
        SELECT DISTINCT model FROM embeddings
        WHERE field = {field:String}
          AND timestamp >= {since:DateTime64(3, 'UTC')} AND timestamp < {until:DateTime64(3, 'UTC')}
        ORDER BY model
        """,
        parameters={"field": field, "since": _utc(since), "until": _utc(until)},
    ).result_rows
    return [str(r[0]) for r in rows]


@dataclass(frozen=True)
class EmbeddingSample:
    embedder_id: str
    event_ids: list[str]
    vectors: list[list[float]]


def prompt_sample(
    client: Client,
    model: str,
    since: datetime,
    until: datetime,
    *,
    field: str,
    limit: int,
    embedder_id: str | None = None,
) -> EmbeddingSample:
    """Up to ``limit`` embeddings of ``field`` for ``model`` in ``[since, until)``.

    The sample is the events with the smallest ``cityHash64(event_id)``: uniform over events and
    the same on every read, so a restarted monitor or a backtest tests the same points. Without
    ``embedder_id`` the embedder with the most vectors in the window is used (vectors of two
    embedders live in different spaces and are never mixed).
    """
    params: dict[str, Any] = {
        "model": model, "field": field, "since": _utc(since), "until": _utc(until),
        "limit": limit,
    }  # fmt: skip
    window = """model = {model:String} AND field = {field:String}
          AND timestamp >= {since:DateTime64(3, 'UTC')}
          AND timestamp < {until:DateTime64(3, 'UTC')}"""
    if embedder_id is None:
        top = client.query(
            f"SELECT embedder_id FROM embeddings WHERE {window} "  # noqa: S608 - fixed text
            "GROUP BY embedder_id ORDER BY count() DESC, embedder_id LIMIT 1",
            parameters=params,
        ).result_rows
        if not top:
            return EmbeddingSample("", [], [])
        embedder_id = str(top[0][0])
    params["embedder"] = embedder_id
    rows = client.query(
        f"""
        SELECT event_id, any(vector) FROM embeddings
        WHERE {window} AND embedder_id = {{embedder:String}}
        GROUP BY event_id ORDER BY cityHash64(event_id), event_id LIMIT {{limit:UInt32}}
        """,  # noqa: S608 - fixed text; values are bound parameters
        parameters=params,
    ).result_rows
    return EmbeddingSample(embedder_id, [str(r[0]) for r in rows], [list(r[1]) for r in rows])
