"""Migration 17: the tokens of each event and their per-minute sums (``usage_1m``).

Declared beside :mod:`storage.schema`, which lists it as migration 17; like every migration it is
append-only. ``storage.usage`` reads ``usage_1m`` and prices it.
"""

from __future__ import annotations

__all__ = ["USAGE_1M", "USAGE_1M_MV", "USAGE_COLUMNS"]

# Nullable, not ``UInt32`` with a has-usage flag: the two counts are known
# independently (an embedding call reports input tokens only; an instrumentation that records
# none leaves both out), and NULL keeps "not reported" apart from 0 in every sum, average and
# ``count()`` without a second column to keep in step. The null map costs a byte per row, as a
# flag would.
USAGE_COLUMNS = (
    "ALTER TABLE events ADD COLUMN IF NOT EXISTS input_tokens Nullable(UInt32)",
    "ALTER TABLE events ADD COLUMN IF NOT EXISTS output_tokens Nullable(UInt32)",
)

USAGE_1M = """
CREATE TABLE IF NOT EXISTS usage_1m (
    minute        DateTime('UTC'),
    app           LowCardinality(String),
    model         LowCardinality(String),
    model_version LowCardinality(String),
    events        AggregateFunction(uniqExact, String),
    event_rows    SimpleAggregateFunction(sum, UInt64),
    input_rows    SimpleAggregateFunction(sum, UInt64),
    output_rows   SimpleAggregateFunction(sum, UInt64),
    input_sum     SimpleAggregateFunction(sum, UInt64),
    output_sum    SimpleAggregateFunction(sum, UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (model, model_version, app, minute)
"""

# Sums cannot be kept per distinct event the way ``uniqExact`` counts are, so the view also keeps
# how many rows it summed (``event_rows``) beside how many distinct events they were
# (``events``): readers scale the sums by events / event_rows. With no physical duplicate (the
# usual case: the pipeline skips stored ids) the factor is 1 and the sums are exact; while a
# duplicate waits for its merge the totals are an estimate that charges each event about once,
# not the duplicate twice. Latency quantiles stay in ``events_1m`` (same keys), so they are not
# repeated here.
USAGE_1M_MV = """
CREATE MATERIALIZED VIEW IF NOT EXISTS usage_1m_mv TO usage_1m AS
SELECT
    toStartOfMinute(timestamp) AS minute,
    app,
    model,
    model_version,
    uniqExactState(event_id) AS events,
    toUInt64(count()) AS event_rows,
    toUInt64(count(input_tokens)) AS input_rows,
    toUInt64(count(output_tokens)) AS output_rows,
    toUInt64(sum(ifNull(input_tokens, 0))) AS input_sum,
    toUInt64(sum(ifNull(output_tokens, 0))) AS output_sum
FROM events
WHERE input_tokens IS NOT NULL OR output_tokens IS NOT NULL
GROUP BY minute, app, model, model_version
"""
