"""Migration 18: the inclusion probability of each stored event and score row.

Declared beside :mod:`storage.schema`, which lists it as migration 18; like every migration it is
append-only. A worker that samples (``streams.sampling``) stores every event it receives but
embeds and scores only a sample: each event and each score row carries the probability with
which the event was drawn (1: every event, the default and the value of every row stored
before). Rates read from the score rows are then Horvitz–Thompson estimates
(:mod:`storage.sampled`).
"""

from __future__ import annotations

__all__ = ["SAMPLING_COLUMNS"]

SAMPLING_COLUMNS = (
    "ALTER TABLE events ADD COLUMN IF NOT EXISTS inclusion_probability Float32 DEFAULT 1",
    "ALTER TABLE signal_scores ADD COLUMN IF NOT EXISTS inclusion_probability Float32 DEFAULT 1",
)
