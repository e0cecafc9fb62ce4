"""Settings of the monitor and of the webhook notifier (pydantic-settings, read from the env).

Nothing is read at import time: the CLI builds these once and passes them down.
``TELLTALE_MONITOR_*`` tunes the detectors and the schedule; ``TELLTALE_NOTIFY_*`` configures the
webhook, whose URL and PagerDuty routing key are secrets (``SecretStr``: never printed, logged or
put in an exception message).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["PAGERDUTY_EVENTS_URL", "MonitorSettings", "NotifySettings"]

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


class MonitorSettings(BaseSettings):
    """How the monitor schedules its work and tunes its three detectors."""

    model_config = SettingsConfigDict(env_prefix="TELLTALE_MONITOR_", extra="ignore")

    interval_s: float = Field(default=60.0, gt=0, description="seconds between cycles")
    settle_s: float = Field(
        default=120.0,
        ge=0,
        description="a minute is processed once it ended this long ago (late events settle)",
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
    spike_alpha: float = Field(default=0.01, gt=0, lt=1)
    spike_mixture_tau: float = Field(default=0.5, gt=0)
    spike_horizon_minutes: int = Field(
        default=10_080, ge=1, description="how long after a release its test keeps running"
    )
    spike_baseline_lags_minutes: list[int] = Field(
        default=[10_080, 1_440],
        description="after a full cut-over, pair a minute with the previous version's minute "
        "this much earlier (first lag with traffic wins): a week, then a day",
    )

    # slow degradation: quasi-likelihood CUSUM against a seasonal profile, within one version
    cusum_delta: float = Field(
        default=0.01, gt=0, lt=0.5, description="shift to detect (rate, above the expected)"
    )
    cusum_arl0_minutes: float = Field(
        default=43_200.0, gt=1, description="at least this many minutes between false alarms"
    )
    cusum_min_history_minutes: int = Field(
        default=1_440, ge=60, description="history to learn the daily profile from before testing"
    )
    cusum_min_failures: int = Field(
        default=30, ge=1, description="failures the history must hold before testing"
    )
    cusum_history_minutes: int = Field(
        default=10_080, ge=60, description="the profile is refit daily on this much history"
    )
    idle_drop_minutes: int = Field(
        default=1_440, ge=1, description="forget a series after this long without traffic"
    )

    # prompt drift: MMD permutation test by unit, recent window vs the same hours of past days
    drift_field: str = "prompt.text"
    drift_every_minutes: int = Field(default=60, ge=1, description="one look per this many")
    drift_recent_minutes: int = Field(default=60, ge=1)
    drift_longest_window_minutes: int = Field(
        default=1_440, ge=1, description="a window waiting for enough prompts reaches back so far"
    )
    drift_reference_days: int = Field(
        default=7, ge=1, le=14, description="reference: the same hours on this many past days"
    )
    drift_reference_minutes: int = Field(
        default=0,
        ge=0,
        description="fallback reference while the same hours of past days hold too few "
        "prompts: this span just before the window (0: none, wait for a day of history; a "
        "contiguous reference mistakes a daily topic cycle for drift)",
    )
    drift_recent_sample: int = Field(default=500, ge=10)
    drift_reference_sample: int = Field(default=1_000, ge=10)
    drift_min_prompts: int = Field(default=50, ge=2, description="skip looks with fewer")
    drift_alpha: float = Field(default=0.01, gt=0, lt=1)
    drift_horizon_looks: int = Field(default=24, ge=1)
    drift_permutations: int = Field(default=4_999, ge=99)
    drift_clusters: int = Field(default=8, ge=0, description="clusters in the explanation")
    drift_clean_level: float = Field(
        default=0.05, gt=0, lt=1, description="a look with a p-value above this is clean"
    )
    drift_clean_looks: int = Field(
        default=3, ge=1, description="an open drift incident resolves after this many clean looks"
    )
    drift_catchup_looks: int = Field(
        default=24, ge=1, description="most looks a starting monitor computes for old windows"
    )

    @model_validator(mode="after")
    def _history_holds_minimum(self) -> MonitorSettings:
        if self.cusum_history_minutes < self.cusum_min_history_minutes:
            raise ValueError("cusum_history_minutes must be >= cusum_min_history_minutes")
        return self

    @field_validator("spike_baseline_lags_minutes")
    @classmethod
    def _positive_lags(cls, value: list[int]) -> list[int]:
        if any(lag <= 0 for lag in value):
            raise ValueError("baseline lags must be positive minutes")
        return value


class NotifySettings(BaseSettings):
    """The webhook notifier. Without a URL (and, for PagerDuty, a routing key) it is off."""

    model_config = SettingsConfigDict(env_prefix="TELLTALE_NOTIFY_", extra="ignore")

    webhook_url: SecretStr | None = Field(
        default=None, description="where to POST; for 'pagerduty' the Events API v2 by default"
    )
    format: Literal["generic", "slack", "pagerduty"] = "generic"
    routing_key: SecretStr | None = Field(
        default=None, description="PagerDuty integration (routing) key"
    )
    severity: Literal["critical", "error", "warning", "info"] = "error"
    source: str = Field(default="telltale", description="PagerDuty payload.source")
    timeout_s: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, le=20)
    backoff_s: float = Field(default=1.0, ge=0, description="first retry delay; doubles")
    backoff_max_s: float = Field(default=60.0, ge=0)
    stale_after_minutes: int = Field(
        default=1_440,
        ge=1,
        description="a detection resolved longer ago than this and never sent is not sent",
    )

    @property
    def enabled(self) -> bool:
        if self.format == "pagerduty":
            return self.routing_key is not None
        return self.webhook_url is not None

    def url(self) -> str:
        """The secret URL, for the HTTP client only."""
        if self.webhook_url is not None:
            return self.webhook_url.get_secret_value()
        if self.format == "pagerduty":
            return PAGERDUTY_EVENTS_URL
        raise ValueError("no webhook URL configured (TELLTALE_NOTIFY_WEBHOOK_URL)")
