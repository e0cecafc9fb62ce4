"""Every SQL statement behind a panel, a template variable, an annotation or a guard alert.

One named query per statement, written once in Grafana's ClickHouse dialect (macros and
``${var:singlequote}``). Grafana receives the text as is; the static report and the tests run
it through :func:`dashboards.macros.render`. ``columns`` is the statement's result contract:
the tests check it against ClickHouse and the report uses it to read the rows.

Only fixed fragments are composed here (filters on the template variables); values never are.
Tables and views are documented in ``storage.schema``.
"""

# ruff: noqa: S608 - only fixed fragments (columns, the variable filters) are composed into
# SQL here; every value is bound as a parameter by dashboards.macros or by Grafana.
from __future__ import annotations

from dataclasses import dataclass

from storage import slice_people, small_cells_merged

__all__ = [
    "ANNOTATION_RELEASES",
    "AUDITED_PRECISION",
    "DISCOVERED_CLUSTERS",
    "DRIFT_CLUSTER_SHARES",
    "DRIFT_DETECTOR_DELAY",
    "DRIFT_STATISTIC",
    "EVENTS_PER_BUCKET",
    "EVENTS_PER_SECOND",
    "FLAGGED_EVENTS",
    "GENERATION_LATENCY",
    "GROUP_FAILURE_RATE",
    "INGEST_LAG",
    "INGEST_LAG_RECENT",
    "NEGATIVE_FEEDBACK_RATE",
    "OPEN_DETECTIONS",
    "OVERVIEW_FAILURE_RATE",
    "RELEASE_CHANGES",
    "SCORE_DISTRIBUTION",
    "SECONDS_SINCE_LAST_EVENT",
    "SIGNAL_CORRECTED_RATE",
    "SIGNAL_FAILURE_RATE",
    "SIGNAL_THRESHOLD",
    "VARIABLE_APP",
    "VARIABLE_MODEL",
    "VARIABLE_SIGNAL",
    "VARIABLE_SLICE_KEY",
    "VARIABLE_VERSION",
    "NamedQuery",
    "event_filters",
    "open_detections_for",
    "slice_failure_rate_series",
    "slice_failure_rates",
]


@dataclass(frozen=True)
class NamedQuery:
    """A SQL statement, its stable name, and the columns it returns, in order."""

    name: str
    sql: str
    columns: tuple[str, ...]


def _any(column: str, variable: str) -> str:
    """``column`` restricted to the selected values of ``variable``; no restriction on All."""
    return f"$__conditionalAll({column} IN (${{{variable}:singlequote}}), ${variable})"


def _app(model_column: str) -> str:
    """Restrict models to those an app served (tables without an ``app`` column)."""
    sub = "SELECT DISTINCT model FROM events_1m WHERE app IN (${app:singlequote})"
    return f"$__conditionalAll({model_column} IN ({sub}), $app)"


def _rate_filters(prefix: str = "") -> str:
    return " AND ".join(
        (
            _any(f"{prefix}model", "model"),
            _any(f"{prefix}model_version", "version"),
            _any(f"{prefix}signal", "signal"),
            _app(f"{prefix}model"),
        )
    )


_EVENT_FILTERS = " AND ".join(
    (_any("app", "app"), _any("model", "model"), _any("model_version", "version"))
)


def event_filters() -> str:
    """The app, model and version variables' filters, for tables with those three columns."""
    return _EVENT_FILTERS


# --- template variables ---------------------------------------------------------------------

VARIABLE_APP = NamedQuery(
    "variable_app",
    "SELECT DISTINCT app FROM events_1m WHERE $__timeFilter(minute) ORDER BY app",
    ("app",),
)
VARIABLE_MODEL = NamedQuery(
    "variable_model",
    "SELECT DISTINCT model FROM events_1m\n"
    f"WHERE $__timeFilter(minute) AND {_any('app', 'app')}\nORDER BY model",
    ("model",),
)
VARIABLE_VERSION = NamedQuery(
    "variable_version",
    "SELECT DISTINCT model_version FROM events_1m\n"
    f"WHERE $__timeFilter(minute) AND {_any('app', 'app')} AND {_any('model', 'model')}\n"
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
    f"WHERE $__timeFilter(released_at) AND {_any('model', 'model')} AND {_app('model')}\n"
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
    f"WHERE $__timeFilter(minute) AND {_rate_filters()}\n"
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
    f"    WHERE $__timeFilter(timestamp) AND {_EVENT_FILTERS}\n"
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
    + _rate_filters()
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
    f"  AND {_any('model', 'model')} AND {_any('model_version', 'version')}\n"
    f"  AND {_any('signal', 'signal')} AND {_app('model')}\n"
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
        f"WHERE $__timeFilter(minute) AND {_rate_filters()} AND {_any('slice_key', 'slice_key')}\n"
        f"GROUP BY {'time, ' if by_time else ''}signal, model, model_version, slice_key, "
        "slice_value"
    )
    if min_users <= 0:
        return counts
    people = slice_people("$__timeFilter(timestamp)", _any("slice_key", "slice_key"))
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
    f"  AND {_any('model', 'model')} AND {_any('model_version', 'version')} AND {_app('model')}\n"
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
    + _any("model", "model")
    + " AND "
    + _app("model")
    + """
ORDER BY model, rank
LIMIT 50""",
    ("rank", "cluster_id", "model", "size", "recent_share", "reference_share", "growth",
     "distance", "examples", "flagged_by_signal"),
)  # fmt: skip

# --- signal drill-down ----------------------------------------------------------------------

SIGNAL_FAILURE_RATE = NamedQuery(
    "signal_failure_rate",
    "SELECT $__timeInterval(minute) AS time,\n"
    "       concat(model, ' ', model_version) AS series,\n"
    "       uniqExactIfMerge(failures) / uniqExactMerge(events) AS failure_rate\n"
    "FROM failure_rates_1m\n"
    f"WHERE $__timeFilter(minute) AND {_rate_filters()}\n"
    "GROUP BY time, series\n"
    "ORDER BY time, series",
    ("time", "series", "failure_rate"),
)


def _rogan_gladen(q: str, se: str, sp: str) -> str:
    """The failure share behind flag share ``q`` for a signal of sensitivity ``se`` and
    specificity ``sp``, clipped to [0, 1] (NaN where ``se + sp <= 1``: a chance-level signal)."""
    return f"if({se} + {sp} > 1, greatest(0, least(1, ({q} + {sp} - 1) / ({se} + {sp} - 1))), nan)"


def _wilson(k: str, n: str, sign: str) -> str:
    """One end (``sign`` '-' or '+') of the 95 % Wilson interval of ``k`` in ``n``."""
    z2 = "3.8414588"
    return (f"(({k} / {n} + {z2} / (2 * {n})) {sign} 1.959964 * sqrt({k} / {n} * (1 - {k} / {n})"
            f" / {n} + {z2} / (4 * {n} * {n}))) / (1 + {z2} / {n})")  # fmt: skip


def _corners(q: str, pick: str) -> str:
    """``pick`` (least/greatest) of the corrected share over the four corners of the
    sensitivity × specificity intervals."""
    return (
        f"{pick}("
        + ", ".join(
            _rogan_gladen(q, se, sp) for se in ("se_lo", "se_hi") for sp in ("sp_lo", "sp_hi")
        )
        + ")"
    )


# The corrected failure rate (``telltale.trust``): the flag rate with the signal's audited
# errors taken out, from the newest estimate in ``signal_errors`` (the product version's own,
# else all audited versions'). The band is conservative: the corrected share at the Wilson ends
# of the flag rate, over the corners of the sensitivity and specificity intervals (the CLI's
# Monte Carlo interval is narrower; SQL cannot draw). Signals without an audit have no series.
SIGNAL_CORRECTED_RATE = NamedQuery(
    "signal_corrected_rate",
    f"""WITH errors AS (
    SELECT signal, model_version,
           argMax(sensitivity, estimated_at) AS se, argMax(specificity, estimated_at) AS sp,
           argMax(sensitivity_low, estimated_at) AS se_lo,
           argMax(sensitivity_high, estimated_at) AS se_hi,
           argMax(specificity_low, estimated_at) AS sp_lo,
           argMax(specificity_high, estimated_at) AS sp_hi
    FROM signal_errors
    WHERE {_any("signal", "signal")}
    GROUP BY signal, model_version
), counts AS (
    SELECT $__timeInterval(minute) AS time, signal, model, model_version,
           toFloat64(uniqExactIfMerge(failures)) AS k, toFloat64(uniqExactMerge(events)) AS n
    FROM failure_rates_1m
    WHERE $__timeFilter(minute) AND {_rate_filters()}
    GROUP BY time, signal, model, model_version
), joined AS (
    SELECT c.time AS time, c.signal AS signal, c.model AS model,
           c.model_version AS model_version, c.k AS k, c.n AS n,
           if(v.signal != '', v.se, a.se) AS se, if(v.signal != '', v.sp, a.sp) AS sp,
           if(v.signal != '', v.se_lo, a.se_lo) AS se_lo,
           if(v.signal != '', v.se_hi, a.se_hi) AS se_hi,
           if(v.signal != '', v.sp_lo, a.sp_lo) AS sp_lo,
           if(v.signal != '', v.sp_hi, a.sp_hi) AS sp_hi
    FROM counts AS c
    LEFT JOIN errors AS v ON v.signal = c.signal AND v.model_version = c.model_version
    LEFT JOIN errors AS a ON a.signal = c.signal AND a.model_version = ''
    WHERE v.signal != '' OR a.signal != ''
)
SELECT time, concat(signal, ' · ', model, ' ', model_version) AS series,
       k / n AS raw_rate,
       {_rogan_gladen("k / n", "se", "sp")} AS corrected_rate,
       {_corners(_wilson("k", "n", "-"), "least")} AS corrected_low,
       {_corners(_wilson("k", "n", "+"), "greatest")} AS corrected_high
FROM joined
ORDER BY time, series
SETTINGS join_use_nulls = 0""",
    ("time", "series", "raw_rate", "corrected_rate", "corrected_low", "corrected_high"),
)

# Signal health: each audit's estimate of the signal's precision (share of flagged events that
# really fail), per product version ('all versions' pooled), over time. A fall on a new
# version says the instrument changed, not (only) the product.
AUDITED_PRECISION = NamedQuery(
    "audited_precision",
    f"""SELECT estimated_at AS time,
       concat(signal, ' v', toString(signal_version), ' · ',
              if(model_version = '', 'all versions', model_version)) AS series,
       precision, precision_low, precision_high
FROM signal_errors
WHERE $__timeFilter(estimated_at) AND {_any("signal", "signal")}
  AND (model_version = '' OR {_any("model_version", "version")})
  AND NOT isNaN(precision)
ORDER BY time, series""",
    ("time", "series", "precision", "precision_low", "precision_high"),
)

SCORE_DISTRIBUTION = NamedQuery(
    "score_distribution",
    "SELECT toString(floor(score * 20) / 20) AS score_bucket,\n"
    "       uniqExactIf(event_id, flagged = 0) AS passed_events,\n"
    "       uniqExactIf(event_id, flagged = 1) AS flagged_events\n"
    "FROM signal_scores\n"
    f"WHERE $__timeFilter(timestamp) AND {_rate_filters()}\n"
    "GROUP BY score_bucket\n"
    "ORDER BY toFloat64(score_bucket)",
    ("score_bucket", "passed_events", "flagged_events"),
)

SIGNAL_THRESHOLD = NamedQuery(
    "signal_threshold",
    "SELECT name AS signal, max(version) AS latest_version,\n"
    "       argMax(JSONExtractFloat(fitted, 'threshold'), version) AS threshold,\n"
    "       argMax(kind, version) AS kind, argMax(embedder_id, version) AS embedder_id\n"
    "FROM signals\n"
    f"WHERE {_any('name', 'signal')}\n"
    "GROUP BY name\n"
    "HAVING argMax(deleted, version) = 0\n"
    "ORDER BY signal",
    ("signal", "latest_version", "threshold", "kind", "embedder_id"),
)

# Images are linked only when they are URLs; inline (base64) images would bloat the table.
FLAGGED_EVENTS = NamedQuery(
    "flagged_events",
    """WITH flagged AS (
    SELECT timestamp, signal, model, model_version, score, event_id
    FROM signal_scores
    WHERE flagged = 1 AND $__timeFilter(timestamp) AND """
    + _rate_filters()
    + """
    ORDER BY timestamp DESC
    LIMIT 1 BY event_id, signal
    LIMIT 50
)
SELECT f.timestamp AS time, f.signal AS signal, f.model AS model,
       f.model_version AS model_version, round(toFloat64(f.score), 4) AS score,
       substring(e.prompt_text, 1, 200) AS prompt, substring(e.output_text, 1, 200) AS output,
       multiIf(e.output_image = '', '',
               match(e.output_image, '^(https?|file)://'), e.output_image,
               '(inline image)') AS image,
       f.event_id AS event_id
FROM flagged AS f
LEFT JOIN (
    SELECT event_id, any(prompt_text) AS prompt_text, any(output_text) AS output_text,
           any(output_image) AS output_image
    FROM events
    WHERE event_id IN (SELECT event_id FROM flagged)
    GROUP BY event_id
) AS e ON e.event_id = f.event_id
ORDER BY time DESC, signal""",
    (
        "time",
        "signal",
        "model",
        "model_version",
        "score",
        "prompt",
        "output",
        "image",
        "event_id",
    ),
)

# --- prompt drift ---------------------------------------------------------------------------

DRIFT_STATISTIC = NamedQuery(
    "drift_statistic",
    "SELECT window_end AS time, model, statistic, threshold\n"
    "FROM drift_windows FINAL\n"
    f"WHERE $__timeFilter(window_end) AND {_any('model', 'model')} AND {_app('model')}\n"
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
    + f"{_any('model', 'model')} AND {_app('model')}"
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
    f"WHERE $__timeFilter(minute) AND {_EVENT_FILTERS}\n"
    "GROUP BY time, model\n"
    "ORDER BY time, model",
    ("time", "model", "events_per_s"),
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
    f"    WHERE $__timeFilter(minute) AND {_EVENT_FILTERS}\n"
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
    + _EVENT_FILTERS
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
    + _EVENT_FILTERS
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
    f"WHERE $__timeFilter(window_end) AND {_any('model', 'model')}\n"
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
