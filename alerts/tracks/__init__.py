"""One small track per detector, all behind :class:`alerts.base.Track`.

A track owns the detector instances of one kind (one per monitored series), decides what each is
fed from a :class:`~alerts.tracks.span.Span` of stored minutes, and records alarms and
resolutions in the span's :class:`~alerts.state.DetectionBook`. The engine is a loop over tracks.
"""

from __future__ import annotations

from alerts.tracks.cusum import DEGRADATION, CusumTrack
from alerts.tracks.drift import DRIFT, DriftTrack
from alerts.tracks.span import EngineReport, ReleaseLink, Span, floor_minute, link_releases
from alerts.tracks.spike import SPIKE, ReleaseSpikeTrack

__all__ = [
    "DEGRADATION",
    "DRIFT",
    "SPIKE",
    "CusumTrack",
    "DriftTrack",
    "EngineReport",
    "ReleaseLink",
    "ReleaseSpikeTrack",
    "Span",
    "floor_minute",
    "link_releases",
]
