"""Migrations 15 and 16: audits (drawn samples, labels, each signal's measured errors) and the
erasure log.

Declared beside :mod:`storage.schema`, which lists them; like every migration they are
append-only. ``storage.audits`` and ``storage.erasure`` read and write them.
"""

from __future__ import annotations

__all__ = ["AUDIT_LABELS", "AUDIT_SAMPLES", "ERASURES", "SIGNAL_ERRORS"]

AUDIT_SAMPLES = """
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

AUDIT_LABELS = """
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

ERASURES = """
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

SIGNAL_ERRORS = """
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
