"""Template variables, release annotations and the Overview's panels (rates, releases, open
detections, slices with the small-cell merge, signal groups, discovered clusters)."""

# ruff: noqa: S608 - only fixed fragments (columns, the variable filters) are composed into
# SQL here; every value is bound as a parameter by dashboards.macros or by Grafana.
from __future__ import annotations

from dashboards.queries.base import (
    NamedQuery,
    any_selected,
    app_models,
    event_filters,
    rate_filters,
)
from storage import slice_people, small_cells_merged

__all__ = [
    "ANNOTATION_RELEASES",
    "DISCOVERED_CLUSTERS",
    "GROUP_FAILURE_RATE",
    "NEGATIVE_FEEDBACK_RATE",
    "OPEN_DETECTIONS",
    "OVERVIEW_FAILURE_RATE",
    "RELEASE_CHANGES",
    "VARIABLE_APP",
    "VARIABLE_MODEL",
    "VARIABLE_SIGNAL",
    "VARIABLE_SLICE_KEY",
    "VARIABLE_VERSION",
    "open_detections_for",
    "slice_failure_rate_series",
    "slice_failure_rates",
]


# --- template variables ---------------------------------------------------------------------

VARIABLE_APP = NamedQuery(
    "variable_app",
    "SELECT DISTINCT app FROM events_1m WHERE $__timeFilter(minute) ORDER BY app",
    ("app",),
)
VARIABLE_MODEL = NamedQuery(
    "variable_model",
    "SELECT DISTINCT model FROM events_1m\n"
    f"WHERE $__timeFilter(minute) AND {any_selected('app', 'app')}\nORDER BY model",
    ("model",),
)
VARIABLE_VERSION = NamedQuery(
    "variable_version",
    "SELECT DISTINCT model_version FROM events_1m\n"
    f"WHERE $__timeFilter(minute) AND {any_selected('app', 'app')}\n"
    f"  AND {any_selected('model', 'model')}\n"
    "ORDER BY model_version",
    ("model_version",),
)
# A signal is deleted by a tombstone version: its newest version decides.
VARIABLE_SIGNAL = NamedQuery(
    "variable_signal",
    "SELECT name FROM signals GROUP BY name HAVING argMax(deleted, version) = 0 ORDER BY name",
    ("name",),
)

# --- annotations ----------------------------------------------------------------------------

ANNOTATION_RELEASES = NamedQuery(
    "annotation_releases",
    "SELECT released_at AS time, concat(model, ' ', model_version, ' released') AS text,\n"
    "       model AS tags\n"
    "FROM releases FINAL\n"
    f"WHERE $__timeFilter(released_at) AND {any_selected('model', 'model')}\n"
    f"  AND {app_models('model')}\n"
    "ORDER BY time",
    ("time", "text", "tags"),
)

# --- overview -------------------------------------------------------------------------------

OVERVIEW_FAILURE_RATE = NamedQuery(
    "overview_failure_rate",
    "SELECT $__timeInterval(minute) AS time,\n"
    "       concat(signal, ' · ', model, ' ', model_version) AS series,\n"
    "       uniqExactIfMerge(failures) / uniqExactMerge(events) AS failure_rate\n"
    "FROM failure_rates_1m\n"
    f"WHERE $__timeFilter(minute) AND {rate_filters()}\n"
    "GROUP BY time, series\n"
    "ORDER BY time, series",
    ("time", "series", "failure_rate"),
)

# Delayed user feedback (``storage.feedback``): the share of judged events whose lowest value
# is negative, per app, model and version, by the event's time. Events nobody judged are in
# neither count. The same numbers, per model and version, are the ``feedback.negative`` series
# of the failure-rate panel and the detectors.
NEGATIVE_FEEDBACK_RATE = NamedQuery(
    "negative_feedback_rate",
    "SELECT $__timeInterval(e.at) AS time,\n"
    "       concat(e.event_app, ' · ', e.event_model, ' ', e.event_version) AS series,\n"
    "       uniqExactIf(e.event_id, f.low < 0) / uniqExact(e.event_id) AS negative_rate\n"
    "FROM (SELECT event_id, min(value) AS low FROM feedback FINAL GROUP BY event_id) AS f\n"
    "INNER JOIN (\n"
    "    SELECT event_id, any(timestamp) AS at, any(app) AS event_app,\n"
    "           any(model) AS event_model, any(model_version) AS event_version\n"
    "    FROM events\n"
    f"    WHERE $__timeFilter(timestamp) AND {event_filters()}\n"
    "    GROUP BY event_id\n"
    ") AS e ON e.event_id = f.event_id\n"
    "GROUP BY time, series\n"
    "ORDER BY time, series",
    ("time", "series", "negative_rate"),
)

# Per model, the newest release up to the end of the range; per signal, the rate of the
# released version since the release against the rate of the model in the day before it.
# Per-minute counts add up exactly: an event falls into exactly one minute.
RELEASE_CHANGES = NamedQuery(
    "release_changes",
    """SELECT model, release, released_at, signal,
       sumIf(k, NOT is_after) / greatest(sumIf(n, NOT is_after), 1) AS rate_before,
       sumIf(k, is_after) / greatest(sumIf(n, is_after), 1) AS rate_after,
       rate_after - rate_before AS change,
       sumIf(n, is_after) AS events_after,
       sumIf(n, NOT is_after) AS events_before
FROM (
    SELECT r.model AS model, r.last_version AS release, r.last_released_at AS released_at,
           s.signal AS signal, s.n AS n, s.k AS k, s.minute >= r.last_released_at AS is_after
    FROM (
        SELECT model, argMax(model_version, released_at) AS last_version,
               max(released_at) AS last_released_at
        FROM (
            SELECT model, model_version, released_at FROM releases FINAL
            UNION ALL
            -- Versions without a release row (a replayed log, no monitor run yet) count as
            -- released at their first minute, as the monitor would register them.
            SELECT model, model_version, toDateTime64(min(minute), 3, 'UTC') AS released_at
            FROM events_1m
            WHERE (model, model_version) NOT IN (SELECT model, model_version FROM releases FINAL)
            GROUP BY model, model_version
        )
        WHERE released_at <= $__toTime_ms
        GROUP BY model
    ) AS r
    INNER JOIN (
        SELECT model, model_version, signal, minute,
               uniqExactMerge(events) AS n, uniqExactIfMerge(failures) AS k
        FROM failure_rates_1m
        WHERE minute <= $__toTime AND """
    + rate_filters()
    + """
        GROUP BY model, model_version, signal, minute
    ) AS s ON s.model = r.model
    WHERE s.minute >= r.last_released_at - INTERVAL 1 DAY
      AND (s.minute < r.last_released_at OR s.model_version = r.last_version)
)
GROUP BY model, release, released_at, signal
HAVING events_after > 0
ORDER BY abs(change) DESC, model, signal
LIMIT 20""",
    (
        "model",
        "release",
        "released_at",
        "signal",
        "rate_before",
        "rate_after",
        "change",
        "events_after",
        "events_before",
    ),
)

_DETECTION_COLUMNS = (
    "opened_at",
    "detector",
    "model",
    "model_version",
    "signal",
    "statistic",
    "threshold",
    "p_value",
    "effect",
    "key",
)
# A detection is open until the monitor stores a row with ``resolved_at``; FINAL keeps the
# newest row of each detection (ReplacingMergeTree on ``updated_at``).
OPEN_DETECTIONS = NamedQuery(
    "open_detections",
    f"SELECT {', '.join(_DETECTION_COLUMNS)}\n"
    "FROM detections FINAL\n"
    "WHERE resolved_at IS NULL\n"
    f"  AND {any_selected('model', 'model')} AND {any_selected('model_version', 'version')}\n"
    f"  AND {any_selected('signal', 'signal')} AND {app_models('model')}\n"
    "ORDER BY opened_at DESC\n"
    "LIMIT 100",
    _DETECTION_COLUMNS,
)


def open_detections_for(detector: str) -> NamedQuery:
    """Open detections of one detector, one row per (model, version, signal): an alert query.

    Grafana alerting reads a table with one numeric column as one alert instance per row,
    labelled by the string columns. ``detector`` is a fixed name from code, never user input.
    """
    if not detector.replace("_", "").isalnum():
        raise ValueError(f"detector name {detector!r} must be an identifier")
    if detector == "release_spike":
        # The top slice of the release's localisation (alerts.tracks.localize) becomes a label, so
        # the alert's summary and annotations say where the regression concentrates.
        return NamedQuery(
            f"open_detections_{detector}",
            "SELECT model, model_version, signal,\n"
            "       any(JSONExtractString(details, 'localization', 'top')) AS top_slice,\n"
            "       toFloat64(count()) AS open_detections\n"
            "FROM detections FINAL\n"
            f"WHERE detector = '{detector}' AND resolved_at IS NULL\n"
            "GROUP BY model, model_version, signal\n"
            "ORDER BY model, model_version, signal",
            ("model", "model_version", "signal", "top_slice", "open_detections"),
        )
    return NamedQuery(
        f"open_detections_{detector}",
        "SELECT model, model_version, signal, toFloat64(count()) AS open_detections\n"
        "FROM detections FINAL\n"
        f"WHERE detector = '{detector}' AND resolved_at IS NULL\n"
        "GROUP BY model, model_version, signal\n"
        "ORDER BY model, model_version, signal",
        ("model", "model_version", "signal", "open_detections"),
    )


# --- slices, signal groups, discovered clusters (migration 13) ------------------------------

VARIABLE_SLICE_KEY = NamedQuery(
    "variable_slice_key",
    "SELECT DISTINCT slice_key FROM failure_rates_by_slice_1m\n"
    "WHERE $__timeFilter(minute)\nORDER BY slice_key",
    ("slice_key",),
)


def _slice_counts(min_users: int, *, by_time: bool = False) -> str:
    """Events and failures per (signal, model, version, slice key, value), per time bucket with
    ``by_time``; with ``min_users`` > 0 small cells are merged into ``other`` or withheld
    (``TELLTALE_PRIVACY_MIN_SLICE_USERS``, :func:`storage.small_cells_merged`)."""
    time = "$__timeInterval(minute) AS time, " if by_time else ""
    counts = (
        f"SELECT {time}signal, model, model_version, slice_key, slice_value,\n"
        "       uniqExactMerge(events) AS n, uniqExactIfMerge(failures) AS k\n"
        "FROM failure_rates_by_slice_1m\n"
        f"WHERE $__timeFilter(minute) AND {rate_filters()}\n"
        f"  AND {any_selected('slice_key', 'slice_key')}\n"
        f"GROUP BY {'time, ' if by_time else ''}signal, model, model_version, slice_key, "
        "slice_value"
    )
    if min_users <= 0:
        return counts
    people = slice_people("$__timeFilter(timestamp)", any_selected("slice_key", "slice_key"))
    return small_cells_merged(counts, people, min_users, carry="time" if by_time else "")


def slice_failure_rates(min_users: int = 0) -> NamedQuery:
    """Per (signal, model, version, slice): the rate with its Wilson 95 % interval (z = 1.96),
    most confidently high first: the slice whose *lower* bound is highest leads."""
    return NamedQuery(
        "slice_failure_rates",
        """SELECT signal, model, model_version, concat(slice_key, '=', if(slice_value = '',
       '(unset)', slice_value)) AS slice, n AS events, k AS failures, k / n AS failure_rate,
       (failure_rate + 1.9208 / n - 1.96 * sqrt(failure_rate * (1 - failure_rate) / n
           + 0.9604 / (n * n))) / (1 + 3.8416 / n) AS rate_low,
       (failure_rate + 1.9208 / n + 1.96 * sqrt(failure_rate * (1 - failure_rate) / n
           + 0.9604 / (n * n))) / (1 + 3.8416 / n) AS rate_high
FROM (
"""
        + _slice_counts(min_users)
        + """
)
WHERE n > 0
ORDER BY rate_low DESC, signal, model, model_version, slice
LIMIT 40""",
        ("signal", "model", "model_version", "slice", "events", "failures", "failure_rate",
         "rate_low", "rate_high"),
    )  # fmt: skip


def slice_failure_rate_series(min_users: int = 0) -> NamedQuery:
    """Share of events flagged per slice value and time bucket (small cells as above)."""
    return NamedQuery(
        "slice_failure_rate_series",
        "SELECT time, concat(signal, ' · ', model_version, ' · ', slice_key, '=', slice_value)\n"
        "       AS series,\n"
        "       sum(k) / sum(n) AS failure_rate\n"
        f"FROM (\n{_slice_counts(min_users, by_time=True)}\n)\n"
        "GROUP BY time, series\n"
        "ORDER BY time, series",
        ("time", "series", "failure_rate"),
    )


GROUP_FAILURE_RATE = NamedQuery(
    "group_failure_rate",
    "SELECT $__timeInterval(minute) AS time,\n"
    "       concat(signal, ' · ', model, ' ', model_version) AS series,\n"
    "       uniqExactIfMerge(failures) / uniqExactMerge(events) AS failure_rate\n"
    "FROM failure_rates_1m\n"
    "WHERE $__timeFilter(minute) AND signal IN (SELECT name FROM signal_groups FINAL)\n"
    f"  AND {any_selected('model', 'model')} AND {any_selected('model_version', 'version')}\n"
    f"  AND {app_models('model')}\n"
    "GROUP BY time, series\n"
    "ORDER BY time, series",
    ("time", "series", "failure_rate"),
)

# The newest ``telltale discover`` run of each model whose window overlaps the range.
DISCOVERED_CLUSTERS = NamedQuery(
    "discovered_clusters",
    """SELECT rank, cluster_id, model, size, recent_share, reference_share, growth, distance,
       arrayStringConcat(arrayMap(t -> substring(t, 1, 120), arraySlice(example_texts, 1, 3)),
                         ' | ') AS examples,
       arrayStringConcat(arrayMap(name -> concat(name, ' ', toString(round(100 *
           JSONExtractFloat(signal_scores, name, 'flagged_share'))), '%'),
           JSONExtractKeys(signal_scores)), ', ') AS flagged_by_signal
FROM discovered_clusters FINAL
WHERE (model, run_at) IN (
        SELECT model, max(run_at) FROM discovered_clusters
        WHERE window_end > $__fromTime_ms AND window_start < $__toTime_ms
        GROUP BY model)
  AND """
    + any_selected("model", "model")
    + " AND "
    + app_models("model")
    + """
ORDER BY model, rank
LIMIT 50""",
    ("rank", "cluster_id", "model", "size", "recent_share", "reference_share", "growth",
     "distance", "examples", "flagged_by_signal"),
)  # fmt: skip
