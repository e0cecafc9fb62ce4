"""The signal drill-down's panels: rates, corrected rates, audited precision, scores and
flagged events."""

# ruff: noqa: S608 - only fixed fragments (columns, the variable filters) are composed into
# SQL here; every value is bound as a parameter by dashboards.macros or by Grafana.
from __future__ import annotations

from dashboards.queries.base import (
    NamedQuery,
    any_selected,
    rate_filters,
)

__all__ = [
    "AUDITED_PRECISION",
    "FLAGGED_EVENTS",
    "SCORE_DISTRIBUTION",
    "SIGNAL_CORRECTED_RATE",
    "SIGNAL_FAILURE_RATE",
    "SIGNAL_THRESHOLD",
]


# --- signal drill-down ----------------------------------------------------------------------

SIGNAL_FAILURE_RATE = NamedQuery(
    "signal_failure_rate",
    "SELECT $__timeInterval(minute) AS time,\n"
    "       concat(model, ' ', model_version) AS series,\n"
    "       uniqExactIfMerge(failures) / uniqExactMerge(events) AS failure_rate\n"
    "FROM failure_rates_1m\n"
    f"WHERE $__timeFilter(minute) AND {rate_filters()}\n"
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
    WHERE {any_selected("signal", "signal")}
    GROUP BY signal, model_version
), counts AS (
    SELECT $__timeInterval(minute) AS time, signal, model, model_version,
           toFloat64(uniqExactIfMerge(failures)) AS k, toFloat64(uniqExactMerge(events)) AS n
    FROM failure_rates_1m
    WHERE $__timeFilter(minute) AND {rate_filters()}
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
WHERE $__timeFilter(estimated_at) AND {any_selected("signal", "signal")}
  AND (model_version = '' OR {any_selected("model_version", "version")})
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
    f"WHERE $__timeFilter(timestamp) AND {rate_filters()}\n"
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
    f"WHERE {any_selected('name', 'signal')}\n"
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
    + rate_filters()
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
