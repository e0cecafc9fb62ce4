"""ClickHouse schema, migrations, client, batched idempotent writer and read queries.

Knows nothing of torch: vectors arrive as sequences of floats.
"""

from __future__ import annotations

from storage.audits import (
    AuditLabel,
    AuditSample,
    ErrorEstimateRow,
    StratumLabels,
    audit_last_labelled,
    audit_population,
    audit_stratum_labels,
    draw_audit,
    drawn_versions,
    judge_agreement,
    record_error_estimates,
    store_audit_labels,
)
from storage.client import connect, redact_dsn
from storage.dead_letters import DeadLetterRow, record_dead_letters
from storage.detections import (
    DetectionRow,
    DriftWindowRow,
    detection_watermarks,
    drift_windows_after,
    insert_detections,
    insert_drift_windows,
    json_safe,
    last_drift_window_ends,
    list_detections,
    pending_detections,
)
from storage.discovery import ClusterRow, cluster_signal_scores, load_cluster, save_clusters
from storage.effective import effective_events
from storage.embedding_cache import ClickHouseVectorCache
from storage.embeddings import (
    StoredEmbedding,
    count_embeddings,
    event_contents,
    iter_embeddings,
    sample_embeddings,
    windows_by_event,
)
from storage.erasure import ERASED_TABLES, Erasure, SubjectEvents, erase_subject, subject_events
from storage.errors import (
    BackPressure,
    MigrationError,
    RowsRejected,
    StorageError,
    StorageMisconfigured,
    StorageOverloaded,
    StorageUnavailable,
)
from storage.feedback import (
    FeedbackRow,
    feedback_summary,
    lowest_feedback,
    negatively_rated,
    record_feedback,
)
from storage.groups import GroupRow, backfill_group, load_group_rows, save_group_rows
from storage.migrate import migrate
from storage.prompts import UnitSample, prompt_unit_sample
from storage.queries import (
    RateRow,
    TableCounts,
    earliest_timestamp,
    failure_rates,
    score_quantiles,
    table_counts,
)
from storage.registry import (
    SignalRecord,
    delete_signal,
    insert_signal,
    latest_signals,
    next_version,
    save_signal,
    signal_version,
)
from storage.releases import Release, add_release, list_releases, unreleased_versions
from storage.retention import (
    MAX_RETENTION_DAYS,
    RETENTION_COLUMNS,
    apply_retention,
    current_retention,
)
from storage.rows import CacheStatsRow, EmbeddingRow, EventRow, ScoreRow, WriteBatch
from storage.serialized import SerializedClient
from storage.series import (
    IngestLag,
    MinuteCounts,
    SeriesKey,
    data_bounds,
    degenerate_signals,
    ingest_lag,
    ingest_watermark,
    late_rows,
    prompt_models,
    prompt_sample,
    unit_counts,
)
from storage.slices import event_slice_sources, slice_counts, top_slice_values
from storage.stored_texts import StoredText, count_texts, iter_texts
from storage.writer import ClickHouseWriter

__all__ = [
    "ERASED_TABLES",
    "MAX_RETENTION_DAYS",
    "RETENTION_COLUMNS",
    "AuditLabel",
    "AuditSample",
    "BackPressure",
    "CacheStatsRow",
    "ClickHouseVectorCache",
    "ClickHouseWriter",
    "ClusterRow",
    "DeadLetterRow",
    "DetectionRow",
    "DriftWindowRow",
    "EmbeddingRow",
    "Erasure",
    "ErrorEstimateRow",
    "EventRow",
    "FeedbackRow",
    "GroupRow",
    "IngestLag",
    "MigrationError",
    "MinuteCounts",
    "RateRow",
    "Release",
    "RowsRejected",
    "ScoreRow",
    "SerializedClient",
    "SeriesKey",
    "SignalRecord",
    "StorageError",
    "StorageMisconfigured",
    "StorageOverloaded",
    "StorageUnavailable",
    "StoredEmbedding",
    "StoredText",
    "StratumLabels",
    "SubjectEvents",
    "TableCounts",
    "UnitSample",
    "WriteBatch",
    "add_release",
    "apply_retention",
    "audit_last_labelled",
    "audit_population",
    "audit_stratum_labels",
    "backfill_group",
    "cluster_signal_scores",
    "connect",
    "count_embeddings",
    "count_texts",
    "current_retention",
    "data_bounds",
    "degenerate_signals",
    "delete_signal",
    "detection_watermarks",
    "draw_audit",
    "drawn_versions",
    "drift_windows_after",
    "earliest_timestamp",
    "effective_events",
    "erase_subject",
    "event_contents",
    "event_slice_sources",
    "failure_rates",
    "feedback_summary",
    "ingest_lag",
    "ingest_watermark",
    "insert_detections",
    "insert_drift_windows",
    "insert_signal",
    "iter_embeddings",
    "iter_texts",
    "json_safe",
    "judge_agreement",
    "last_drift_window_ends",
    "late_rows",
    "latest_signals",
    "list_detections",
    "list_releases",
    "load_cluster",
    "load_group_rows",
    "lowest_feedback",
    "migrate",
    "negatively_rated",
    "next_version",
    "pending_detections",
    "prompt_models",
    "prompt_sample",
    "prompt_unit_sample",
    "record_dead_letters",
    "record_error_estimates",
    "record_feedback",
    "redact_dsn",
    "sample_embeddings",
    "save_clusters",
    "save_group_rows",
    "save_signal",
    "score_quantiles",
    "signal_version",
    "slice_counts",
    "store_audit_labels",
    "subject_events",
    "table_counts",
    "top_slice_values",
    "unit_counts",
    "unreleased_versions",
    "windows_by_event",
]
