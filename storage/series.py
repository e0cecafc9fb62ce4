"""Reads for the alert monitor: per-minute failure counts and samples of prompt embeddings."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from storage._sql import add_equal_filters
from storage._time import require_utc
from storage._units import unit_group_by, visible_as_of

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = [
    "EmbeddingSample",
    "IngestLag",
    "MinuteCounts",
    "SeriesKey",
    "data_bounds",
    "degenerate_signals",
    "ingest_lag",
    "ingest_watermark",
    "late_rows",
    "minute_counts",
    "prompt_models",
    "prompt_sample",
    "unit_counts",
]

SeriesKey = tuple[str, str, str]
"""``(model, model_version, signal)``."""

MinuteCounts = dict[datetime, tuple[int, int]]
"""Minute start → ``(events, failures)``; minutes without events are absent."""


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
    params: dict[str, Any] = {"since": require_utc(since), "until": require_utc(until)}
    add_equal_filters(where, params, model=model, model_version=model_version)
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


def unit_counts(
    client: Client,
    since: datetime,
    until: datetime,
    *,
    model: str | None = None,
    model_version: str | None = None,
    repeat_window_minutes: int = 10,
    as_of: datetime | None = None,
    backfill_after_s: float = 86_400.0,
) -> dict[SeriesKey, MinuteCounts]:
    """Independent units and failed units per minute for every (model, version, signal).

    The detectors count *units*, not raw events, because one user retrying a failing request
    twenty times is one failure, not twenty independent ones. The rule:

    * events with a ``session_id`` (else a ``user_id``) and the same prompt text that fall in the
      same ``repeat_window_minutes`` window (aligned windows) are one unit;
    * an event with neither, or without a prompt text, is its own unit;
    * a unit counts in the minute of its first event, and has failed if any of its events was
      flagged (by any version of the signal).

    ``as_of`` reads the table as it stood then: only events ingested by ``as_of``, plus rows that
    arrived more than ``backfill_after_s`` after their own timestamp (back-fills and replays of
    old logs, which no live reader would have waited for). A lagged baseline read as of
    ``now - lag`` is therefore exactly as late as the live minutes it is compared with.
    """
    if repeat_window_minutes < 1:
        raise ValueError("repeat_window_minutes must be at least 1")
    since, until = require_utc(since), require_utc(until)
    params: dict[str, Any] = {
        "since": since, "until": until, "window": repeat_window_minutes,
        "read_from": since - timedelta(minutes=repeat_window_minutes),
    }  # fmt: skip
    where = [
        "timestamp >= {read_from:DateTime64(3, 'UTC')}",
        "timestamp < {until:DateTime64(3, 'UTC')}",
    ]
    add_equal_filters(where, params, model=model, model_version=model_version)
    visible = visible_as_of(params, as_of, backfill_after_s)
    scope = " AND ".join(where)
    unit = unit_group_by(event_id="s.event_id", prompt="e.prompt", session="e.sid", user="e.uid",
                         ts="s.ts")  # fmt: skip
    sql = f"""
        SELECT model, model_version, signal, minute, count() AS n, sum(failed) AS k
        FROM (
            SELECT s.mdl AS model, s.ver AS model_version, s.sig AS signal,
                   toStartOfMinute(min(s.ts)) AS minute, max(s.flagged) AS failed
            FROM (
                SELECT event_id, signal AS sig, any(model) AS mdl, any(model_version) AS ver,
                       min(timestamp) AS ts, max(flagged) AS flagged
                FROM signal_scores WHERE {scope}
                GROUP BY event_id, sig
            ) AS s
            INNER JOIN (
                SELECT event_id, any(user_id) AS uid, any(session_id) AS sid,
                       any(prompt_text) AS prompt, min(ingested_at) AS ingested,
                       min(timestamp) AS ts
                FROM events WHERE {scope}
                GROUP BY event_id
            ) AS e ON e.event_id = s.event_id
            WHERE {visible}
            GROUP BY model, model_version, signal, {unit}
        )
        WHERE minute >= {{since:DateTime64(3, 'UTC')}} AND minute < {{until:DateTime64(3, 'UTC')}}
        GROUP BY model, model_version, signal, minute
        ORDER BY model, model_version, signal, minute
    """  # noqa: S608 - only fixed fragments are formatted; values are bound parameters
    series: dict[SeriesKey, MinuteCounts] = defaultdict(dict)
    for r in client.query(sql, parameters=params).result_rows:
        series[(str(r[0]), str(r[1]), str(r[2]))][r[3].astimezone(UTC)] = (int(r[4]), int(r[5]))
    return dict(series)


@dataclass(frozen=True)
class IngestLag:
    """How late rows arrive: ``ingested_at - timestamp`` over recently ingested events (seconds).

    Rows later than the cap (back-fills, replays of old logs) are left out of the quantiles and
    counted in ``backfilled``.
    """

    events: int
    p50_s: float | None
    p99_s: float | None
    max_s: float | None
    backfilled: int

    def as_dict(self) -> dict[str, float | int | None]:
        return {"events": self.events, "p50_s": self.p50_s, "p99_s": self.p99_s,
                "max_s": self.max_s, "backfilled": self.backfilled}  # fmt: skip


def ingest_lag(
    client: Client, now: datetime, *, window_s: float = 3_600.0, cap_s: float = 86_400.0
) -> IngestLag:
    """Ingest lag of the events ingested in ``(now - window_s, now]``."""
    params = {
        "now": require_utc(now), "start": require_utc(now) - timedelta(seconds=window_s),
        "cap": int(cap_s * 1000),
    }  # fmt: skip
    lag = "(toUnixTimestamp64Milli(ingested_at) - toUnixTimestamp64Milli(timestamp))"
    row = client.query(
        f"""
        SELECT countIf({lag} <= {{cap:Int64}}),
               quantileExactIf(0.5)({lag}, {lag} <= {{cap:Int64}}),
               quantileExactIf(0.99)({lag}, {lag} <= {{cap:Int64}}),
               maxIf({lag}, {lag} <= {{cap:Int64}}),
               countIf({lag} > {{cap:Int64}})
        FROM events
        WHERE ingested_at > {{start:DateTime64(3, 'UTC')}}
          AND ingested_at <= {{now:DateTime64(3, 'UTC')}}
        """,  # noqa: S608 - fixed text; values are bound parameters
        parameters=params,
    ).result_rows[0]
    events = int(row[0])
    if not events:
        return IngestLag(0, None, None, None, int(row[4]))
    p50, p99, top = (max(0.0, float(v) / 1000.0) for v in row[1:4])
    return IngestLag(events, p50, p99, top, int(row[4]))


def ingest_watermark(client: Client) -> datetime | None:
    """The latest ``ingested_at`` of any event, or ``None`` on an empty table."""
    first, count = client.query("SELECT max(ingested_at), count() FROM events").result_rows[0]
    return first.astimezone(UTC) if count else None


def late_rows(client: Client, ingested_after: datetime, before: datetime, since: datetime) -> int:
    """Events ingested after ``ingested_after`` whose timestamp lies in ``[since, before)``:
    rows that landed in minutes a reader already processed."""
    return int(
        client.query(
            """
            SELECT count() FROM events
            WHERE ingested_at > {after:DateTime64(3, 'UTC')}
              AND timestamp >= {since:DateTime64(3, 'UTC')}
              AND timestamp < {before:DateTime64(3, 'UTC')}
            """,
            parameters={
                "after": require_utc(ingested_after),
                "before": require_utc(before),
                "since": require_utc(since),
            },
        ).result_rows[0][0]
    )


def degenerate_signals(client: Client) -> dict[str, str]:
    """Signals whose latest version is marked degenerate, with the reason: not monitored."""
    rows = client.query(
        """
        SELECT name, degenerate_reason FROM signals FINAL
        WHERE (name, version) IN (SELECT name, max(version) FROM signals GROUP BY name)
          AND deleted = 0 AND degenerate = 1
        ORDER BY name
        """
    ).result_rows
    return {str(r[0]): str(r[1]) or "marked degenerate" for r in rows}


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
        parameters={"field": field, "since": require_utc(since), "until": require_utc(until)},
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
        "model": model, "field": field, "since": require_utc(since), "until": require_utc(until),
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
