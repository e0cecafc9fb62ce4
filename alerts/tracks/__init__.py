"""The engine, its tracks (one per detector, registered in :data:`TRACKS`), spans and state.

A track owns the detectors of one kind, decides what each is fed from a :class:`Span` of stored
minutes, and records alarms and resolutions in the span's :class:`DetectionBook`; the
:class:`DetectionEngine` is a loop over the registered tracks.
"""

from __future__ import annotations

from alerts.tracks.base import Track, TrackFactory, TrackSetup
from alerts.tracks.book import AlarmOutcome, DetectionBook, Episode, detection_id
from alerts.tracks.degradation import DegradationTrack
from alerts.tracks.engine import DetectionEngine
from alerts.tracks.instrument import InstrumentCheck, InstrumentDetails
from alerts.tracks.localize import (
    Localization,
    ReleaseLocalizer,
    SliceExcess,
    localize,
    localize_counts,
    slice_label,
)
from alerts.tracks.prompt_drift import PromptDriftTrack
from alerts.tracks.registry import DEGRADATION, PROMPT_DRIFT, RELEASE_SPIKE, TRACKS
from alerts.tracks.release_spike import ReleaseSpikeTrack
from alerts.tracks.report import EngineReport
from alerts.tracks.span import MINUTE, ReleaseLink, Span, floor_minute, link_releases, series_key
from alerts.tracks.store import ClickHouseStore, DetectionStore, MemoryStore

__all__ = [
    "DEGRADATION",
    "MINUTE",
    "PROMPT_DRIFT",
    "RELEASE_SPIKE",
    "TRACKS",
    "AlarmOutcome",
    "ClickHouseStore",
    "DegradationTrack",
    "DetectionBook",
    "DetectionEngine",
    "DetectionStore",
    "EngineReport",
    "Episode",
    "InstrumentCheck",
    "InstrumentDetails",
    "Localization",
    "MemoryStore",
    "PromptDriftTrack",
    "ReleaseLink",
    "ReleaseLocalizer",
    "ReleaseSpikeTrack",
    "SliceExcess",
    "Span",
    "Track",
    "TrackFactory",
    "TrackSetup",
    "detection_id",
    "floor_minute",
    "link_releases",
    "localize",
    "localize_counts",
    "series_key",
    "slice_label",
]
