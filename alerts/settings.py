"""Settings of the monitor and of the notifiers: typed pydantic models, no environment.

This package only declares them; :mod:`telltale.settings` binds them to the environment
(``TELLTALE_MONITOR_*`` tunes the detectors and the schedule, ``TELLTALE_NOTIFY_*`` configures
the webhook, PagerDuty and Slack) and the CLI builds them once and passes them down. The webhook
and Slack URLs and the PagerDuty routing keys are secrets (``SecretStr``: never printed, logged
or put in an exception message).
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from alerts.detectors.calendar import WEEKEND_DAYS

__all__ = [
    "LEGACY_PREFIXES",
    "PAGERDUTY_EVENTS_URL",
    "DegradationConfig",
    "MonitorConfig",
    "NotifyConfig",
    "PromptDriftConfig",
    "ReleaseSpikeConfig",
]

_DAY = 1_440

LEGACY_PREFIXES: dict[str, str] = {
    "release_spike_": "spike_",
    "degradation_": "cusum_",
    "prompt_drift_": "drift_",
}
"""Field prefix -> the prefix it had before the detectors were named alike (still accepted)."""


class ReleaseSpikeConfig(BaseModel):
    """The release-spike track's settings (``MonitorConfig.release_spike_*``)."""

    model_config = ConfigDict(frozen=True)

    alpha: float
    mixture_tau: float
    horizon_minutes: int
    baseline_lags_minutes: tuple[int, ...]
    weekend_days: tuple[int, ...]
    concurrent_window_minutes: int
    bucket_min_events: int
    history_days: int
    icc_prior: float
    day_cv_floor: float
    variance_confidence: float
    watch_latency: bool
    latency_quantile: float
    watch_usage: bool
    usage_quantile: float
    watch_min_units: int


class DegradationConfig(BaseModel):
    """The degradation track's settings (``MonitorConfig.degradation_*``)."""

    model_config = ConfigDict(frozen=True)

    delta: float
    arl0_minutes: float
    min_history_minutes: int
    min_failures: int
    history_minutes: int
    idle_drop_minutes: int
    seed: int


class PromptDriftConfig(BaseModel):
    """The prompt-drift track's settings (``MonitorConfig.prompt_drift_*``)."""

    model_config = ConfigDict(frozen=True)

    field: str
    every_minutes: int
    recent_minutes: int
    longest_window_minutes: int
    reference_days: int
    reference_minutes: int
    recent_sample: int
    reference_sample: int
    min_prompts: int
    alpha: float
    horizon_looks: int
    permutations: int
    clusters: int
    clean_level: float
    clean_looks: int
    seed: int


PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


class MonitorConfig(BaseModel):
    """How the monitor schedules its work and tunes its three detectors.

    The fields are flat so that each is one environment variable, prefixed with the detector's
    stored name (``release_spike_``, ``degradation_``, ``prompt_drift_``); the properties of
    the same names hand each track its own settings model. The older prefixes (``spike_``,
    ``cusum_``, ``drift_``) are accepted as aliases (:data:`LEGACY_PREFIXES`).
    """

    interval_s: float = Field(default=60.0, gt=0, description="seconds between cycles")
    settle_s: float = Field(
        default=120.0,
        ge=0,
        description="a minute is processed at least this long after it ended; the monitor "
        "waits longer when the measured p99 ingest lag is longer",
    )
    settle_max_s: float = Field(
        default=1_800.0, ge=0, description="the most the measured ingest lag may delay a minute"
    )
    backfill_after_s: float = Field(
        default=86_400.0,
        gt=0,
        description="rows this much later than their timestamp are back-fills, not late rows",
    )
    unit_repeat_window_minutes: int = Field(
        default=10,
        ge=1,
        description="repeats of one request (same session or user, same prompt) within this "
        "window count as one unit",
    )
    lookback_minutes: int = Field(
        default=10_080,
        ge=60,
        description="history replayed when a monitor starts (rebuilds detector state)",
    )
    resolve_after_minutes: int = Field(
        default=120,
        ge=1,
        description="an alarm clears after this long without a new alarm (or without traffic)",
    )
    seed: int = 0

    # release spike: anytime-valid mixture SPRT, new version vs previous version
    release_spike_alpha: float = Field(default=0.01, gt=0, lt=1)
    release_spike_mixture_tau: float = Field(default=0.5, gt=0)
    release_spike_horizon_minutes: int = Field(
        default=10_080, ge=1, description="how long after a release its test keeps running"
    )
    release_spike_baseline_lags_minutes: list[int] = Field(
        default=[7 * _DAY, _DAY, 2 * _DAY, 3 * _DAY, 4 * _DAY, 5 * _DAY, 6 * _DAY],
        description="after a full cut-over, compare with the previous version this much earlier: "
        "the first lag landing on a day of the same weekday type with traffic in that hour wins",
    )
    release_spike_weekend_days: list[int] = Field(
        default=list(WEEKEND_DAYS), description="weekdays (Monday=0, UTC) that are weekend days"
    )
    release_spike_concurrent_window_minutes: int = Field(
        default=60,
        ge=1,
        description="the previous version counts as serving beside the new one (concurrent "
        "baseline) while it had traffic this recently",
    )
    release_spike_bucket_min_events: int = Field(
        default=20, ge=1, description="a bucket closes once both versions have this many units"
    )
    release_spike_history_days: int = Field(
        default=7, ge=1, description="baseline history read to estimate its variance components"
    )
    release_spike_icc_prior: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="intraclass correlation within a minute assumed when the baseline's history "
        "cannot estimate it",
    )
    release_spike_day_cv_floor: float = Field(
        default=0.05, ge=0.0, description="least day-to-day coefficient of variation assumed"
    )
    release_spike_variance_confidence: float = Field(
        default=0.95,
        gt=0.0,
        lt=1.0,
        description="one-sided confidence of the variance components: the intraclass correlation "
        "used is its upper bound at this level, and the day-to-day variance counts only beyond "
        "this upper quantile of the within-day noise (sparse days scatter by chance)",
    )
    release_spike_watch_latency: bool = Field(
        default=True, description="also test each release's latency (signal 'latency.p95'): the "
        "share of units slower than the previous version's latency quantile below",
    )  # fmt: skip
    release_spike_latency_quantile: float = Field(default=0.95, gt=0, lt=1)
    release_spike_watch_usage: bool = Field(
        default=True, description="also test each release's usage: the share of units above the "
        "previous version's quantile below of cost per event ('usage.cost_per_event', priced "
        "models) or of output tokens per event ('usage.output_tokens')",
    )  # fmt: skip
    release_spike_usage_quantile: float = Field(default=0.5, gt=0, lt=1)
    release_spike_watch_min_units: int = Field(
        default=200, ge=1, description="a watch needs this many of the previous version's units "
        "with the quantity in the history before the release (its threshold comes from them)",
    )  # fmt: skip

    # slow degradation: quasi-likelihood CUSUM against a seasonal profile, within one version
    degradation_delta: float = Field(
        default=0.01, gt=0, lt=0.5, description="shift to detect (rate, above the expected)"
    )
    degradation_arl0_minutes: float = Field(
        default=43_200.0, gt=1, description="at least this many minutes between false alarms"
    )
    degradation_min_history_minutes: int = Field(
        default=1_440, ge=60, description="history to learn the daily profile from before testing"
    )
    degradation_min_failures: int = Field(
        default=30, ge=1, description="failures the history must hold before testing"
    )
    degradation_history_minutes: int = Field(
        default=10_080, ge=60, description="the profile is refit daily on this much history"
    )
    idle_drop_minutes: int = Field(
        default=1_440, ge=1, description="forget a series after this long without traffic"
    )

    # prompt drift: MMD permutation test by unit, recent window vs the same hours of past days
    prompt_drift_field: str = "prompt.text"
    prompt_drift_every_minutes: int = Field(default=60, ge=1, description="one look per this many")
    prompt_drift_recent_minutes: int = Field(default=60, ge=1)
    prompt_drift_longest_window_minutes: int = Field(
        default=1_440, ge=1, description="a window waiting for enough prompts reaches back so far"
    )
    prompt_drift_reference_days: int = Field(
        default=7, ge=1, le=14, description="reference: the same hours on this many past days"
    )
    prompt_drift_reference_minutes: int = Field(
        default=0,
        ge=0,
        description="fallback reference while the same hours of past days hold too few "
        "prompts: this span just before the window (0: none, wait for a day of history; a "
        "contiguous reference mistakes a daily topic cycle for drift)",
    )
    prompt_drift_recent_sample: int = Field(default=500, ge=10)
    prompt_drift_reference_sample: int = Field(default=1_000, ge=10)
    prompt_drift_min_prompts: int = Field(default=50, ge=2, description="skip looks with fewer")
    prompt_drift_alpha: float = Field(default=0.01, gt=0, lt=1)
    prompt_drift_horizon_looks: int = Field(default=24, ge=1)
    prompt_drift_permutations: int = Field(default=4_999, ge=99)
    prompt_drift_clusters: int = Field(default=8, ge=0, description="clusters in the explanation")
    prompt_drift_clean_level: float = Field(
        default=0.05, gt=0, lt=1, description="a look with a p-value above this is clean"
    )
    prompt_drift_clean_looks: int = Field(
        default=3, ge=1, description="an open drift incident resolves after this many clean looks"
    )
    prompt_drift_catchup_looks: int = Field(
        default=24, ge=1, description="most looks a starting monitor computes for old windows"
    )

    @property
    def release_spike(self) -> ReleaseSpikeConfig:
        return ReleaseSpikeConfig(
            alpha=self.release_spike_alpha, mixture_tau=self.release_spike_mixture_tau,
            horizon_minutes=self.release_spike_horizon_minutes,
            baseline_lags_minutes=tuple(self.release_spike_baseline_lags_minutes),
            weekend_days=tuple(self.release_spike_weekend_days),
            concurrent_window_minutes=self.release_spike_concurrent_window_minutes,
            bucket_min_events=self.release_spike_bucket_min_events,
            history_days=self.release_spike_history_days,
            icc_prior=self.release_spike_icc_prior, day_cv_floor=self.release_spike_day_cv_floor,
            variance_confidence=self.release_spike_variance_confidence,
            watch_latency=self.release_spike_watch_latency,
            latency_quantile=self.release_spike_latency_quantile,
            watch_usage=self.release_spike_watch_usage,
            usage_quantile=self.release_spike_usage_quantile,
            watch_min_units=self.release_spike_watch_min_units,
        )  # fmt: skip

    @property
    def degradation(self) -> DegradationConfig:
        return DegradationConfig(
            delta=self.degradation_delta, arl0_minutes=self.degradation_arl0_minutes,
            min_history_minutes=self.degradation_min_history_minutes,
            min_failures=self.degradation_min_failures,
            history_minutes=self.degradation_history_minutes,
            idle_drop_minutes=self.idle_drop_minutes, seed=self.seed,
        )  # fmt: skip

    @property
    def prompt_drift(self) -> PromptDriftConfig:
        return PromptDriftConfig(
            field=self.prompt_drift_field, every_minutes=self.prompt_drift_every_minutes,
            recent_minutes=self.prompt_drift_recent_minutes,
            longest_window_minutes=self.prompt_drift_longest_window_minutes,
            reference_days=self.prompt_drift_reference_days,
            reference_minutes=self.prompt_drift_reference_minutes,
            recent_sample=self.prompt_drift_recent_sample,
            reference_sample=self.prompt_drift_reference_sample,
            min_prompts=self.prompt_drift_min_prompts, alpha=self.prompt_drift_alpha,
            horizon_looks=self.prompt_drift_horizon_looks,
            permutations=self.prompt_drift_permutations,
            clusters=self.prompt_drift_clusters, clean_level=self.prompt_drift_clean_level,
            clean_looks=self.prompt_drift_clean_looks, seed=self.seed,
        )  # fmt: skip

    @model_validator(mode="after")
    def _history_holds_minimum(self) -> MonitorConfig:
        if self.degradation_history_minutes < self.degradation_min_history_minutes:
            raise ValueError(
                "degradation_history_minutes must be >= degradation_min_history_minutes"
            )
        return self

    @field_validator("release_spike_weekend_days")
    @classmethod
    def _weekdays(cls, value: list[int]) -> list[int]:
        if any(not 0 <= day <= 6 for day in value):
            raise ValueError("weekend days are weekday numbers 0 (Monday) to 6 (Sunday)")
        return value

    @field_validator("release_spike_baseline_lags_minutes")
    @classmethod
    def _positive_lags(cls, value: list[int]) -> list[int]:
        if any(lag <= 0 for lag in value):
            raise ValueError("baseline lags must be positive minutes")
        return value


class NotifyConfig(BaseModel):
    """The notifiers: a generic webhook, PagerDuty (Events API v2) and Slack (incoming webhook).

    Each is on when its secret is set, and several can be on at once (every page goes to each).
    The retry settings (``timeout_s`` … ``backoff_max_s``) apply to all of them.
    """

    webhook_url: SecretStr | None = Field(
        default=None, description="where to POST; for 'pagerduty' the Events API v2 by default"
    )
    format: Literal["generic", "slack", "pagerduty"] = Field(
        default="generic",
        description="the webhook's payload; prefer the PagerDuty and Slack settings below "
        "('slack' and 'pagerduty' here send the same messages through the webhook)",
    )
    routing_key: SecretStr | None = Field(
        default=None, description="PagerDuty integration key for format 'pagerduty'"
    )
    pagerduty_routing_key: SecretStr | None = Field(
        default=None, description="PagerDuty Events API v2 integration (routing) key: pages on"
    )
    pagerduty_url: str = Field(
        default=PAGERDUTY_EVENTS_URL, description="the Events API v2 endpoint (tests, EU region)"
    )
    slack_webhook_url: SecretStr | None = Field(
        default=None, description="Slack incoming-webhook URL (a credential): Slack messages on"
    )
    dashboard_url: str | None = Field(
        default=None, description="Grafana dashboard linked from PagerDuty and Slack messages"
    )
    severity: Literal["critical", "error", "warning", "info"] = Field(
        default="error", description="paging severity of signals outside a signal group"
    )
    source: str = Field(default="telltale", min_length=1, description="PagerDuty payload.source")
    timeout_s: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, le=20)
    backoff_s: float = Field(default=1.0, ge=0, description="first retry delay; doubles")
    backoff_max_s: float = Field(default=60.0, ge=0)
    stale_after_minutes: int = Field(
        default=1_440,
        ge=1,
        description="a detection resolved longer ago than this and never sent is not sent",
    )

    @field_validator("pagerduty_url", "dashboard_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        parts = urlsplit(value) if value is not None else None
        if parts is not None and (parts.scheme not in ("http", "https") or not parts.hostname):
            raise ValueError("must be an http(s) URL")
        return value

    @property
    def enabled(self) -> bool:
        """The generic webhook (or its legacy 'slack'/'pagerduty' formats) is configured."""
        if self.format == "pagerduty":
            return self.routing_key is not None
        return self.webhook_url is not None

    @property
    def any_enabled(self) -> bool:
        """At least one notifier (webhook, PagerDuty, Slack) is configured."""
        return (
            self.enabled or self.pagerduty_routing_key is not None
            or self.slack_webhook_url is not None
        )  # fmt: skip

    def url(self) -> str:
        """The webhook's secret URL, for the HTTP client only."""
        if self.webhook_url is not None:
            return self.webhook_url.get_secret_value()
        if self.format == "pagerduty":
            return self.pagerduty_url
        raise ValueError("no webhook URL configured (TELLTALE_NOTIFY_WEBHOOK_URL)")
