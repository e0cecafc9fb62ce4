"""The ClickHouse schema, as an ordered list of versioned migrations.

How a re-delivered event is counted once
----------------------------------------
Kafka delivers at least once, and replays send old events again. Three layers keep counts exact:

1. The pipeline asks ``events`` which ids of a batch are already stored and skips them, so a
   replay neither re-embeds nor re-inserts (the common case, and the cheap one).
2. The base tables are ``ReplacingMergeTree`` keyed on the event (plus signal and version for
   scores). A crash between two inserts of one batch can still leave a physical duplicate until
   a merge removes it; reads that need exact rows use ``FINAL``.
3. The per-minute failure-rate view aggregates ``uniqExact(event_id)`` states rather than row
   counts, so a duplicate row that has not been merged away yet is still counted once. Insert
   deduplication by block hash was rejected: a redelivered event arrives in a different batch,
   so its block hash differs and it would not be deduplicated.

Migrations are append-only: never edit a released one, add a new one.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.owed import OWED_NOTIFICATIONS
from storage.schema_sampling import SAMPLING_COLUMNS
from storage.schema_usage import USAGE_1M, USAGE_1M_MV, USAGE_COLUMNS

__all__ = ["MIGRATIONS", "Migration"]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


_EVENTS = """
CREATE TABLE IF NOT EXISTS events (
    event_id      String,
    timestamp     DateTime64(3, 'UTC'),
    model         LowCardinality(String),
    model_version LowCardinality(String),
    app           LowCardinality(String),
    release       LowCardinality(String),
    prompt_text   String,
    output_text   String,
    output_image  String,
    latency_ms    Nullable(Float64),
    feedback      Nullable(Int8),
    attributes    Map(String, String),
    embedder_id   LowCardinality(String),
    ingested_at   DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')
) ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (event_id)
"""

_EMBEDDINGS = """
CREATE TABLE IF NOT EXISTS embeddings (
    event_id      String,
    field         LowCardinality(String),
    embedder_id   LowCardinality(String),
    timestamp     DateTime64(3, 'UTC'),
    model         LowCardinality(String),
    model_version LowCardinality(String),
    vector        Array(Float32),
    ingested_at   DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')
) ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (embedder_id, field, event_id)
"""

_SCORES = """
CREATE TABLE IF NOT EXISTS signal_scores (
    event_id       String,
    signal         LowCardinality(String),
    signal_version UInt32,
    timestamp      DateTime64(3, 'UTC'),
    model          LowCardinality(String),
    model_version  LowCardinality(String),
    score          Float32,
    flagged        UInt8,
    scored_at      DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')
) ENGINE = ReplacingMergeTree(scored_at)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (signal, signal_version, event_id)
"""

_RATES = """
CREATE TABLE IF NOT EXISTS failure_rates_1m (
    minute         DateTime('UTC'),
    model          LowCardinality(String),
    model_version  LowCardinality(String),
    signal         LowCardinality(String),
    signal_version UInt32,
    events         AggregateFunction(uniqExact, String),
    failures       AggregateFunction(uniqExactIf, String, UInt8)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (signal, model, model_version, minute, signal_version)
"""

_RATES_MV = """
CREATE MATERIALIZED VIEW IF NOT EXISTS failure_rates_1m_mv TO failure_rates_1m AS
SELECT
    toStartOfMinute(timestamp) AS minute,
    model,
    model_version,
    signal,
    signal_version,
    uniqExactState(event_id) AS events,
    uniqExactIfState(event_id, flagged) AS failures
FROM signal_scores
GROUP BY minute, model, model_version, signal, signal_version
"""

_RELEASES = """
CREATE TABLE IF NOT EXISTS releases (
    model         LowCardinality(String),
    model_version String,
    released_at   DateTime64(3, 'UTC'),
    source        LowCardinality(String),
    note          String,
    recorded_at   DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')
) ENGINE = ReplacingMergeTree(recorded_at)
ORDER BY (model, model_version)
"""

_SIGNALS = """
CREATE TABLE IF NOT EXISTS signals (
    name        String,
    version     UInt32,
    kind        LowCardinality(String),
    embedder_id LowCardinality(String),
    definition  String,
    fitted      String,
    author      String,
    deleted     UInt8 DEFAULT 0,
    created_at  DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')
) ENGINE = ReplacingMergeTree(created_at)
ORDER BY (name, version)
"""

_DETECTIONS = """
CREATE TABLE IF NOT EXISTS detections (
    detection_id  String,
    detector      LowCardinality(String),
    key           String,
    model         LowCardinality(String),
    model_version String,
    signal        LowCardinality(String),
    state         LowCardinality(String),
    opened_at     DateTime64(3, 'UTC'),
    resolved_at   Nullable(DateTime64(3, 'UTC')),
    statistic     Float64,
    threshold     Float64,
    p_value       Nullable(Float64),
    e_value       Nullable(Float64),
    effect        Nullable(Float64),
    effect_low    Nullable(Float64),
    effect_high   Nullable(Float64),
    details       String,
    notified      LowCardinality(String),
    updated_at    DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')
) ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (detector, key, detection_id)
"""

_DRIFT_WINDOWS = """
CREATE TABLE IF NOT EXISTS drift_windows (
    model          LowCardinality(String),
    window_start   DateTime64(3, 'UTC'),
    window_end     DateTime64(3, 'UTC'),
    statistic      Float64,
    threshold      Float64,
    p_value        Float64,
    reference_size UInt32,
    recent_size    UInt32,
    clusters       String,
    computed_at    DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')
) ENGINE = ReplacingMergeTree(computed_at)
ORDER BY (model, window_end)
"""

_EVENTS_1M = """
CREATE TABLE IF NOT EXISTS events_1m (
    minute        DateTime('UTC'),
    app           LowCardinality(String),
    model         LowCardinality(String),
    model_version LowCardinality(String),
    events        AggregateFunction(uniqExact, String),
    latency_ms    AggregateFunction(quantiles(0.5, 0.95, 0.99), Float64),
    feedback_neg  AggregateFunction(uniqExactIf, String, UInt8)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (model, model_version, app, minute)
"""

_EVENTS_1M_MV = """
CREATE MATERIALIZED VIEW IF NOT EXISTS events_1m_mv TO events_1m AS
SELECT
    toStartOfMinute(timestamp) AS minute,
    app,
    model,
    model_version,
    uniqExactState(event_id) AS events,
    quantilesState(0.5, 0.95, 0.99)(ifNull(latency_ms, nan)) AS latency_ms,
    uniqExactIfState(event_id, ifNull(feedback, 0) < 0) AS feedback_neg
FROM events
GROUP BY minute, app, model, model_version
"""

_DEAD_LETTERS = """
CREATE TABLE IF NOT EXISTS dead_letters (
    topic         LowCardinality(String),
    partition     UInt32,
    offset        UInt64,
    reason        String,
    payload_bytes UInt64,
    failed_at     DateTime64(3, 'UTC'),
    recorded_at   DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')
) ENGINE = ReplacingMergeTree(recorded_at)
PARTITION BY toYYYYMM(failed_at)
ORDER BY (topic, partition, offset)
"""

_CONTRACT_UNITS = (
    "ALTER TABLE events ADD COLUMN IF NOT EXISTS user_id String DEFAULT ''",
    "ALTER TABLE events ADD COLUMN IF NOT EXISTS session_id String DEFAULT ''",
)
_SIGNAL_VERDICT = (  # migration 4 as well
    "ALTER TABLE signals ADD COLUMN IF NOT EXISTS degenerate UInt8 DEFAULT 0",
    "ALTER TABLE signals ADD COLUMN IF NOT EXISTS degenerate_reason String DEFAULT ''",
)

# Slices (migration 13). A score row carries the event's slice values (``TELLTALE_SLICE_KEYS``
# and ``app``, capped per key to the top values plus ``other`` by the pipeline), so one view
# fans each score out into one row per slice key: per-minute rates by slice need no join of
# ``signal_scores`` with ``events`` (a materialized view sees only the inserted block of its
# source table, so a join would miss events written in another block). Pairs of keys are read
# from the score rows themselves when a detection is localised (``alerts.tracks.localize``).
_SCORE_SLICES = ("ALTER TABLE signal_scores ADD COLUMN IF NOT EXISTS slices Map(String, String)",)

_SLICE_RATES = """
CREATE TABLE IF NOT EXISTS failure_rates_by_slice_1m (
    minute         DateTime('UTC'),
    model          LowCardinality(String),
    model_version  LowCardinality(String),
    signal         LowCardinality(String),
    slice_key      LowCardinality(String),
    slice_value    String,
    events         AggregateFunction(uniqExact, String),
    failures       AggregateFunction(uniqExactIf, String, UInt8)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (signal, slice_key, model, model_version, minute, slice_value)
"""

_SLICE_RATES_MV = """
CREATE MATERIALIZED VIEW IF NOT EXISTS failure_rates_by_slice_1m_mv TO failure_rates_by_slice_1m AS
SELECT
    toStartOfMinute(timestamp) AS minute,
    model,
    model_version,
    signal,
    slice_key,
    slice_value,
    uniqExactState(event_id) AS events,
    uniqExactIfState(event_id, flagged) AS failures
FROM signal_scores
ARRAY JOIN mapKeys(slices) AS slice_key, mapValues(slices) AS slice_value
GROUP BY minute, model, model_version, signal, slice_key, slice_value
"""

# Signal groups (migration 13): the definitions the pipeline applies, so dashboards and the
# notifier know which ``signal`` values are groups and at which severity they page.
_SIGNAL_GROUPS = """
CREATE TABLE IF NOT EXISTS signal_groups (
    name        String,
    members     Array(String),
    severity    LowCardinality(String),
    description String,
    updated_at  DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')
) ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (name)
"""

# Failure-mode discovery (migration 13): the clusters of the latest ``telltale discover`` run per
# model, for the dashboard panel, the report and ``signals add --from-cluster``.
_DISCOVERED_CLUSTERS = """
CREATE TABLE IF NOT EXISTS discovered_clusters (
    cluster_id      String,
    run_at          DateTime64(3, 'UTC'),
    model           LowCardinality(String),
    field           LowCardinality(String),
    embedder_id     LowCardinality(String),
    rank            UInt16,
    size            UInt32,
    recent_share    Float64,
    reference_share Float64,
    growth          Float64,
    distance        Float64,
    score           Float64,
    examples        Array(String),
    example_texts   Array(String),
    positives       Array(String),
    negatives       Array(String),
    signal_scores   String,
    window_start    DateTime64(3, 'UTC'),
    window_end      DateTime64(3, 'UTC'),
    recorded_at     DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')
) ENGINE = ReplacingMergeTree(recorded_at)
ORDER BY (model, cluster_id)
"""

# Long texts: the window vectors beside the document vector (see signals.windows), empty for a
# text of one window.
_WINDOWS = (
    "ALTER TABLE embeddings ADD COLUMN IF NOT EXISTS windows Array(Array(Float32)) DEFAULT []",
)

# The shared embedding cache: content hash (embedder id + field + content) -> window vectors.
# Workers look here after their in-process LRU and before the model.
_EMBEDDING_CACHE = """
CREATE TABLE IF NOT EXISTS embedding_cache (
    key         String,
    embedder_id LowCardinality(String),
    field       LowCardinality(String),
    windows     Array(Array(Float32)),
    created_at  DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')
) ENGINE = ReplacingMergeTree(created_at)
ORDER BY key
"""

# One row per pipeline batch and field: how many texts needed a vector and where they came from.
_EMBEDDING_CACHE_STATS = """
CREATE TABLE IF NOT EXISTS embedding_cache_stats (
    at            DateTime64(3, 'UTC'),
    field         LowCardinality(String),
    embedder_id   LowCardinality(String),
    lookups       UInt32,
    memory_hits   UInt32,
    shared_hits   UInt32,
    batch_repeats UInt32,
    model_texts   UInt32
) ENGINE = MergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (field, at)
TTL toDateTime(at) + INTERVAL 90 DAY
"""

# A cached vector expires 30 days after it was written: the table holds about a month of
# distinct contents, and the vectors of a replaced embedder leave with it. A content still in use
# is embedded once more after expiry and cached again.
_EMBEDDING_CACHE_TTL = """
ALTER TABLE embedding_cache MODIFY TTL toDateTime(created_at) + INTERVAL 30 DAY
"""


_FEEDBACK = """
CREATE TABLE IF NOT EXISTS feedback (
    feedback_id  String,
    event_id     String,
    value        Int8,
    rating       Nullable(Float64),
    kind         LowCardinality(String),
    user_id      String,
    timestamp    DateTime64(3, 'UTC'),
    comment      String,
    recorded_at  DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')
) ENGINE = ReplacingMergeTree(recorded_at)
ORDER BY (event_id, feedback_id)
"""
"""Delayed user feedback, keyed by event then feedback id: a re-sent record replaces itself,
and feedback that arrives before its event waits here until ``storage.feedback`` joins it."""

_AUDIT_SAMPLES = """
CREATE TABLE IF NOT EXISTS audit_samples (
    audit_id       String,
    signal         LowCardinality(String),
    signal_version UInt32,
    event_id       String,
    model_version  LowCardinality(String),
    band           LowCardinality(String),
    stratum_size   UInt64,
    stratum_drawn  UInt32,
    score          Float32,
    flagged        UInt8,
    drawn_at       DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')
) ENGINE = ReplacingMergeTree(drawn_at)
ORDER BY (signal, signal_version, audit_id, event_id)
"""

_AUDIT_LABELS = """
CREATE TABLE IF NOT EXISTS audit_labels (
    signal         LowCardinality(String),
    signal_version UInt32,
    event_id       String,
    label          UInt8,
    labeller       String,
    source         LowCardinality(String),
    labelled_at    DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')
) ENGINE = ReplacingMergeTree(labelled_at)
ORDER BY (signal, signal_version, event_id, labeller)
"""

_ERASURES = """
CREATE TABLE IF NOT EXISTS erasures (
    request       String,
    subject_kind  LowCardinality(String),
    requested_by  String,
    erased_at     DateTime64(3, 'UTC'),
    tables        Array(String),
    rows          Array(UInt64)
) ENGINE = MergeTree
ORDER BY erased_at
"""
"""One row per erasure (``telltale forget``): rows deleted per table and the request's
reference, never the id that was erased."""

_SIGNAL_ERRORS = """
CREATE TABLE IF NOT EXISTS signal_errors (
    signal           LowCardinality(String),
    signal_version   UInt32,
    model_version    LowCardinality(String),
    labelled         UInt32,
    sensitivity      Float64,
    sensitivity_low  Float64,
    sensitivity_high Float64,
    specificity      Float64,
    specificity_low  Float64,
    specificity_high Float64,
    precision        Float64,
    precision_low    Float64,
    precision_high   Float64,
    estimated_at     DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')
) ENGINE = MergeTree
ORDER BY (signal, model_version, estimated_at)
"""
"""Each signal's measured errors, one row per estimate (``model_version`` '' = all audited
versions), kept as history: the dashboards chart corrected rates from the newest row and the
audited precision over time from all of them."""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "events, embeddings, scores, per-minute failure rates, releases, signals",
        (_EVENTS, _EMBEDDINGS, _SCORES, _RATES, _RATES_MV, _RELEASES, _SIGNALS),
    ),
    Migration(
        2,
        "detections, drift windows, per-minute event volume and latency",
        (_DETECTIONS, _DRIFT_WINDOWS, _EVENTS_1M, _EVENTS_1M_MV),
    ),
    Migration(
        3,
        "dead letters, so the dead-letter rate can be charted and alerted on",
        (_DEAD_LETTERS,),
    ),
    Migration(
        4,
        "user and session of an event (independent units); degenerate mark on signals",
        (*_CONTRACT_UNITS, *_SIGNAL_VERDICT),
    ),
    Migration(
        11,
        "window vectors of long texts; the shared embedding cache and its hit counts",
        (*_WINDOWS, _EMBEDDING_CACHE, _EMBEDDING_CACHE_STATS),
    ),
    Migration(
        12,
        "delayed user feedback (joined into the feedback.negative series when both are known)",
        (_FEEDBACK,),
    ),
    Migration(
        13,
        "slices: slice values on scores, failure rates by slice; signal groups; discovered "
        "clusters",
        (*_SCORE_SLICES, _SLICE_RATES, _SLICE_RATES_MV, _SIGNAL_GROUPS, _DISCOVERED_CLUSTERS),
    ),
    Migration(
        14,
        "embedding cache entries expire 30 days after they were written",
        (_EMBEDDING_CACHE_TTL,),
    ),
    Migration(
        15,
        "audits: drawn samples with their strata, audit labels, each signal's measured errors",
        (_AUDIT_SAMPLES, _AUDIT_LABELS, _SIGNAL_ERRORS),
    ),
    Migration(16, "erasure log: what telltale forget deleted, per table", (_ERASURES,)),
    Migration(
        17,
        "tokens of each event; tokens per minute per app, model and version",
        (*USAGE_COLUMNS, USAGE_1M, USAGE_1M_MV),
    ),
    Migration(18, "inclusion probability of sampled events and their scores", SAMPLING_COLUMNS),
    Migration(19, "messages a notifier still owes, kept across restarts", (OWED_NOTIFICATIONS,)),
)
