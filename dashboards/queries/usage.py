"""The Overview's tokens and cost panels: named queries on ``usage_1m`` (migration 17).

Costs are computed in the query from the price table (``TELLTALE_USAGE_PRICES``), which is
written into the SQL as a constant when the dashboards are built (:meth:`storage.PriceTable.sql`),
as the small-cell merge is for ``TELLTALE_PRIVACY_MIN_SLICE_USERS``: a changed price re-prices the
whole history once the dashboards are rebuilt and pushed. Unpriced models chart tokens, and a
cost of NULL (a gap), never 0.

Sums are scaled by distinct events over summed rows, as :func:`storage.usage_by_version` does,
so a physical duplicate waiting for a merge is not charged twice.
"""

# ruff: noqa: S608 - only fixed fragments and the price constant (names restricted by
# storage.PriceTable, quoted by it) are composed into SQL; variable values are bound by
# dashboards.macros or by Grafana.
from __future__ import annotations

from dashboards.queries.base import NamedQuery, event_filters
from storage import PER_TOKENS, PriceTable

__all__ = ["TOKENS_PER_EVENT", "cost_per_minute", "usage_by_version"]

_DEDUPLICATED = "uniqExactMerge(events) / sum(event_rows)"

TOKENS_PER_EVENT = NamedQuery(
    "tokens_per_event",
    """SELECT time, concat(model, ' ', model_version, ' · ', kind) AS series,
       per_event AS tokens_per_event
FROM (
    SELECT $__timeInterval(minute) AS time, model, model_version,
           sum(input_sum) / nullIf(sum(input_rows), 0) AS input_per_event,
           sum(output_sum) / nullIf(sum(output_rows), 0) AS output_per_event
    FROM usage_1m
    WHERE $__timeFilter(minute) AND """
    + event_filters()
    + """
    GROUP BY time, model, model_version
)
ARRAY JOIN ['input', 'output'] AS kind, [input_per_event, output_per_event] AS per_event
WHERE per_event IS NOT NULL
ORDER BY time, series""",
    ("time", "series", "tokens_per_event"),
)


def _cost(prices: PriceTable) -> str:
    """The cost of the grouped rows (grouped by model and model_version)."""
    input_price, output_price = prices.sql()
    return (
        f"(sum(input_sum) * {input_price} + sum(output_sum) * {output_price}) / {PER_TOKENS}"
        f" * {_DEDUPLICATED}"
    )


def cost_per_minute(prices: PriceTable) -> NamedQuery:
    """Cost per minute per model version (a wide time bucket is averaged per minute)."""
    return NamedQuery(
        "cost_per_minute",
        "SELECT $__timeInterval(minute) AS time, concat(model, ' ', model_version) AS series,\n"
        f"       {_cost(prices)} * 60 / greatest($__interval_s, 60) AS cost_per_minute\n"
        "FROM usage_1m\n"
        f"WHERE $__timeFilter(minute) AND {event_filters()}\n"
        "GROUP BY time, model, model_version\n"
        "ORDER BY time, series",
        ("time", "series", "cost_per_minute"),
    )


def usage_by_version(prices: PriceTable) -> NamedQuery:
    """Per model version over the range: tokens, tokens per event and cost, as
    ``telltale rates --usage`` prints them (the most expensive first)."""
    return NamedQuery(
        "usage_by_version",
        f"""SELECT model, model_version, uniqExactMerge(events) AS events_with_usage,
       round(sum(input_sum) * {_DEDUPLICATED}) AS input_tokens,
       round(sum(output_sum) * {_DEDUPLICATED}) AS output_tokens,
       sum(input_sum) / nullIf(sum(input_rows), 0) AS input_per_event,
       sum(output_sum) / nullIf(sum(output_rows), 0) AS output_per_event,
       {_cost(prices)} AS cost,
       cost / events_with_usage AS cost_per_event
FROM usage_1m
WHERE $__timeFilter(minute) AND {event_filters()}
GROUP BY model, model_version
ORDER BY cost DESC NULLS LAST, model, model_version
LIMIT 40""",
        ("model", "model_version", "events_with_usage", "input_tokens", "output_tokens",
         "input_per_event", "output_per_event", "cost", "cost_per_event"),
    )  # fmt: skip
