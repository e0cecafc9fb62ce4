"""The seasonal profile and the quasi-likelihood CUSUM on simulated per-minute counts: the daily
cycle and the weekend are learned, thin history falls back, overdispersion is measured, a real
step is paged, and nothing is tested before there is enough history."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from alerts import Detector, SeasonalCusum, fit_seasonal_profile
from alerts.detectors.calendar import hour_and_day_type

MONDAY = datetime(2026, 11, 2, tzinfo=UTC)
MIN = timedelta(minutes=1)


def _cycle(hour: float) -> float:
    return 0.02 - 0.01 * math.cos(2 * math.pi * (hour - 3) / 24)


def _counts(
    rng: np.random.Generator,
    start: datetime,
    minutes: int,
    *,
    per_minute: float = 200.0,
    rate: float | None = None,
    icc: float = 0.0,
    weekend_factor: float = 1.0,
    step_at: int | None = None,
    step: float = 0.0,
) -> list[tuple[datetime, int, int]]:
    rows = []
    for i in range(minutes):
        at = start + i * MIN
        p = _cycle(at.hour + at.minute / 60) if rate is None else rate
        if at.weekday() >= 5:
            p *= weekend_factor
        if step_at is not None and i >= step_at:
            p += step
        if icc > 0:
            scale = (1 - icc) / icc
            p = rng.beta(p * scale, (1 - p) * scale)
        n = int(rng.poisson(per_minute))
        rows.append((at, n, int(rng.binomial(n, p))))
    return rows


def _arrays(rows: list[tuple[datetime, int, int]]) -> tuple[np.ndarray, ...]:
    index = np.array([int(a.timestamp() // 60) for a, _, _ in rows])
    hours = np.array([hour_and_day_type(a)[0] for a, _, _ in rows])
    days = np.array([hour_and_day_type(a)[1] for a, _, _ in rows])
    return index, hours, days, np.array([n for _, n, _ in rows]), np.array([k for _, _, k in rows])


def test_profile_learns_the_daily_cycle_and_the_weekend() -> None:
    rng = np.random.default_rng(1)
    week = _counts(rng, MONDAY, 7 * 1440, weekend_factor=1.5)
    profile = fit_seasonal_profile(*_arrays(week))
    assert profile.day_types_seen == (True, True)
    for hour in (3, 9, 15, 21):
        assert profile.expected(hour, 0) == pytest.approx(_cycle(hour + 0.5), rel=0.1)
    assert profile.day_level[1] / profile.day_level[0] == pytest.approx(1.5, rel=0.1)
    assert 0.9 < profile.dispersion < 1.3  # binomial counts: no inflation


def test_thin_history_falls_back_to_the_pooled_rate() -> None:
    rng = np.random.default_rng(2)
    # Weekdays only, and only a handful of failures in the night hours.
    rows = _counts(rng, MONDAY, 1440, per_minute=2.0, rate=0.02)
    profile = fit_seasonal_profile(*_arrays(rows))
    assert profile.day_types_seen == (True, False)
    # No weekend seen: the weekend keeps the weekday level (shrunk to the prior, exactly 1).
    assert profile.day_level[1] == pytest.approx(1.0)
    # With ~2-3 failures an hour, every hour stays near the pooled 2 % instead of 0 or 3x.
    rates = [profile.expected(h, 0) for h in range(24)]
    assert min(rates) > 0.01 and max(rates) < 0.03
    with pytest.raises(ValueError):
        fit_seasonal_profile(*_arrays([(MONDAY, 10, 0)]))


def test_dispersion_grows_with_the_intraclass_correlation() -> None:
    rng = np.random.default_rng(3)
    estimates = []
    for icc in (0.0, 0.01, 0.03):
        rows = _counts(rng, MONDAY, 2 * 1440, rate=0.02, icc=icc)
        estimates.append(fit_seasonal_profile(*_arrays(rows)).dispersion)
    # Beta-binomial variance inflation is 1 + (n - 1) * icc: about 1, 3 and 7 at 200 a minute.
    assert estimates[0] < 1.3
    assert 2.0 < estimates[1] < 4.5
    assert 5.0 < estimates[2] < 10.0


def test_warming_up_until_a_day_and_enough_failures() -> None:
    rng = np.random.default_rng(4)
    det = SeasonalCusum(min_failures=30)
    rows = _counts(rng, MONDAY, 1500, per_minute=0.5, rate=0.02)  # ~14 failures a day
    states = [det.update(n, k, at) for at, n, k in rows]
    assert all(s.warming_up and not s.fired for s in states)
    assert det.detection("x", MONDAY) is None
    busy = SeasonalCusum(min_failures=30)
    states = [busy.update(n, k, at) for at, n, k in _counts(rng, MONDAY, 1500, rate=0.02)]
    assert states[1438].warming_up and not states[1441].warming_up
    assert states[-1].threshold == max(math.log(43_200), busy.bootstrap_threshold)


@pytest.mark.parametrize(
    ("icc", "step", "max_delay", "locate_within"), [(0.0, 0.02, 30, 20), (0.03, 0.04, 60, None)]
)
def test_daily_cycle_is_quiet_and_a_step_is_paged(
    icc: float, step: float, max_delay: int, locate_within: int | None
) -> None:
    """Against its learned profile the CUSUM stays quiet through a day of a 1 %-3 % cycle (also
    with beta-binomial noise, where it is slower: it discounts the evidence by the dispersion)
    and pages a step within the hour, locating it on binomial traffic."""
    change = 14 * 60
    quiet_days = fired_before = 0
    delays = []
    for seed in range(4):
        rng = np.random.default_rng([5, seed])
        history = _counts(rng, MONDAY, 2 * 1440, icc=icc)
        day = _counts(rng, MONDAY + 2 * 1440 * MIN, 1440, icc=icc, step_at=change, step=step)
        det = SeasonalCusum()
        det.learn(history)
        assert det.profile is not None and det.profile.failures > 1000
        for i, (at, n, k) in enumerate(day):
            state = det.update(n, k, at)
            if state.fired:
                fired_before += i < change
                if i >= change:
                    delays.append(i + 1 - change)
                    assert state.change_at is not None
                    if locate_within is not None:
                        truth = MONDAY + (2 * 1440 + change) * MIN
                        assert abs(state.change_at - truth) <= locate_within * MIN
                    found = det.detection("img/v3", at + MIN)
                    assert found is not None and found.effect is not None
                    assert 0.4 * step < found.effect < 2.0 * step
                break
        quiet_days += not fired_before
    assert fired_before == 0 and quiet_days == 4
    assert len(delays) == 4 and max(delays) <= max_delay


def test_ignoring_the_dispersion_would_page_on_overdispersed_noise() -> None:
    """The same detector with its dispersion forced to 1 (a plain Bernoulli CUSUM against the
    profile) alarms on a day of beta-binomial noise that the quasi-likelihood version passes."""
    rng = np.random.default_rng(6)
    history = _counts(rng, MONDAY, 2 * 1440, rate=0.02, icc=0.03)
    day = _counts(rng, MONDAY + 2 * 1440 * MIN, 1440, rate=0.02, icc=0.03)
    fair, naive = SeasonalCusum(), SeasonalCusum()
    fair.learn(history)
    naive.learn(history)
    assert fair.profile is not None and fair.profile.dispersion > 4
    naive._coef = naive._coef * fair.profile.dispersion  # undo the division by phi
    assert sum(fair.update(n, k, at).fired for at, n, k in day) == 0
    assert sum(naive.update(n, k, at).fired for at, n, k in day) >= 3


def test_bursty_history_raises_the_bootstrap_threshold() -> None:
    """Retry storms (15-40 failures in one minute, two an hour) are heavier-tailed than a
    variance factor says; the block bootstrap of the history's own increments sees them and
    lifts the threshold above the Shiryaev-Roberts bound, which alone suffices for binomial
    traffic. (A bursty history's hour rates are as bursty, so the chart also widens its
    dispersion by their error; in units of ``llr / phi`` the alarm level is both together.)"""
    bursty = []
    for seed in range(5):
        rng = np.random.default_rng([9, seed])
        calm, stormy = SeasonalCusum(), SeasonalCusum()
        calm.learn(_counts(rng, MONDAY, 2 * 1440, rate=0.02))
        rows = _counts(rng, MONDAY, 2 * 1440, rate=0.02)
        for i in np.flatnonzero(rng.random(len(rows)) < 2.0 / 60):
            at, n, k = rows[i]
            extra = int(rng.integers(15, 41))
            rows[i] = (at, n + extra, k + extra)
        stormy.learn(rows)
        assert calm.threshold == calm.bound_threshold == pytest.approx(math.log(43_200))
        assert stormy.bootstrap_threshold > calm.bootstrap_threshold
        assert stormy.profile is not None
        state = stormy.update(0, 0, MONDAY + 2 * 1440 * MIN)
        assert state.dispersion is not None
        bursty.append(stormy.threshold * state.dispersion / stormy.profile.dispersion)
    assert float(np.mean(bursty)) > math.log(43_200) + 1.0


def test_alarmed_minutes_are_not_learned_as_normal() -> None:
    rng = np.random.default_rng(7)
    det = SeasonalCusum(refit_minutes=60)
    det.learn(_counts(rng, MONDAY, 1440, rate=0.02))
    # A lasting +3 point degradation keeps alarming through hourly refits: it is never absorbed.
    day = _counts(rng, MONDAY + 1440 * MIN, 6 * 60, rate=0.05)
    alarms = sum(det.update(n, k, at).fired for at, n, k in day)
    assert alarms >= 6
    assert det.profile is not None and det.profile.expected(12, 0) < 0.03


def test_bad_input_and_protocol() -> None:
    det = SeasonalCusum()
    assert isinstance(det, Detector)
    with pytest.raises(ValueError):
        det.update(5, 6, MONDAY)
    with pytest.raises(ValueError):
        det.update(5, 1, datetime(2026, 11, 2))  # naive timestamps are refused
    assert det.state.minute == 0
    with pytest.raises(ValueError):
        SeasonalCusum(delta=0.0)
    with pytest.raises(ValueError):
        SeasonalCusum(min_history_minutes=2000, history_minutes=1440)
    rows = _counts(np.random.default_rng(8), MONDAY, 1600, rate=0.02)
    first = [det.update(n, k, at) for at, n, k in rows][-1]
    det.reset()
    assert [det.update(n, k, at) for at, n, k in rows][-1] == first
