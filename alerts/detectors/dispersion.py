"""Overdispersion of failure counts: how far counts scatter beyond the binomial.

Two estimators, because the detectors temper by different quantities: the seasonal CUSUM divides
by one variance factor of its history (:func:`block_dispersion`, burst-aware over blocks of
minutes), while the release test needs a per-unit intraclass correlation that rescales to
buckets of any size, plus a day-level component (:func:`estimate_dispersion`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from statistics import NormalDist

import numpy as np
from numpy.typing import NDArray

from alerts.detectors.counts import check_counts

__all__ = ["Dispersion", "block_dispersion", "estimate_dispersion"]

_DISPERSION_BLOCKS = (1, 5, 15)
_MIN_BLOCKS = 40  # fewer blocks than this give a dispersion estimate too noisy to use
_PARAMETERS = 26  # 24 hour rates and 2 day levels, used up by the fit


def block_dispersion(
    index: NDArray[np.int64],
    n: NDArray[np.float64],
    k: NDArray[np.float64],
    expected: NDArray[np.float64],
) -> float:
    """Largest Pearson dispersion over blocks of 1, 5 and 15 consecutive minutes (at least 1).

    Bursts that span several minutes (a retry storm) barely move the per-minute statistic but
    dominate the 15-minute one, which is why several block lengths are tried. The statistic is
    corrected for the parameters the profile used up.
    """
    mean = n * expected
    var = n * expected * (1.0 - expected)
    best = 1.0
    for size in _DISPERSION_BLOCKS:
        block = index // size
        _, inverse = np.unique(block, return_inverse=True)
        observed = np.bincount(inverse, weights=k)
        means = np.bincount(inverse, weights=mean)
        variances = np.bincount(inverse, weights=var)
        used = variances > 0
        blocks = int(used.sum())
        if blocks < _MIN_BLOCKS:
            continue
        pearson = float(np.sum((observed[used] - means[used]) ** 2 / variances[used]))
        best = max(best, pearson / max(blocks - _PARAMETERS, blocks / 2))
    return best


@dataclass(frozen=True)
class Dispersion:
    """Variance components of a baseline's history (see :func:`estimate_dispersion`).

    ``icc`` is the intraclass correlation of the units of one minute to temper with (an upper
    bound); ``icc_estimate`` the point estimate (``None`` where the history cannot identify it:
    too few degrees of freedom, or minutes of about one unit, where it does not matter either);
    ``phi_estimate`` the history's Pearson dispersion; ``unit_size`` its minutes' size-weighted
    mean number of units; ``day_cv`` the coefficient of variation of the day-level rate used (at
    least the floor) and ``day_cv_estimate`` its estimate (``None`` with fewer than two full
    days); ``minutes`` and ``days`` what the estimates rest on.
    """

    icc: float
    icc_estimate: float | None
    phi_estimate: float | None
    unit_size: float
    day_cv: float
    day_cv_estimate: float | None
    minutes: int
    days: int

    def phi_for(self, units: int, units_squared: int) -> float:
        """Variance inflation of a sum of minutes holding ``units`` units, ``units_squared``
        the sum of the squared per-minute numbers: ``1 + icc (sum n^2 / sum n - 1)``."""
        if units <= 0:
            return 1.0
        return 1.0 + self.icc * max(0.0, units_squared / units - 1.0)

    @property
    def phi(self) -> float:
        """The inflation of a minute of the history's typical size."""
        return 1.0 + self.icc * max(0.0, self.unit_size - 1.0)

    @property
    def day_variance(self) -> float:
        """``sigma^2 = 2 c^2``: the variance of the difference of two days' relative levels."""
        return 2.0 * self.day_cv**2

    def log_odds_day_variance(self, rate: float) -> float:
        """:attr:`day_variance` on the log-odds scale the detector's effect lives on, at a base
        ``rate``: a relative change ``c`` of ``p`` moves its log odds by ``c / (1 - p)``, so
        ``2 (c / (1 - p))^2``. The plain reading is exact only for small ``p`` (failure rates);
        at ``p = 0.5`` (a release watch at its baseline's median) it is 4 times too small."""
        if not 0.0 <= rate < 1.0:
            raise ValueError("rate must be in [0, 1)")
        return self.day_variance / (1.0 - rate) ** 2

    def as_dict(self) -> dict[str, float | int | None]:
        def r(value: float | None) -> float | None:
            return None if value is None else round(value, 5)

        return {
            "icc": r(self.icc), "icc_estimate": r(self.icc_estimate),
            "phi_estimate": r(self.phi_estimate), "unit_size": r(self.unit_size),
            "day_cv": r(self.day_cv), "day_cv_estimate": r(self.day_cv_estimate),
            "history_minutes": self.minutes, "history_days": self.days,
        }  # fmt: skip


def estimate_dispersion(
    minutes: Mapping[datetime, tuple[int, int]],
    *,
    icc_prior: float = 0.01,
    min_df: int = 30,
    day_cv_floor: float = 0.05,
    full_day_hours: int = 20,
    confidence: float = 0.95,
) -> Dispersion:
    """Intraclass correlation within a minute and day-level variation of a baseline's history.

    ``minutes`` maps minute starts (UTC) to ``(units, failures)``. The Pearson statistic of the
    per-minute failure counts around their hour's pooled rate, divided by its degrees of freedom
    (a daily cycle therefore does not count as overdispersion), estimates the dispersion
    ``phi = 1 + icc (m - 1)`` of minutes of size-weighted mean size ``m``; its one-sided
    ``confidence`` upper bound (Wilson-Hilferty quantile of the chi-square) gives the ``icc``
    used (with thousands of minutes of history, as the monitor reads, the bound is within a few
    percent of the estimate). With fewer than ``min_df`` degrees of freedom, or minutes of fewer
    than two units on average, ``icc_prior`` is used. The day-level coefficient of variation
    comes from days with traffic in at least ``full_day_hours`` hours: the variance of their
    rates beyond what the within-day variance explains, relative to the mean rate, shrunk to
    zero James-Stein style (the within-day part is subtracted at its one-sided ``confidence``
    upper quantile, a chi-square on the days' degrees of freedom), so that a few days of sparse
    traffic, whose rates scatter by chance, do not read as a day effect; where the days hold many
    units that quantile is negligible. It is never below ``day_cv_floor``, since a handful of
    days cannot rule out a day effect.

    >>> d = estimate_dispersion({})
    >>> d.icc, d.day_cv, d.phi_for(200, 200 * 200)
    (0.01, 0.05, 2.99)
    """
    by_hour: dict[datetime, list[tuple[int, int]]] = {}
    for minute, (n, k) in minutes.items():
        check_counts(n, k)
        if n > 0:
            hour = minute.replace(minute=0, second=0, microsecond=0)
            by_hour.setdefault(hour, []).append((n, k))
    chi2, df, sum_n, sum_n2 = 0.0, 0, 0, 0
    for cells in by_hour.values():
        n_h = sum(n for n, _ in cells)
        p_h = sum(k for _, k in cells) / n_h
        if len(cells) < 2 or p_h <= 0.0 or p_h >= 1.0:
            continue
        chi2 += sum((k - n * p_h) ** 2 / (n * p_h * (1.0 - p_h)) for n, k in cells)
        df += len(cells) - 1
        sum_n += n_h
        sum_n2 += sum(n * n for n, _ in cells)
    size = sum_n2 / sum_n if sum_n else 1.0
    phi_estimate = chi2 / df if df else None
    icc, icc_estimate = icc_prior, None
    z = NormalDist().inv_cdf(confidence)
    if df >= min_df and size >= 2.0 and phi_estimate is not None:
        icc_estimate = min(1.0, max(0.0, (phi_estimate - 1.0) / (size - 1.0)))
        # Lower chi-square quantile: chi2/quantile is the upper bound of the dispersion.
        q = df * (1.0 - 2.0 / (9.0 * df) - z * math.sqrt(2.0 / (9.0 * df))) ** 3
        icc = min(1.0, max(0.0, (chi2 / q - 1.0) / (size - 1.0)))
    phi_history = 1.0 + icc * max(0.0, size - 1.0)
    days: dict[date, list[int]] = {}
    day_hours: dict[date, set[int]] = {}
    for hour, cells in by_hour.items():
        totals = days.setdefault(hour.date(), [0, 0])
        totals[0] += sum(n for n, _ in cells)
        totals[1] += sum(k for _, k in cells)
        day_hours.setdefault(hour.date(), set()).add(hour.hour)
    full = [(n, k) for d, (n, k) in days.items() if len(day_hours[d]) >= full_day_hours]
    cv_estimate: float | None = None
    if len(full) >= 2:
        rates = [k / n for n, k in full]
        mean = sum(k for _, k in full) / sum(n for n, _ in full)
        if 0.0 < mean < 1.0:
            spread = sum((r - mean) ** 2 for r in rates) / (len(rates) - 1)
            noise = sum(phi_history * mean * (1.0 - mean) / n for n, _ in full) / len(full)
            cv_estimate = math.sqrt(max(0.0, spread - noise * _upper_quantile(len(full) - 1, z)))
            cv_estimate /= mean
    return Dispersion(
        icc=icc, icc_estimate=icc_estimate, phi_estimate=phi_estimate, unit_size=size,
        day_cv=max(day_cv_floor, cv_estimate or 0.0), day_cv_estimate=cv_estimate,
        minutes=sum(len(c) for c in by_hour.values()), days=len(full),
    )  # fmt: skip


def _upper_quantile(df: int, z: float) -> float:
    """Upper quantile of chi-square / df at standard-normal ``z`` (Wilson-Hilferty)."""
    return max(1.0, (1.0 - 2.0 / (9.0 * df) + z * math.sqrt(2.0 / (9.0 * df))) ** 3)
