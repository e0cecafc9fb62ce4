"""Statistical detectors for the monitor: release spikes, slow degradation and prompt drift.

Everything here is pure and storage-free: detectors take counts or embeddings, return frozen state
snapshots and :class:`Detection` records; the monitor loop that reads ClickHouse and writes the
``detections`` table sits on top.

* :class:`ReleaseSpikeDetector` — anytime-valid mixture SPRT, new version vs concurrent baseline.
* :class:`SeasonalCusum` — slow degradation within a version: a quasi-likelihood CUSUM against an
  hour-of-day × weekday/weekend profile learned from history (:class:`SeasonalProfile`).
* :class:`BernoulliCusum` — the fixed-rate CUSUM, threshold calibrated to an ARL by simulation.
* :class:`PromptDriftDetector` — MMD permutation tests on prompt embeddings (permuting users or
  sessions as wholes), with :func:`explain_drift` to say which kinds of prompts grew and
  :class:`DriftHysteresis` to make one sustained shift one incident.
* :class:`FixedHorizonZTest` — the naive repeated z-test, kept as a benchmark baseline only.
"""

from __future__ import annotations

from alerts.backtest import backtest
from alerts.base import Detection, Detector
from alerts.degradation import (
    BernoulliCusum,
    CusumState,
    SeasonalCusum,
    SeasonalCusumState,
    calibrate_cusum_threshold,
    crossover_rate,
)
from alerts.discover import DiscoveryOptions, as_dict, discover
from alerts.drift import (
    ClusterShift,
    DriftHysteresis,
    DriftState,
    MMDTestResult,
    PromptDriftDetector,
    explain_drift,
    median_heuristic_bandwidth,
    mmd2_unbiased,
    mmd_permutation_test,
)
from alerts.errors import AlertError
from alerts.fixed_horizon import FixedHorizonZTest, ZTestState, two_proportion_z_test
from alerts.instrument import InstrumentCheck
from alerts.localize import slice_label, wilson_interval
from alerts.monitor import Monitor
from alerts.notify import WebhookNotifier
from alerts.receiver import Receiver
from alerts.release_spike import ReleaseSpikeDetector, ReleaseSpikeState, rate_confidence_sequence
from alerts.rules import api_payloads, provisioning_file
from alerts.seasonal import SeasonalProfile, fit_seasonal_profile
from alerts.settings import MonitorSettings, NotifySettings

__all__ = [
    "AlertError",
    "BernoulliCusum",
    "ClusterShift",
    "CusumState",
    "Detection",
    "Detector",
    "DiscoveryOptions",
    "DriftHysteresis",
    "DriftState",
    "FixedHorizonZTest",
    "InstrumentCheck",
    "MMDTestResult",
    "Monitor",
    "MonitorSettings",
    "NotifySettings",
    "PromptDriftDetector",
    "Receiver",
    "ReleaseSpikeDetector",
    "ReleaseSpikeState",
    "SeasonalCusum",
    "SeasonalCusumState",
    "SeasonalProfile",
    "WebhookNotifier",
    "ZTestState",
    "api_payloads",
    "as_dict",
    "backtest",
    "calibrate_cusum_threshold",
    "crossover_rate",
    "discover",
    "explain_drift",
    "fit_seasonal_profile",
    "median_heuristic_bandwidth",
    "mmd2_unbiased",
    "mmd_permutation_test",
    "provisioning_file",
    "rate_confidence_sequence",
    "slice_label",
    "two_proportion_z_test",
    "wilson_interval",
]
