"""The one table of tracks: a new detector adds its track here and touches no engine code."""

from __future__ import annotations

from alerts.tracks.base import TrackFactory
from alerts.tracks.degradation import DEGRADATION, DegradationTrack
from alerts.tracks.prompt_drift import PROMPT_DRIFT, PromptDriftTrack
from alerts.tracks.release_spike import RELEASE_SPIKE, ReleaseSpikeTrack

__all__ = ["DEGRADATION", "PROMPT_DRIFT", "RELEASE_SPIKE", "TRACKS"]

TRACKS: tuple[TrackFactory, ...] = (ReleaseSpikeTrack, DegradationTrack, PromptDriftTrack)
"""Every track the engine runs, in the order it feeds them each span."""
