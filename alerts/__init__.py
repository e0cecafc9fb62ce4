"""Statistical detectors for the monitor: release spikes, slow degradation and prompt drift.

Three layers, each importing only the ones below it:

* :mod:`alerts.detectors` — pure statistics, one module per test, storage-free;
* :mod:`alerts.tracks` — the detection engine and one track per detector (registered in
  :data:`alerts.tracks.TRACKS`), the detection book and its stores;
* :mod:`alerts.delivery` — the monitor loop, the backtest, the notifiers, the receiver and
  Grafana alert rules.
"""

from __future__ import annotations

from alerts.delivery import (
    FanOutNotifier,
    Monitor,
    Notifier,
    PagerDutyNotifier,
    Receiver,
    SlackNotifier,
    WebhookNotifier,
    api_payloads,
    backtest,
    build_notifier,
    prometheus_rules_file,
    provisioning_file,
)
from alerts.detectors import (
    ClusterShift,
    Detection,
    Detector,
    DriftHysteresis,
    DriftState,
    MMDTestResult,
    PromptDriftDetector,
    ReleaseSpikeDetector,
    ReleaseSpikeState,
    SeasonalCusum,
    SeasonalCusumState,
    SeasonalProfile,
    explain_drift,
    fit_seasonal_profile,
    median_heuristic_bandwidth,
    mmd2_unbiased,
    mmd_permutation_test,
    rate_confidence_sequence,
    wilson_interval,
    wilson_interval_of_rate,
)
from alerts.errors import AlertError
from alerts.settings import (
    LEGACY_PREFIXES,
    DegradationConfig,
    MonitorConfig,
    NotifyConfig,
    PromptDriftConfig,
    ReleaseSpikeConfig,
)
from alerts.tracks import InstrumentCheck, slice_label

__all__ = [
    "LEGACY_PREFIXES",
    "AlertError",
    "ClusterShift",
    "DegradationConfig",
    "Detection",
    "Detector",
    "DriftHysteresis",
    "DriftState",
    "FanOutNotifier",
    "InstrumentCheck",
    "MMDTestResult",
    "Monitor",
    "MonitorConfig",
    "Notifier",
    "NotifyConfig",
    "PagerDutyNotifier",
    "PromptDriftConfig",
    "PromptDriftDetector",
    "Receiver",
    "ReleaseSpikeConfig",
    "ReleaseSpikeDetector",
    "ReleaseSpikeState",
    "SeasonalCusum",
    "SeasonalCusumState",
    "SeasonalProfile",
    "SlackNotifier",
    "WebhookNotifier",
    "api_payloads",
    "backtest",
    "build_notifier",
    "explain_drift",
    "fit_seasonal_profile",
    "median_heuristic_bandwidth",
    "mmd2_unbiased",
    "mmd_permutation_test",
    "prometheus_rules_file",
    "provisioning_file",
    "rate_confidence_sequence",
    "slice_label",
    "wilson_interval",
    "wilson_interval_of_rate",
]
