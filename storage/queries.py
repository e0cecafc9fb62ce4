"""Read queries. Every user-supplied value is a bound parameter, never formatted into SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from storage._sql import add_equal_filters, bucket_start
from storage._time import as_utc

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = [
    "Bucket",
    "RateRow",
    "TableCounts",
    "earliest_timestamp",
    "failure_rates",
    "score_quantiles",
    "table_counts",
]

Bucket = Literal["total", "minute", "hour", "day"]


@dataclass(frozen=True)
class RateRow:
    signal: str
    model: str
    model_version: str
    bucket: datetime | None
    events: int
    failures: int

    @property
    def rate(self) -> float:
        return self.failures / self.events if self.events else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "signal": self.signal,
            "model": self.model,
            "model_version": self.model_version,
            "bucket": self.bucket.isoformat() if self.bucket else None,
            "events": self.events,
            "failures": self.failures,
            "rate": self.rate,
        }


def failure_rates(
    client: Client,
    *,
    signal: str | None = None,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    bucket: Bucket = "total",
) -> list[RateRow]:
    """Failure rates per (signal, model, model_version), optionally per time bucket.

    Versions of one signal are merged: their ``uniqExact`` states count each event once.
    """
    where = ["1"]
    params: dict[str, Any] = {}
    add_equal_filters(where, params, signal=signal, model=model)
    if since is not None:
        where.append("minute >= toStartOfMinute({since:DateTime64(3, 'UTC')})")
        params["since"] = as_utc(since)
    if until is not None:
        where.append("minute < {until:DateTime64(3, 'UTC')}")
        params["until"] = as_utc(until)
    bucket_sql = bucket_start(bucket, "minute")
    sql = f"""
        SELECT signal, model, model_version, {bucket_sql} AS bucket,
               uniqExactMerge(events) AS n, uniqExactIfMerge(failures) AS k
        FROM failure_rates_1m
        WHERE {" AND ".join(where)}
        GROUP BY signal, model, model_version, bucket
        ORDER BY signal, model, model_version, bucket
    """  # noqa: S608 - only fixed fragments are formatted; values are bound parameters
    rows = client.query(sql, parameters=params).result_rows
    return [
        RateRow(
            signal=str(r[0]),
            model=str(r[1]),
            model_version=str(r[2]),
            bucket=None if bucket == "total" else as_utc(r[3]),
            events=int(r[4]),
            failures=int(r[5]),
        )
        for r in rows
    ]


@dataclass(frozen=True)
class TableCounts:
    events: int
    distinct_events: int
    embeddings: int
    scores: int


def earliest_timestamp(client: Client, event_ids: list[str]) -> datetime | None:
    """The earliest stored timestamp of ``event_ids`` (None when none is stored)."""
    if not event_ids:
        return None
    row = client.query(
        "SELECT count(), min(timestamp) FROM events WHERE event_id IN {ids:Array(String)}",
        parameters={"ids": event_ids},
    ).result_rows[0]
    return as_utc(row[1]) if int(row[0]) else None


def table_counts(client: Client) -> TableCounts:
    """Exact row counts after deduplication (``FINAL``), for tests and ``telltale status``."""

    def one(sql: str) -> int:
        return int(client.query(sql).result_rows[0][0])

    return TableCounts(
        events=one("SELECT count() FROM events FINAL"),
        distinct_events=one("SELECT uniqExact(event_id) FROM events"),
        embeddings=one("SELECT count() FROM embeddings FINAL"),
        scores=one("SELECT count() FROM signal_scores FINAL"),
    )


def score_quantiles(
    client: Client,
    signal: str,
    version: int,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, float]:
    """Score distribution of one signal version over stored events (p10, p50, p90, p99)."""
    rows = client.query(
        """
        SELECT quantilesExact(0.1, 0.5, 0.9, 0.99)(score), count()
        FROM signal_scores FINAL
        WHERE signal = {signal:String} AND signal_version = {version:UInt32}
          AND timestamp >= {since:DateTime64(3, 'UTC')} AND timestamp < {until:DateTime64(3, 'UTC')}
        """,
        parameters={
            "signal": signal,
            "version": version,
            "since": as_utc(since or datetime(1970, 1, 1, tzinfo=UTC)),
            "until": as_utc(until or datetime(2200, 1, 1, tzinfo=UTC)),
        },
    ).result_rows
    values, count = rows[0]
    if not count:
        return {}
    return {name: float(v) for name, v in zip(("p10", "p50", "p90", "p99"), values, strict=True)}
