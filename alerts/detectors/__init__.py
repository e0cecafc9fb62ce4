"""Pure statistics: one module per test, shared helpers for counts, dispersion and calendar.

Detectors take counts or embeddings and return frozen state snapshots and :class:`Detection`
records; they never touch storage or clocks (:mod:`alerts.detectors.base`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alerts.detectors.base import Detection, Detector
from alerts.detectors.buckets import AdaptiveBuckets, Bucket
from alerts.detectors.calendar import WEEKEND_DAYS, hour_and_day_type, like_with_like_lags
from alerts.detectors.confidence import (
    newcombe_interval,
    rate_confidence_sequence,
    wilson_interval,
    wilson_interval_of_rate,
)
from alerts.detectors.counts import check_counts
from alerts.detectors.degradation import (
    SeasonalCusum,
    SeasonalCusumState,
    bootstrap_cusum_threshold,
)
from alerts.detectors.dispersion import Dispersion, block_dispersion, estimate_dispersion
from alerts.detectors.explain import ClusterShift, collapse_repeats, explain_drift
from alerts.detectors.mmd import (
    MMDTestResult,
    median_heuristic_bandwidth,
    mmd2_unbiased,
    mmd_permutation_test,
)
from alerts.detectors.prompt_drift import (
    DriftHysteresis,
    DriftState,
    PromptDriftDetector,
    count_window_start,
    look_level,
    seasonal_reference_spans,
)
from alerts.detectors.release_spike import ReleaseSpikeDetector, ReleaseSpikeState
from alerts.detectors.seasonal import SeasonalProfile, fit_seasonal_profile

__all__ = [
    "WEEKEND_DAYS",
    "AdaptiveBuckets",
    "Bucket",
    "ClusterShift",
    "Detection",
    "Detector",
    "Dispersion",
    "DriftHysteresis",
    "DriftState",
    "MMDTestResult",
    "PromptDriftDetector",
    "ReleaseSpikeDetector",
    "ReleaseSpikeState",
    "SeasonalCusum",
    "SeasonalCusumState",
    "SeasonalProfile",
    "block_dispersion",
    "bootstrap_cusum_threshold",
    "check_counts",
    "collapse_repeats",
    "count_window_start",
    "estimate_dispersion",
    "explain_drift",
    "fit_seasonal_profile",
    "hour_and_day_type",
    "like_with_like_lags",
    "look_level",
    "median_heuristic_bandwidth",
    "mmd2_unbiased",
    "mmd_permutation_test",
    "newcombe_interval",
    "rate_confidence_sequence",
    "seasonal_reference_spans",
    "wilson_interval",
    "wilson_interval_of_rate",
]

if TYPE_CHECKING:  # each detector against the protocol, with what one observation is (mypy)
    from datetime import datetime

    from numpy.typing import ArrayLike

    _degradation: Detector[[int, int, datetime], SeasonalCusumState] = SeasonalCusum()
    _release_spike: Detector[[int, int, int, int], ReleaseSpikeState] = ReleaseSpikeDetector()
    _prompt_drift: Detector[[ArrayLike, ArrayLike], DriftState] = PromptDriftDetector()
