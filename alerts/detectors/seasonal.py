"""A seasonal expectation for a failure rate: hour of day × weekday/weekend, with shrinkage.

The expected rate of a minute is ``hour_rate[h] * day_level[d]`` (UTC hour, day type of
:mod:`alerts.detectors.calendar`), fitted by raking on the history's counts, each factor shrunk
towards the pooled value by ``prior_failures`` pseudo-failures (an hour or day type seen little
stays near the overall rate). The history's burst-aware dispersion
(:func:`~alerts.detectors.dispersion.block_dispersion`) comes with the fit, and so does what the
fit rests on (failures and events a minute per hour, failures per day type), from which
:meth:`SeasonalProfile.log_rate_variance` says how far each expected rate may be off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from alerts.detectors.dispersion import block_dispersion

__all__ = ["SeasonalProfile", "fit_seasonal_profile"]


@dataclass(frozen=True)
class SeasonalProfile:
    """Expected failure rate by hour of day and day type, and the history's dispersion.

    ``expected(hour, day_type)`` is ``hour_rate[hour] * day_level[day_type]``, capped to
    ``(0, 0.5]``. ``dispersion`` (``>= 1``) is the variance of failure counts relative to the
    binomial; ``failures`` and ``events`` say how much history the fit saw, ``day_types_seen``
    which day types it contained. ``hour_failures`` and ``hour_events_per_minute`` are each
    hour's failures and mean events a minute (minutes with traffic) in the history,
    ``day_failures`` each day type's failures, ``prior_failures`` the shrinkage prior in
    effective failures (see :func:`fit_seasonal_profile`).
    """

    hour_rate: tuple[float, ...]
    day_level: tuple[float, float]
    dispersion: float
    events: int
    failures: int
    day_types_seen: tuple[bool, bool]
    hour_failures: tuple[float, ...] = (0.0,) * 24
    hour_events_per_minute: tuple[float, ...] = (0.0,) * 24
    day_failures: tuple[float, float] = (0.0, 0.0)
    prior_failures: float = 20.0

    def expected(self, hour: int, day_type: int) -> float:
        return float(min(0.5, max(1e-6, self.hour_rate[hour] * self.day_level[day_type])))

    def expected_many(
        self, hours: NDArray[np.int64], days: NDArray[np.int64]
    ) -> NDArray[np.float64]:
        rates = np.asarray(self.hour_rate)[hours] * np.asarray(self.day_level)[days]
        clipped: NDArray[np.float64] = np.clip(rates, 1e-6, 0.5)
        return clipped

    def log_rate_variance(self) -> NDArray[np.float64]:
        """Variance of ``log expected(hour, day_type)`` from the fit's own error, ``(24, 2)``.

        Each factor is a ratio ``(K + a phi) / (E + a phi / base)`` of the history's ``K``
        failures (``K' = K / phi`` effective ones, counts being ``phi`` times as variable as the
        binomial) and ``a`` prior pseudo-failures at the pooled rate: the mean of a Gamma
        posterior of shape ``K' + a``, whose log has variance about ``1 / (K' + a)``. That is the
        sampling error ``1 / K'`` of an hour with many failures, and at most ``1 / a`` for one
        with none, where the prior, not the hour, sets the rate. Hour and day-type level add;
        a day type the history has not seen adds nothing (its level is the weekday's, and a
        different weekend is a change of pattern, paged as one). Dense history (hundreds of
        failures an hour) makes the variance small, a sampled or short history large.
        """
        phi, a = self.dispersion, self.prior_failures
        hour = 1.0 / (np.asarray(self.hour_failures) / phi + a)
        k_day = np.asarray(self.day_failures) / phi
        day = np.where(np.asarray(self.day_types_seen), 1.0 / (k_day + a), 0.0)
        table: NDArray[np.float64] = hour[:, None] + day[None, :]
        return table


def fit_seasonal_profile(
    minute_index: NDArray[np.int64],
    hours: NDArray[np.int64],
    days: NDArray[np.int64],
    n: NDArray[np.int64],
    k: NDArray[np.int64],
    *,
    prior_failures: float = 20.0,
) -> SeasonalProfile:
    """Fit a :class:`SeasonalProfile` to per-minute counts.

    ``minute_index`` numbers the minutes consecutively (gaps allowed; blocks for the dispersion
    are ``minute_index // B``), ``hours`` and ``days`` are each minute's hour of day and day type,
    ``n`` and ``k`` its events and failures. The fit needs at least one failure.

    >>> idx = np.arange(2880)
    >>> hours = (idx // 60) % 24
    >>> n = np.full(2880, 100)
    >>> k = np.where((hours >= 8) & (hours < 20), 3, 1)
    >>> p = fit_seasonal_profile(idx, hours, np.zeros(2880, dtype=np.int64), n, k)
    >>> round(p.expected(12, 0), 2), round(p.expected(2, 0), 2)
    (0.03, 0.01)
    """
    events = np.asarray(n, dtype=np.float64)
    fails = np.asarray(k, dtype=np.float64)
    hours = np.asarray(hours, dtype=np.int64)
    days = np.asarray(days, dtype=np.int64)
    total_k, total_n = float(fails.sum()), float(events.sum())
    if total_k <= 0 or total_n <= 0:
        raise ValueError("the history needs events and at least one failure")
    base = total_k / total_n
    k_hour = np.bincount(hours, weights=fails, minlength=24)
    k_day = np.bincount(days, weights=fails, minlength=2)
    dispersion = 1.0
    hour_rate = np.full(24, base)
    level = np.ones(2)
    for _ in range(2):  # a first fit, then a refit with the prior in units of effective failures
        prior = prior_failures * dispersion
        for _ in range(3):
            exposure_hour = np.bincount(hours, weights=events * level[days], minlength=24)
            hour_rate = (k_hour + prior) / (exposure_hour + prior / base)
            expected_day = np.bincount(days, weights=events * hour_rate[hours], minlength=2)
            level = (k_day + prior) / (expected_day + prior)
        expected = np.clip(hour_rate[hours] * level[days], 1e-6, 0.5)
        dispersion = block_dispersion(
            np.asarray(minute_index, dtype=np.int64), events, fails, expected
        )
    seen = np.bincount(days, weights=events, minlength=2) > 0
    minutes = np.bincount(hours[events > 0], minlength=24)
    per_minute = np.bincount(hours, weights=events, minlength=24) / np.maximum(minutes, 1)
    return SeasonalProfile(
        hour_rate=tuple(float(r) for r in hour_rate),
        day_level=(float(level[0]), float(level[1])),
        dispersion=dispersion,
        events=int(total_n),
        failures=int(total_k),
        day_types_seen=(bool(seen[0]), bool(seen[1])),
        hour_failures=tuple(float(x) for x in k_hour),
        hour_events_per_minute=tuple(float(x) for x in per_minute),
        day_failures=(float(k_day[0]), float(k_day[1])),
        prior_failures=prior_failures,
    )
