"""Reading what a sampling worker stored: inclusion probabilities and weighted rate sums.

A worker that samples (``streams.sampling``) stores every event with the probability ``p`` with
which it was drawn, and scores only the drawn ones; their score rows carry ``p`` too. A rate
over score rows is then a Horvitz–Thompson (Hájek ratio) estimate: each scored event stands for
``1/p`` events, so a row's rate is ``Σ flagged/p ÷ Σ 1/p``. Its uncertainty comes from the
scored events alone, as many as Kish's effective size ``(Σ w)² / Σ w²`` (``w = 1/p``) says they
are worth. The sums are read from ``signal_scores FINAL`` per event (a duplicate row, or one
event scored by two versions of a signal, counts once, flagged if any version flagged it, as
the per-minute view counts it), and only for rows where some event was sampled: without
sampling the view's counts stand as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from storage._sql import add_equal_filters, bucket_start
from storage._time import as_utc
from storage.queries import Bucket
from storage.rows import FIELD_COLUMNS

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = [
    "EVENT_WEIGHT",
    "WEIGHT_SUMS",
    "WeightedSums",
    "has_sampled_scores",
    "inclusion_probabilities",
    "left_out_counts",
    "minute_filters",
    "unsampled_events",
    "weighted_rate_sums",
]

SampledKey = tuple[str, str, str, datetime | None]
"""(signal, model, model version, bucket start or None in total)."""

_CHUNK = 5_000

EVENT_WEIGHT = "toFloat64(greatest(min(inclusion_probability), 1e-9)) AS p, max(flagged) AS f"
"""Per event (grouped by ``event_id`` over ``signal_scores FINAL``): its probability ``p`` and
flag ``f`` (flagged if any of its rows is)."""

WEIGHT_SUMS = "count() AS n, sum(1 / p) AS w, sum(f / p) AS fw, sum(1 / (p * p)) AS w2"
"""Over such events: the columns of :class:`WeightedSums`, in order."""


@dataclass(frozen=True)
class WeightedSums:
    """One rate row's weighted sums over its scored events (weights ``w = 1/p``)."""

    scored: int
    weight: float  # Σ w: the events the scored ones stand for
    flagged_weight: float  # Σ w over flagged events
    weight_squares: float  # Σ w²

    @property
    def rate(self) -> float:
        """The Hájek estimate of the flag rate."""
        return self.flagged_weight / self.weight if self.weight else 0.0

    @property
    def effective_events(self) -> float:
        """Kish's effective sample size of the weights, ``(Σ w)² / Σ w²`` (at most ``scored``)."""
        if not self.weight_squares:
            return 0.0
        return min(float(self.scored), self.weight * self.weight / self.weight_squares)


def inclusion_probabilities(client: Client, event_ids: list[str]) -> dict[str, float]:
    """The stored inclusion probability of each of ``event_ids`` that is stored."""
    found: dict[str, float] = {}
    for start in range(0, len(event_ids), _CHUNK):
        rows = client.query(
            "SELECT event_id, min(inclusion_probability) FROM events "
            "WHERE event_id IN {ids:Array(String)} GROUP BY event_id",
            parameters={"ids": event_ids[start : start + _CHUNK]},
        ).result_rows
        found.update((str(r[0]), float(r[1])) for r in rows)
    return found


def minute_filters(
    where: list[str], params: dict[str, Any], since: datetime | None, until: datetime | None
) -> None:
    """The rates' time filter on raw rows: whole minutes, as ``failure_rates_1m`` is read."""
    if since is not None:
        where.append("timestamp >= toStartOfMinute({since:DateTime64(3, 'UTC')})")
        params["since"] = as_utc(since)
    if until is not None:
        where.append("toStartOfMinute(timestamp) < {until:DateTime64(3, 'UTC')}")
        params["until"] = as_utc(until)


def has_sampled_scores(client: Client, cond: str, params: dict[str, Any]) -> bool:
    """Whether a score row that ``cond`` selects has a probability below 1 (one column, and
    constant without sampling: cheap to rule out)."""
    found = client.query(
        f"SELECT count() FROM (SELECT 1 FROM signal_scores WHERE {cond} "  # noqa: S608
        "AND inclusion_probability < 1 LIMIT 1)",
        parameters=params,
    ).result_rows[0][0]
    return bool(found)


def weighted_rate_sums(
    client: Client,
    *,
    signal: str | None = None,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    bucket: Bucket = "total",
) -> dict[SampledKey, WeightedSums]:
    """Weighted sums of the rate rows (grouped as ``failure_rates`` groups them) in which at
    least one scored event has an inclusion probability below 1."""
    where = ["1"]
    params: dict[str, Any] = {}
    add_equal_filters(where, params, signal=signal, model=model)
    minute_filters(where, params, since, until)
    cond = " AND ".join(where)
    if not has_sampled_scores(client, cond, params):
        return {}
    bucket_sql = bucket_start(bucket, "timestamp")
    rows = client.query(
        f"""
        SELECT signal, model, model_version, bucket, {WEIGHT_SUMS}
        FROM (
            SELECT signal, model, model_version, {bucket_sql} AS bucket, event_id, {EVENT_WEIGHT}
            FROM signal_scores FINAL
            WHERE {cond}
            GROUP BY signal, model, model_version, bucket, event_id
        )
        GROUP BY signal, model, model_version, bucket
        HAVING min(p) < 1
        """,  # noqa: S608 - only fixed fragments are formatted; values are bound parameters
        parameters=params,
    ).result_rows
    return {
        (str(r[0]), str(r[1]), str(r[2]), None if bucket == "total" else as_utc(r[3])):
            WeightedSums(int(r[4]), float(r[5]), float(r[6]), float(r[7]))
        for r in rows
    }  # fmt: skip


def unsampled_events(
    client: Client,
    signal: str,
    field: str,
    *,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    bucket: Bucket = "total",
) -> dict[tuple[str, str, datetime | None], int]:
    """Per (model, version, bucket): stored events with ``field`` that the sampler left out of
    ``signal``'s scores (probability below 1, no score of ``signal``): seen, not scored.

    An event has the field when its content is stored; where a row stores none of it (a
    content policy drops the field), every event left out counts."""
    where = ["1"]
    params: dict[str, Any] = {}
    add_equal_filters(where, params, model=model)
    minute_filters(where, params, since, until)
    rows = left_out_counts(client, signal, field, bucket_start(bucket, "timestamp"), where, params)
    return {
        (str(r[0]), str(r[1]), None if bucket == "total" else as_utc(r[2])): int(r[3]) for r in rows
    }


def left_out_counts(
    client: Client, signal: str, field: str, group: str, where: list[str], params: dict[str, Any]
) -> list[tuple[Any, ...]]:
    """Rows (model, version, group, events left out) of :func:`unsampled_events`, grouped by
    ``group`` (fixed SQL over an ``events`` row) among the events ``where`` selects."""
    column = FIELD_COLUMNS[field]  # a fixed column name, never user input
    rows = client.query(
        f"""
        SELECT model, model_version, grp,
               if(countIf(content != '') = 0, countIf(left_out),
                  countIf(left_out AND content != ''))
        FROM (
            SELECT event_id, any(model) AS model, any(model_version) AS model_version,
                   any({group}) AS grp, any({column}) AS content,
                   min(inclusion_probability) < 1 AND event_id NOT IN (
                       SELECT event_id FROM signal_scores WHERE signal = {{left_out_signal:String}}
                   ) AS left_out
            FROM events WHERE {" AND ".join(where)}
            GROUP BY event_id
        )
        GROUP BY model, model_version, grp
        """,  # noqa: S608 - only fixed fragments are formatted; values are bound parameters
        parameters={**params, "left_out_signal": signal},
    ).result_rows
    return [tuple(r) for r in rows]
