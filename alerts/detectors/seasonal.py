"""A seasonal expectation for a failure rate: hour of day × weekday/weekend, with shrinkage.

The expected rate of a minute is ``hour_rate[h] * day_level[d]`` (UTC hour, day type of
:mod:`alerts.detectors.calendar`), fitted by raking on the history's counts, each factor shrunk
towards the pooled value by ``prior_failures`` pseudo-failures (an hour or day type seen little
stays near the overall rate). The history's burst-aware dispersion
(:func:`~alerts.detectors.dispersion.block_dispersion`) comes with the fit, and so does what the
fit rests on (failures and events a minute per hour, failures per day type), from which
:meth:`SeasonalProfile.log_rate_mse` says how far each expected rate may be off.
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
    which day types it contained. ``hour_failures``, ``hour_exposure`` and
    ``hour_events_per_minute`` are each hour's failures, events weighted by their day type's
    level, and mean events a minute (minutes with traffic) in the history, ``day_failures``
    each day type's failures, ``prior_failures`` the shrinkage prior in effective failures
    (see :func:`fit_seasonal_profile`).
    """

    hour_rate: tuple[float, ...]
    day_level: tuple[float, float]
    dispersion: float
    events: int
    failures: int
    day_types_seen: tuple[bool, bool]
    hour_failures: tuple[float, ...] = (0.0,) * 24
    hour_exposure: tuple[float, ...] = (0.0,) * 24
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

    def log_rate_mse(self) -> NDArray[np.float64]:
        """Mean squared error of ``log expected(hour, day_type)``, a ``(24, 2)`` table.

        Each factor is a shrunk ratio ``(K + a phi) / (E + a phi / base)`` of ``K`` failures
        (``K' = K / phi`` effective ones) and ``a`` prior pseudo-failures, so its log has
        variance ``K' / (K' + a)^2`` (the sampling error of ``K'`` failures, ``1 / K'`` when
        ``a`` is small) and a bias ``a / (K' + a)`` times the log ratio ``L`` of the hour's rate
        to the pooled one, which the raw ratio ``(K + 1/2) / (E base)`` estimates (half a
        failure, so that an hour without failures has a log); an hour's error is
        ``(K' + a^2 L^2) / (K' + a)^2``. Only a busy hour's bias counts (``L > 0``): it pulls
        the hour's rate down, and an under-estimate is what makes a chart page on nothing,
        while a quiet hour pulled up only makes it slower. The day type's level adds its
        variance. Dense history (hundreds of failures an hour) makes the error small; a
        sampled or short history makes it large.
        """
        phi, a = self.dispersion, self.prior_failures
        failures = np.asarray(self.hour_failures)
        exposure = np.asarray(self.hour_exposure)
        base = self.failures / self.events if self.events else 0.0
        ratio = np.zeros(24)
        seen = exposure > 0
        if base > 0:
            ratio[seen] = np.log((failures[seen] + 0.5) / (exposure[seen] * base))
        ratio = np.maximum(ratio, 0.0)  # a quiet hour is pulled up: an over-estimate
        k_hour = failures / phi
        hour = (k_hour + (a * ratio) ** 2) / (k_hour + a) ** 2
        k_day = np.asarray(self.day_failures) / phi
        day = k_day / (k_day + a) ** 2
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
        hour_exposure=tuple(float(x) for x in exposure_hour),
        hour_events_per_minute=tuple(float(x) for x in per_minute),
        day_failures=(float(k_day[0]), float(k_day[1])),
        prior_failures=prior_failures,
    )
