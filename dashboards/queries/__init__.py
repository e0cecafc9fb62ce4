"""Every SQL statement behind a panel, a template variable, an annotation or a guard alert.

One named query per statement, written once in Grafana's ClickHouse dialect (macros and
``${var:singlequote}``). Grafana receives the text as is; the static report and the tests run
it through :func:`dashboards.macros.render`. ``columns`` is the statement's result contract:
the tests check it against ClickHouse and the report uses it to read the rows. One module per
dashboard area: ``overview``, ``signal`` (drill-down), ``health`` (drift and pipeline),
``usage`` (tokens and cost); ``base`` holds the record and the variable filters.

Only fixed fragments are composed here (filters on the template variables); values never are.
Tables and views are documented in ``storage.schema``.
"""

from __future__ import annotations

from dashboards.queries.base import (
    NamedQuery,
    any_selected,
    app_models,
    event_filters,
    rate_filters,
)
from dashboards.queries.health import (
    DEAD_LETTER_SHARE_RECENT,
    DEAD_LETTERS,
    DRIFT_CLUSTER_SHARES,
    DRIFT_DETECTOR_DELAY,
    DRIFT_STATISTIC,
    EMBEDDING_CACHE_HIT_RATE,
    EVENTS_PER_BUCKET,
    EVENTS_PER_SECOND,
    GENERATION_LATENCY,
    INGEST_LAG,
    INGEST_LAG_RECENT,
    REPORT_BUCKET_WIDTHS_S,
    SECONDS_SINCE_LAST_EVENT,
    SHARE_SCORED,
)
from dashboards.queries.overview import (
    ANNOTATION_RELEASES,
    DISCOVERED_CLUSTERS,
    GROUP_FAILURE_RATE,
    NEGATIVE_FEEDBACK_RATE,
    OPEN_DETECTIONS,
    OVERVIEW_FAILURE_RATE,
    RELEASE_CHANGES,
    VARIABLE_APP,
    VARIABLE_MODEL,
    VARIABLE_SIGNAL,
    VARIABLE_SLICE_KEY,
    VARIABLE_VERSION,
    open_detections_for,
    slice_failure_rate_series,
    slice_failure_rates,
)
from dashboards.queries.signal import (
    AUDITED_PRECISION,
    FLAGGED_EVENTS,
    SCORE_DISTRIBUTION,
    SIGNAL_CORRECTED_RATE,
    SIGNAL_FAILURE_RATE,
    SIGNAL_THRESHOLD,
)
from dashboards.queries.usage import (
    TOKENS_PER_EVENT,
    cost_per_minute,
    usage_by_version,
)

__all__ = [
    "ANNOTATION_RELEASES",
    "AUDITED_PRECISION",
    "DEAD_LETTERS",
    "DEAD_LETTER_SHARE_RECENT",
    "DISCOVERED_CLUSTERS",
    "DRIFT_CLUSTER_SHARES",
    "DRIFT_DETECTOR_DELAY",
    "DRIFT_STATISTIC",
    "EMBEDDING_CACHE_HIT_RATE",
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
    "REPORT_BUCKET_WIDTHS_S",
    "SCORE_DISTRIBUTION",
    "SECONDS_SINCE_LAST_EVENT",
    "SHARE_SCORED",
    "SIGNAL_CORRECTED_RATE",
    "SIGNAL_FAILURE_RATE",
    "SIGNAL_THRESHOLD",
    "TOKENS_PER_EVENT",
    "VARIABLE_APP",
    "VARIABLE_MODEL",
    "VARIABLE_SIGNAL",
    "VARIABLE_SLICE_KEY",
    "VARIABLE_VERSION",
    "NamedQuery",
    "any_selected",
    "app_models",
    "cost_per_minute",
    "event_filters",
    "open_detections_for",
    "rate_filters",
    "slice_failure_rate_series",
    "slice_failure_rates",
    "usage_by_version",
]
