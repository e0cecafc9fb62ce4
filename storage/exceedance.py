"""Per-event quantities above a fixed threshold, per unit and minute: what the release test reads
to watch latency and token usage as it watches failure rates.

A quantity is one number per event, computed from stored columns: ``latency_ms``,
``output_tokens``, or ``cost`` (the event's input and output tokens at a version's price per
:data:`~storage.usage.PER_TOKENS`; a token count that was not reported counts as 0, as in
``usage_1m``, but an event that reported neither has no cost). Events without the quantity are
left out. Units follow the rule of :func:`storage.series.unit_counts` (one user's retries of
one request are one unit) and a unit's value is the largest of its events'.
:func:`quantity_quantile` fixes a threshold from one version's units; :func:`exceedance_counts`
then counts, per minute, the units that hold the quantity and those of them above the threshold:
the ``(n, k)`` a failure rate has, under a name of the caller's.

>>> Exceedance("latency.p95", "latency_ms", 812.0).quantity
'latency_ms'
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, get_args

from storage._sql import add_equal_filters
from storage._time import require_utc
from storage._units import unit_group_by, visible_as_of
from storage.series import MinuteCounts, SeriesKey
from storage.usage import PER_TOKENS, Price

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["QUANTITIES", "Exceedance", "Quantity", "exceedance_counts", "quantity_quantile"]

Quantity = Literal["latency_ms", "output_tokens", "cost"]
QUANTITIES: tuple[Quantity, ...] = get_args(Quantity)
"""The per-event quantities that can be watched."""

# One value per event (the events subquery groups rows by event_id). NaN and infinite
# latencies are missing values, not slow events. Prices are bound parameters.
_VALUE_SQL: dict[Quantity, str] = {
    "latency_ms": "if(isFinite(any(latency_ms)), any(latency_ms), NULL)",
    "output_tokens": "toFloat64(any(output_tokens))",
    "cost": (
        "if(any(input_tokens) IS NULL AND any(output_tokens) IS NULL, NULL,"
        " (toFloat64(ifNull(any(input_tokens), 0)) * {price_in:Float64}"
        " + toFloat64(ifNull(any(output_tokens), 0)) * {price_out:Float64}) / {per:Float64})"
    ),
}


@dataclass(frozen=True)
class Exceedance:
    """Count the units whose ``quantity`` exceeds ``threshold`` under the series name ``name``."""

    name: str
    quantity: Quantity
    threshold: float


def _events_sql(values: str) -> str:
    return f"""
        SELECT event_id, any(user_id) AS uid, any(session_id) AS sid, any(prompt_text) AS prompt,
               min(ingested_at) AS ingested, min(timestamp) AS ts, {values}
        FROM events
        WHERE timestamp >= {{read_from:DateTime64(3, 'UTC')}}
          AND timestamp < {{until:DateTime64(3, 'UTC')}} AND {{scope}}
        GROUP BY event_id
    """  # noqa: S608 - only fixed fragments are formatted; values are bound parameters


def _params(
    model: str, model_version: str, price: Price | None, quantities: Sequence[Quantity]
) -> tuple[dict[str, Any], str]:
    if "cost" in quantities and price is None:
        raise ValueError("the cost of an event needs the version's price")
    params: dict[str, Any] = {"per": float(PER_TOKENS)}
    if price is not None:
        params["price_in"], params["price_out"] = price.input_per_1m, price.output_per_1m
    where: list[str] = []
    add_equal_filters(where, params, model=model, model_version=model_version)
    return params, " AND ".join(where)


def quantity_quantile(
    client: Client,
    since: datetime,
    until: datetime,
    *,
    model: str,
    model_version: str,
    quantity: Quantity,
    level: float,
    price: Price | None = None,
    repeat_window_minutes: int = 10,
    as_of: datetime | None = None,
    backfill_after_s: float = 86_400.0,
) -> tuple[float | None, int]:
    """The ``level`` quantile over units of the largest ``quantity`` of each unit's events, for
    the version's units that start in ``[since, until)`` and hold it (units and ``as_of`` as in
    :func:`storage.series.unit_counts`), and how many units that was; ``(None, 0)`` without any.

    Over units, not events: the exceedance counts are per unit (a unit is above when any of its
    events is), so the baseline's share above the ``level`` quantile is ``1 - level`` however
    many copies a retry storm sends (over events, slow retried copies would fill the tail).
    ``quantileDeterministic`` keyed by the unit's first event id: exact up to 8,192 units, above
    that a sample chosen by the ids' hashes, so every read of the same rows gives the same value.
    """
    if not 0.0 < level < 1.0:
        raise ValueError("level must be in (0, 1)")
    if repeat_window_minutes < 1:
        raise ValueError("repeat_window_minutes must be at least 1")
    params, scope = _params(model, model_version, price, [quantity])
    since, until = require_utc(since), require_utc(until)
    params.update(
        since=since, until=until, level=level, window=repeat_window_minutes,
        read_from=since - timedelta(minutes=repeat_window_minutes),
    )  # fmt: skip
    visible = visible_as_of(params, as_of, backfill_after_s)
    events = _events_sql(f"{_VALUE_SQL[quantity]} AS value").replace("{scope}", scope)
    unit = unit_group_by(event_id="e.event_id", prompt="e.prompt", session="e.sid",
                         user="e.uid", ts="e.ts")  # fmt: skip
    row = client.query(
        f"""
        SELECT quantileDeterministic({{level:Float64}})(top, cityHash64(first_id)), count()
        FROM (
            SELECT max(value) AS top, min(e.event_id) AS first_id, min(e.ts) AS first_ts
            FROM ({events}) AS e
            WHERE value IS NOT NULL AND {visible}
            GROUP BY {unit}
        )
        WHERE first_ts >= {{since:DateTime64(3, 'UTC')}}
        """,  # noqa: S608 - only fixed fragments are formatted; values are bound parameters
        parameters=params,
    ).result_rows[0]
    count = int(row[1])
    return (float(row[0]), count) if count else (None, 0)


def exceedance_counts(
    client: Client,
    since: datetime,
    until: datetime,
    *,
    model: str,
    model_version: str,
    watches: Sequence[Exceedance],
    price: Price | None = None,
    repeat_window_minutes: int = 10,
    as_of: datetime | None = None,
    backfill_after_s: float = 86_400.0,
) -> dict[SeriesKey, MinuteCounts]:
    """Per watch and minute of ``[since, until)``: units holding the quantity, and those with an
    event strictly above the threshold, keyed ``(model, model_version, watch.name)``.

    Units, their minute (that of their first event holding the quantity) and ``as_of`` follow
    :func:`storage.series.unit_counts`. ``price`` is the version's (needed for ``cost``).
    """
    if repeat_window_minutes < 1:
        raise ValueError("repeat_window_minutes must be at least 1")
    if not watches:
        return {}
    quantities = sorted({w.quantity for w in watches})
    params, scope = _params(model, model_version, price, quantities)
    since, until = require_utc(since), require_utc(until)
    params.update(
        since=since, until=until, window=repeat_window_minutes,
        read_from=since - timedelta(minutes=repeat_window_minutes),
        thresholds=[float(w.threshold) for w in watches],
        watch_ids=list(range(len(watches))),
    )  # fmt: skip
    visible = visible_as_of(params, as_of, backfill_after_s)
    values = ", ".join(f"{_VALUE_SQL[q]} AS v_{q}" for q in quantities)
    events = _events_sql(values).replace("{scope}", scope)
    per_watch = ", ".join(f"v_{w.quantity}" for w in watches)
    unit = unit_group_by(event_id="e.event_id", prompt="e.prompt", session="e.sid",
                         user="e.uid", ts="e.ts")  # fmt: skip
    sql = f"""
        SELECT watch, minute, count() AS n, sum(above) AS k
        FROM (
            SELECT watch, toStartOfMinute(min(e.ts)) AS minute, max(value > threshold) AS above
            FROM ({events}) AS e
            ARRAY JOIN [{per_watch}] AS value, {{thresholds:Array(Float64)}} AS threshold,
                       {{watch_ids:Array(UInt32)}} AS watch
            WHERE value IS NOT NULL AND {visible}
            GROUP BY watch, {unit}
        )
        WHERE minute >= {{since:DateTime64(3, 'UTC')}} AND minute < {{until:DateTime64(3, 'UTC')}}
        GROUP BY watch, minute
        ORDER BY watch, minute
    """  # noqa: S608 - only fixed fragments are formatted; values are bound parameters
    series: dict[SeriesKey, MinuteCounts] = defaultdict(dict)
    for r in client.query(sql, parameters=params).result_rows:
        key = (model, model_version, watches[int(r[0])].name)
        series[key][r[1].astimezone(UTC)] = (int(r[2]), int(r[3]))
    return dict(series)
