"""What the release-spike track keeps per release while its test runs (not stored: a restarted
monitor rebuilds it by replaying from the release, :mod:`alerts.tracks.release_spike`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from alerts.detectors.buckets import AdaptiveBuckets
from alerts.detectors.dispersion import Dispersion
from alerts.detectors.release_spike import ReleaseSpikeDetector
from alerts.tracks.release_watches import Watch
from alerts.tracks.span import ReleaseLink
from storage import MinuteCounts

__all__ = ["ReleaseTest", "SignalTest", "release_key"]


def release_key(model: str, version: str) -> str:
    return f"model={model}/{version}"


@dataclass
class SignalTest:
    detector: ReleaseSpikeDetector
    buckets: AdaptiveBuckets
    dispersion: Dispersion
    fired_at: datetime | None = None


@dataclass
class ReleaseTest:
    link: ReleaseLink
    next_minute: datetime
    test_end: datetime  # tests are fed before this minute only
    last_traffic: datetime
    family: int
    history: dict[str, MinuteCounts]
    previous_traffic: datetime | None = None
    tests: dict[str, SignalTest] = field(default_factory=dict)
    baselines: dict[str, int] = field(default_factory=dict)  # kind -> minutes
    hour_lags: dict[datetime, int | None] = field(default_factory=dict)
    watches: tuple[Watch, ...] = ()  # latency and usage, thresholds frozen at the release

    @property
    def key(self) -> str:
        return release_key(self.link.model, self.link.version)
