"""Statistical detectors for the monitor: release spikes, slow degradation and prompt drift.

Everything here is pure and storage-free: detectors take counts or embeddings, return frozen state
snapshots and :class:`Detection` records; the monitor loop that reads ClickHouse and writes the
``detections`` table sits on top.

* :class:`ReleaseSpikeDetector` — anytime-valid mixture SPRT, new version vs concurrent baseline.
* :class:`BernoulliCusum` — slow degradation within a version, threshold calibrated to an ARL.
* :class:`PromptDriftDetector` — MMD permutation tests on prompt embeddings, with
  :func:`explain_drift` to say which kinds of prompts grew.
* :class:`FixedHorizonZTest` — the naive repeated z-test, kept as a benchmark baseline only.
"""

from __future__ import annotations

from alerts.base import Detection, Detector
from alerts.degradation import (
    BernoulliCusum,
    CusumState,
    calibrate_cusum_threshold,
    crossover_rate,
)
from alerts.drift import (
    ClusterShift,
    DriftState,
    MMDTestResult,
    PromptDriftDetector,
    explain_drift,
    median_heuristic_bandwidth,
    mmd2_unbiased,
    mmd_permutation_test,
)
from alerts.fixed_horizon import FixedHorizonZTest, ZTestState, two_proportion_z_test
from alerts.release_spike import ReleaseSpikeDetector, ReleaseSpikeState, rate_confidence_sequence

__all__ = [
    "BernoulliCusum",
    "ClusterShift",
    "CusumState",
    "Detection",
    "Detector",
    "DriftState",
    "FixedHorizonZTest",
    "MMDTestResult",
    "PromptDriftDetector",
    "ReleaseSpikeDetector",
    "ReleaseSpikeState",
    "ZTestState",
    "calibrate_cusum_threshold",
    "crossover_rate",
    "explain_drift",
    "median_heuristic_bandwidth",
    "mmd2_unbiased",
    "mmd_permutation_test",
    "rate_confidence_sequence",
    "two_proportion_z_test",
]
