"""The prompt-drift and pipeline-health panels, and the report's bucket widths."""

# ruff: noqa: S608 - only fixed fragments (columns, the variable filters) are composed into
# SQL here; every value is bound as a parameter by dashboards.macros or by Grafana.
from __future__ import annotations

from dashboards.queries.base import (
    NamedQuery,
    any_selected,
    app_models,
    event_filters,
)

__all__ = [
    "DEAD_LETTERS",
    "DEAD_LETTER_SHARE_RECENT",
    "DRIFT_CLUSTER_SHARES",
    "DRIFT_DETECTOR_DELAY",
    "DRIFT_STATISTIC",
    "EMBEDDING_CACHE_HIT_RATE",
    "EVENTS_PER_BUCKET",
    "EVENTS_PER_SECOND",
    "GENERATION_LATENCY",
    "INGEST_LAG",
    "INGEST_LAG_RECENT",
    "REPORT_BUCKET_WIDTHS_S",
    "SECONDS_SINCE_LAST_EVENT",
    "SHARE_SCORED",
]


# --- prompt drift ---------------------------------------------------------------------------

DRIFT_STATISTIC = NamedQuery(
    "drift_statistic",
    "SELECT window_end AS time, model, statistic, threshold\n"
    "FROM drift_windows FINAL\n"
    f"WHERE $__timeFilter(window_end) AND {any_selected('model', 'model')}\n"
    f"  AND {app_models('model')}\n"
    "ORDER BY time, model",
    ("time", "model", "statistic", "threshold"),
)

# ``clusters`` holds a JSON array of {"cluster", "reference_share", "recent_share", ...}
# objects (the shape of ``alerts.detectors.explain`` explanations); the newest window per model is
# shown.
DRIFT_CLUSTER_SHARES = NamedQuery(
    "drift_cluster_shares",
    """SELECT concat(model, ' #', toString(JSONExtractInt(c, 'cluster'))) AS cluster,
       JSONExtractFloat(c, 'reference_share') AS reference_share,
       JSONExtractFloat(c, 'recent_share') AS recent_share
FROM (
    SELECT model, window_end, clusters
    FROM drift_windows FINAL
    WHERE $__timeFilter(window_end) AND """
    + f"{any_selected('model', 'model')} AND {app_models('model')}"
    + """
    ORDER BY window_end DESC
    LIMIT 1 BY model
)
ARRAY JOIN JSONExtractArrayRaw(clusters) AS c
ORDER BY model, recent_share - reference_share DESC""",
    ("cluster", "reference_share", "recent_share"),
)

# --- pipeline health ------------------------------------------------------------------------

# An interval shorter than a minute would split the per-minute counts unevenly.
EVENTS_PER_SECOND = NamedQuery(
    "events_per_second",
    "SELECT $__timeInterval(minute) AS time, model,\n"
    "       uniqExactMerge(events) / greatest($__interval_s, 60) AS events_per_s\n"
    "FROM events_1m\n"
    f"WHERE $__timeFilter(minute) AND {event_filters()}\n"
    "GROUP BY time, model\n"
    "ORDER BY time, model",
    ("time", "model", "events_per_s"),
)

# The share of stored events the signals scored, per model: below 1 while the worker samples
# (TELLTALE_SAMPLE_*, and the overload control lowering the rate while it falls behind).
# Scored events are those of the most widely applied signal (a signal of one field scores only
# the events that have it); events are bucketed by their own minute, so the share of a minute
# is the rate its events were processed at. With an app selected, the scored events are those
# of the app's models (failure_rates_1m has no app column).
SHARE_SCORED = NamedQuery(
    "share_scored",
    """SELECT e.time AS time, e.model AS model,
       toFloat64(least(s.scored / greatest(e.events, 1), 1)) AS share_scored
FROM (
    SELECT $__timeInterval(minute) AS time, model, uniqExactMerge(events) AS events
    FROM events_1m
    WHERE $__timeFilter(minute) AND """
    + event_filters()
    + """
    GROUP BY time, model
) AS e
LEFT JOIN (
    SELECT time, model, max(n) AS scored
    FROM (
        SELECT $__timeInterval(minute) AS time, model, signal, uniqExactMerge(events) AS n
        FROM failure_rates_1m
        WHERE $__timeFilter(minute) AND """
    + f"{any_selected('model', 'model')} AND {any_selected('model_version', 'version')}\n"
    + f"          AND {app_models('model')}"
    + """
        GROUP BY time, model, signal
    )
    GROUP BY time, model
) AS s ON e.time = s.time AND e.model = s.model
ORDER BY time, model""",
    ("time", "model", "share_scored"),
)

# The static report's bucket rule (dashboards.report): for each candidate bucket width (epoch-
# aligned, as $__timeInterval), the median number of events per bucket and model version.
REPORT_BUCKET_WIDTHS_S = (60, 300, 900, 3_600, 21_600, 86_400)
EVENTS_PER_BUCKET = NamedQuery(
    "events_per_bucket",
    "SELECT width AS width_s, toFloat64(quantileExact(0.5)(n)) AS median_events\n"
    "FROM (\n"
    "    SELECT width, intDiv(toUnixTimestamp(minute), width) AS bucket, model, model_version,\n"
    "           uniqExactMerge(events) AS n\n"
    f"    FROM events_1m ARRAY JOIN {list(REPORT_BUCKET_WIDTHS_S)} AS width\n"
    f"    WHERE $__timeFilter(minute) AND {event_filters()}\n"
    "    GROUP BY width, bucket, model, model_version\n"
    ")\n"
    "GROUP BY width_s\n"
    "ORDER BY width_s",
    ("width_s", "median_events"),
)

# Write latency: from the event's own timestamp to its row in ClickHouse. Events that arrive
# more than a day late are replayed history, not lag, and are left out.
INGEST_LAG = NamedQuery(
    "ingest_lag",
    """SELECT $__timeInterval(ingested_at) AS time,
       quantile(0.5)(lag_ms) / 1000 AS p50_s,
       quantile(0.95)(lag_ms) / 1000 AS p95_s,
       max(lag_ms) / 1000 AS max_s
FROM (
    SELECT ingested_at,
           toUnixTimestamp64Milli(ingested_at) - toUnixTimestamp64Milli(timestamp) AS lag_ms
    FROM events
    WHERE $__timeFilter(ingested_at) AND timestamp >= $__fromTime - INTERVAL 1 DAY
      AND """
    + event_filters()
    + """
)
GROUP BY time
ORDER BY time""",
    ("time", "p50_s", "p95_s", "max_s"),
)

GENERATION_LATENCY = NamedQuery(
    "generation_latency",
    """SELECT time, q[1] AS p50_ms, q[2] AS p95_ms, q[3] AS p99_ms
FROM (
    SELECT $__timeInterval(minute) AS time, quantilesMerge(0.5, 0.95, 0.99)(latency_ms) AS q
    FROM events_1m
    WHERE $__timeFilter(minute) AND """
    + event_filters()
    + """
    GROUP BY time
)
WHERE isFinite(q[1])
ORDER BY time""",
    ("time", "p50_ms", "p95_ms", "p99_ms"),
)

# The monitor stores no run times; how long after a window closed its drift test was stored
# is the closest measure of detector delay in ClickHouse.
DRIFT_DETECTOR_DELAY = NamedQuery(
    "drift_detector_delay",
    "SELECT window_end AS time, model,\n"
    "       (toUnixTimestamp64Milli(computed_at) - toUnixTimestamp64Milli(window_end)) / 1000\n"
    "           AS delay_s\n"
    "FROM drift_windows FINAL\n"
    f"WHERE $__timeFilter(window_end) AND {any_selected('model', 'model')}\n"
    "ORDER BY time, model",
    ("time", "model", "delay_s"),
)

# Also the "pipeline stalled" alert: one row whatever the data, so no data cannot mean "fine".
# Events are scanned over a day at most; with none in that day the value is the time since
# 1970, which fires any threshold.
SECONDS_SINCE_LAST_EVENT = NamedQuery(
    "seconds_since_last_event",
    "SELECT toFloat64(dateDiff('second', max(ingested_at), now64(3))) AS seconds_since_last_event\n"
    "FROM events\n"
    "WHERE timestamp >= now() - INTERVAL 1 DAY",
    ("seconds_since_last_event",),
)

# Dead letters: the worker records where and why it refused each payload (the payload stays in
# the Kafka dead-letter topic). Per minute, by source topic.
DEAD_LETTERS = NamedQuery(
    "dead_letters",
    "SELECT $__timeInterval(failed_at) AS time, topic,\n"
    "       count() / greatest($__interval_s / 60, 1) AS dead_letters_per_min\n"
    "FROM dead_letters FINAL\n"
    "WHERE $__timeFilter(failed_at)\n"
    "GROUP BY time, topic\n"
    "ORDER BY time, topic",
    ("time", "topic", "dead_letters_per_min"),
)

# The embedding cache: the share of texts whose vectors came from the batch, the workers' LRU or
# the shared ClickHouse cache instead of the model. Per interval and field.
EMBEDDING_CACHE_HIT_RATE = NamedQuery(
    "embedding_cache_hit_rate",
    "SELECT $__timeInterval(at) AS time, field,\n"
    "       toFloat64(sum(lookups - model_texts) / greatest(sum(lookups), 1)) AS hit_rate\n"
    "FROM embedding_cache_stats\n"
    "WHERE $__timeFilter(at)\n"
    "GROUP BY time, field\n"
    "ORDER BY time, field",
    ("time", "field", "hit_rate"),
)

# The "dead letters" alert: the share of payloads of the last 15 minutes that were refused.
# One row whatever the data (0 when nothing arrived, which the stall rule covers).
DEAD_LETTER_SHARE_RECENT = NamedQuery(
    "dead_letter_share_recent",
    "SELECT toFloat64(dead / greatest(dead + stored, 1)) AS dead_letter_share\n"
    "FROM (SELECT count() AS dead FROM dead_letters FINAL\n"
    "      WHERE failed_at >= now64(3) - INTERVAL 15 MINUTE) AS d\n"
    "CROSS JOIN (SELECT count() AS stored FROM events\n"
    "            WHERE ingested_at >= now64(3) - INTERVAL 15 MINUTE) AS e",
    ("dead_letter_share",),
)

# The "ingest lag" alert: p95 write latency of the last 15 minutes (0 when nothing arrived,
# which the stall rule covers). A proxy for consumer lag, which lives in Kafka.
INGEST_LAG_RECENT = NamedQuery(
    "ingest_lag_recent",
    "SELECT toFloat64(ifNotFinite(quantile(0.95)(\n"
    "           toUnixTimestamp64Milli(ingested_at) - toUnixTimestamp64Milli(timestamp)) / 1000,\n"
    "       0)) AS ingest_lag_p95_s\n"
    "FROM events\n"
    "WHERE ingested_at >= now64(3) - INTERVAL 15 MINUTE AND timestamp >= now() - INTERVAL 1 DAY",
    ("ingest_lag_p95_s",),
)
