"""The seasonal CUSUM widens its dispersion by the error of its learned hourly profile: the
fewer failures behind an hour (a sampled or short history), the wider; dense history barely."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from alerts import SeasonalCusum, fit_seasonal_profile
from alerts.detectors.calendar import hour_and_day_type

MONDAY = datetime(2026, 11, 2, tzinfo=UTC)
PEAK, TROUGH = 15, 3  # the cycle's busiest hour (3 %) and quietest (1 %)

Rows = list[tuple[datetime, int, int]]


def _cycle_day(rng: np.random.Generator, days: int, per_minute: float = 200.0) -> Rows:
    """Binomial minutes of a 1 %-3 % daily cycle (1 % at 03:00, 3 % at 15:00)."""
    minutes = np.arange(days * 1440)
    hours = (minutes % 1440) / 60.0
    rate = 0.02 - 0.01 * np.cos(2 * np.pi * (hours - 3) / 24)
    n = rng.poisson(per_minute, len(minutes))
    k = rng.binomial(n, rate)
    return [(MONDAY + timedelta(minutes=int(i)), int(a), int(b))
            for i, a, b in zip(minutes, n, k, strict=True)]  # fmt: skip


def _thin(rows: Rows, rate: float, rng: np.random.Generator) -> Rows:
    """Score each event with probability ``rate``, as the worker's sample does."""
    n = np.array([r[1] for r in rows])
    k = np.array([r[2] for r in rows])
    kept = rng.binomial(k, rate)
    scored = kept + rng.binomial(n - k, rate)
    return [(r[0], int(a), int(b)) for r, a, b in zip(rows, scored, kept, strict=True)]


def _widening(rows: Rows) -> tuple[float, float]:
    """At the peak hour: what the chart divides by over the history's dispersion, and the
    variance of the profile's log rate."""
    det = SeasonalCusum()
    det.learn(rows)
    profile = det.profile
    assert profile is not None
    state = det.update(0, 0, rows[-1][0].replace(hour=PEAK) + timedelta(days=1))
    assert state.dispersion is not None
    return state.dispersion / profile.dispersion, float(profile.log_rate_variance()[PEAK, 0])


def test_widening_grows_as_the_history_holds_fewer_failures() -> None:
    rng = np.random.default_rng(11)
    dense = _cycle_day(rng, 2)
    widening, errors = [], []
    for rate in (1.0, 0.5, 0.25, 0.05):
        w, e = _widening(_thin(dense, rate, rng))
        widening.append(w)
        errors.append(e)
    # The log rate's variance is about 1 / failures of the hour (the prior's 20 pseudo-failures
    # bound it at a 5 % sample, where the hour holds some 30 failures).
    assert errors == sorted(errors) and errors[2] / errors[0] > 3
    # Sampled, the chart gathers its evidence over the whole hour and E_w / K' tends to
    # 1 / days of history; dense, an alarm's evidence spans half an hour: less widening.
    assert 1.15 < widening[0] < widening[1] and 1.4 < widening[2] < 1.6
    # At a 5 % sample the prior, not the hour, sets the rate and bounds its error (1 / a): the
    # widening stops growing.
    assert 1.15 < widening[3] < widening[2]
    # A week of dense history rests on 3.5 times the failures: hardly any widening.
    week = _widening(_cycle_day(rng, 7))[0]
    assert week < 1.15 and week < widening[0]


def test_the_profiles_error_is_one_over_its_effective_failures() -> None:
    """An hour's log rate is known to about ``1 / (K' + a)``: its effective failures plus the
    prior's pseudo-failures; a day type not in the history adds nothing."""
    rows = _cycle_day(np.random.default_rng(12), 2, per_minute=4.0)
    at = np.array([int(a.timestamp() // 60) for a, _, _ in rows])
    hour_day = np.array([hour_and_day_type(a) for a, _, _ in rows])
    n = np.array([r[1] for r in rows])
    k = np.array([r[2] for r in rows])
    profile = fit_seasonal_profile(at, hour_day[:, 0], hour_day[:, 1], n, k)
    assert profile.day_types_seen == (True, False)
    phi, a = profile.dispersion, profile.prior_failures
    variance = profile.log_rate_variance()
    for hour in (TROUGH, PEAK):
        effective = profile.hour_failures[hour] / phi
        assert variance[hour, 1] == pytest.approx(1.0 / (effective + a))  # no weekend: nothing
        day = 1.0 / (profile.failures / phi + a)
        assert variance[hour, 0] == pytest.approx(1.0 / (effective + a) + day)
    assert variance[PEAK, 0] < variance[TROUGH, 0]  # three times the failures at 3 % than at 1 %
