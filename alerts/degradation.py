"""Slow-degradation detector: a Bernoulli CUSUM on one model version's failure counts.

Page's CUSUM accumulates the log-likelihood ratio of "failure rate ``p1``" against "failure rate
``p0``" and resets at zero, ``S = max(0, S + llr)``; it alarms when ``S >= h``. Among detectors with
the same false-alarm rate it minimises the worst-case delay to detect a shift from ``p0`` to ``p1``
(Lorden 1971, Moustakides 1986), which makes it the standard tool for a rate that creeps up within
one version (a data dependency rots, a prompt template changes upstream).

A monitor runs forever, so the false-alarm budget is a rate, not a probability: the *in-control
average run length* ``ARL0`` (minutes between false alarms when nothing changed).
:func:`calibrate_cusum_threshold` finds the ``h`` that gives a target ``ARL0`` by simulation.

Calibration by simulation
-------------------------
The CUSUM is a renewal process: it restarts at zero after each excursion, so
``ARL0(h) = E0[cycle length] / P0(an excursion reaches h before returning to 0)`` (Wald's
identity over the i.i.d. excursions). The numerator is a mean of short excursions and is estimated
directly under ``p0``. The denominator is a rare event (about ``1/ARL0``); it is estimated by
importance sampling: excursions are simulated under ``p1``, where reaching ``h`` is common, and each
one that does is weighted by ``exp(-S)`` at the crossing, which is exactly the likelihood ratio
``dP0/dP1`` of the path because ``S`` *is* that log-likelihood ratio (Siegmund 1975). Both
estimates are computed for a fine grid of thresholds from one vectorised batch of excursions, and
the smallest threshold whose estimated ``ARL0`` reaches the target is returned. Because
``ARL0(h) >= exp(h)`` for a likelihood-ratio CUSUM (Lorden), the grid never needs to go beyond
``log(arl0)``.

``p0`` is estimated from a warm-up window. Treating the estimate as the truth makes the real
``ARL0`` much shorter than the target (Jones, Champ and Rigdon 2004: an underestimated ``p0`` makes
the sum drift upwards), so :class:`BernoulliCusum` calibrates for a true rate at an upper
confidence bound of the estimate, in the spirit of the guaranteed conditional performance of
Gandy and Kvaløy (2013). The same importance sampler handles any true rate below the chart's
crossover: the tilt ``theta`` with ``E[exp(theta * llr)] = 1`` replaces ``theta = 1``, and the
weight becomes ``exp(-theta * S)``. Traffic per minute is taken as the warm-up mean; if it changes
by a large factor, recalibrate (``reset``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import NormalDist

import numpy as np
from numpy.typing import NDArray

from alerts.base import Detection
from alerts.seasonal import SeasonalProfile, fit_seasonal_profile, hour_and_day_type

__all__ = [
    "BernoulliCusum",
    "CusumState",
    "SeasonalCusum",
    "SeasonalCusumState",
    "bootstrap_cusum_threshold",
    "calibrate_cusum_threshold",
    "crossover_rate",
]

_GRID_LEVELS = 1024


def calibrate_cusum_threshold(
    p0: float,
    p1: float,
    arl0: float,
    seed: int,
    *,
    events_per_step: int = 1,
    true_rate: float | None = None,
    n_excursions: int = 20_000,
) -> float:
    """Threshold ``h`` for a Bernoulli CUSUM of ``p1`` vs ``p0`` with in-control ARL ``arl0``.

    Each step observes ``events_per_step`` events (one minute of traffic), so ``arl0`` is in
    steps. The ARL is computed for failures at ``true_rate`` (default ``p0``): pass a rate above
    ``p0`` to keep the target even if ``p0`` was underestimated. The result is random only through
    ``seed``; ``n_excursions`` excursions are simulated under each of two measures (the relative
    error of the estimated ``ARL0`` is a small multiple of ``1/sqrt(n_excursions)``).

    >>> h = calibrate_cusum_threshold(0.02, 0.03, arl0=1_000, seed=0, events_per_step=200)
    >>> 3.0 < h < math.log(1_000)
    True
    """
    if not 0.0 < p0 < p1 < 1.0:
        raise ValueError("need 0 < p0 < p1 < 1")
    if not arl0 > 1.0:
        raise ValueError("arl0 must exceed one step")
    if events_per_step < 1 or n_excursions < 100:
        raise ValueError("events_per_step must be >= 1 and n_excursions >= 100")
    rate = p0 if true_rate is None else true_rate
    if not 0.0 < rate < crossover_rate(p0, p1):
        raise ValueError(
            f"true_rate must be in (0, {crossover_rate(p0, p1):.4g}): at or above it the CUSUM "
            "drifts upwards and alarms within a few excursions whatever the threshold"
        )
    fail, ok = _llr_per_event(p0, p1)
    theta = _tilt(rate, fail, ok)
    tilted = rate * math.exp(theta * fail)  # failure rate under the exponentially tilted measure
    llr = _llr_table(p0, p1, events_per_step)
    # exp(theta * S) is a martingale under `rate`, so ARL0(h) >= exp(theta * h) (Lorden):
    # the threshold never needs to exceed log(arl0) / theta.
    levels = np.linspace(0.0, math.log(arl0) / theta, _GRID_LEVELS + 1)[1:]
    rng = np.random.default_rng(seed)
    length_sum, _, _ = _excursions(llr, rate, events_per_step, levels, n_excursions, theta, rng)
    _, reached, weight_sum = _excursions(
        llr, tilted, events_per_step, levels, n_excursions, theta, rng
    )
    mean_length = length_sum / n_excursions
    p_alarm = weight_sum / n_excursions
    with np.errstate(divide="ignore"):
        arl = np.where(p_alarm > 0, mean_length / p_alarm, np.inf)
    # Estimates are noisy only where few excursions reached the level; demand a few dozen. If no
    # level qualifies, the top one is safe by the bound above.
    enough = (arl >= arl0) & (reached >= 30)
    index = int(np.argmax(enough)) if enough.any() else _GRID_LEVELS - 1
    return float(levels[index])


def crossover_rate(p0: float, p1: float) -> float:
    """The failure rate at which the CUSUM's expected increment is zero (between p0 and p1).

    Below it the sum drifts down and false alarms are rare events; above it the chart alarms
    quickly. A shift to ``p1`` is detected because ``p1`` lies above it.
    """
    fail, ok = _llr_per_event(p0, p1)
    return -ok / (fail - ok)


@dataclass(frozen=True)
class CusumState:
    """Snapshot after one update.

    ``statistic`` is the CUSUM sum ``S`` and ``threshold`` the calibrated ``h`` (``None`` during
    warm-up). ``fired`` is true on the update where ``S`` reached ``h`` (the sum then restarts at
    zero, so a persisting shift fires again). ``change_minute`` is the CUSUM's estimate of when the
    current excursion began (its first minute with ``S > 0``) and ``rate_since_change`` the
    failure rate observed since then.
    """

    minute: int
    warming_up: bool
    p0: float | None
    p1: float | None
    statistic: float
    threshold: float | None
    fired: bool
    alarms: int
    change_minute: int | None
    rate_since_change: float | None


class BernoulliCusum:
    """Page's CUSUM on per-minute failure counts, with ``p0`` learned from a warm-up window.

    Call :meth:`update` once per minute with that minute's ``n`` events and ``k`` failures. For the
    first ``warmup_minutes`` updates it only estimates ``p0`` and the traffic per minute; it then
    sets ``p1 = p0 + delta`` and calibrates ``h`` to the target ``arl0_minutes`` (see the module
    docstring). Pass ``p0`` to skip the warm-up, and ``threshold`` to skip the calibration.

    ``arl_guarantee`` protects the target from the warm-up's estimation error: ``h`` is calibrated
    for a true rate at that upper confidence level of the estimate (0.9: the target holds unless
    ``p0`` was underestimated by more than a one-in-ten chance allows). ``None`` calibrates for
    the estimate itself, which makes false alarms several times more frequent than the target
    after a one-hour warm-up.

    >>> det = BernoulliCusum(delta=0.01, arl0_minutes=10_000, p0=0.02, events_per_minute=200)
    >>> fired = [det.update(200, 12).fired for _ in range(20)]
    >>> any(fired)
    True
    """

    name = "degradation"

    def __init__(
        self,
        delta: float = 0.01,
        arl0_minutes: float = 43_200.0,
        warmup_minutes: int = 60,
        *,
        p0: float | None = None,
        events_per_minute: int | None = None,
        threshold: float | None = None,
        arl_guarantee: float | None = 0.9,
        seed: int = 0,
    ) -> None:
        if not 0.0 < delta < 1.0:
            raise ValueError("delta must be in (0, 1)")
        if arl_guarantee is not None and not 0.5 <= arl_guarantee < 1.0:
            raise ValueError("arl_guarantee must be in [0.5, 1)")
        if warmup_minutes < 1:
            raise ValueError("warmup_minutes must be >= 1")
        if p0 is not None and not 0.0 < p0 < 1.0 - delta:
            raise ValueError("p0 must be in (0, 1 - delta)")
        if p0 is not None and threshold is None and events_per_minute is None:
            raise ValueError("with p0 and no threshold, give events_per_minute to calibrate for")
        self.delta = delta
        self.arl0_minutes = arl0_minutes
        self.warmup_minutes = warmup_minutes
        self.arl_guarantee = arl_guarantee
        self.seed = seed
        self._given_p0 = p0
        self._given_rate = events_per_minute
        self._given_threshold = threshold
        self.reset()

    def reset(self) -> None:
        self._minute = 0
        self._warm_n = 0
        self._warm_k = 0
        self._p0: float | None = None
        self._p1: float | None = None
        self._h: float | None = None
        self._s = 0.0
        self._alarms = 0
        self._fired = False
        self._excursion_start: int | None = None
        self._excursion_n = 0
        self._excursion_k = 0
        if self._given_p0 is not None:
            self._start(self._given_p0, self._given_rate or 1, self._given_p0)
        self._state = self._snapshot()

    @property
    def state(self) -> CusumState:
        return self._state

    def update(self, n: int, k: int) -> CusumState:
        """Consume one minute of counts (``n`` events, ``k`` failures) and return the new state."""
        if n < 0 or k < 0 or k > n:
            raise ValueError(f"counts must satisfy 0 <= k <= n, got n={n}, k={k}")
        self._minute += 1
        self._fired = False
        if self._p0 is None:
            self._warm_n += n
            self._warm_k += k
            if self._minute >= self.warmup_minutes and self._warm_n > 0:
                # Jeffreys-style estimate: never exactly zero, so log(p1/p0) stays finite.
                p0 = min((self._warm_k + 0.5) / (self._warm_n + 1.0), 1.0 - 2.0 * self.delta)
                per_minute = max(1, round(self._warm_n / self._minute))
                self._start(p0, self._given_rate or per_minute, self._guarded_rate(p0))
        else:
            self._step(n, k)
        self._state = self._snapshot()
        return self._state

    def detection(self, key: str, at: datetime) -> Detection | None:
        if not self._fired:
            return None
        s = self._state
        assert s.threshold is not None and s.p0 is not None  # fired implies calibrated
        effect = None if s.rate_since_change is None else s.rate_since_change - s.p0
        return Detection(
            detector=self.name,
            key=key,
            opened_at=at,
            statistic=s.statistic,
            threshold=s.threshold,
            effect=effect,
            details={
                "p0": s.p0,
                "p1": s.p1,
                "arl0_minutes": self.arl0_minutes,
                "change_minute": s.change_minute,
                "rate_since_change": s.rate_since_change,
                "alarms": s.alarms,
            },
        )

    def _guarded_rate(self, p0: float) -> float:
        """Upper confidence bound of the warm-up estimate, kept below the chart's crossover."""
        if self.arl_guarantee is None:
            return p0
        z = NormalDist().inv_cdf(self.arl_guarantee)
        upper = p0 + z * math.sqrt(p0 * (1.0 - p0) / self._warm_n)
        # Past the crossover no threshold reaches the target; stop halfway (a very short warm-up).
        return min(upper, p0 + 0.5 * (crossover_rate(p0, p0 + self.delta) - p0))

    def _start(self, p0: float, events_per_minute: int, true_rate: float) -> None:
        self._p0 = p0
        self._p1 = p0 + self.delta
        self._h = self._given_threshold
        if self._h is None:
            self._h = calibrate_cusum_threshold(
                p0,
                self._p1,
                self.arl0_minutes,
                self.seed,
                events_per_step=events_per_minute,
                true_rate=true_rate,
            )
        log_fail = math.log(self._p1 / p0)
        log_pass = math.log((1.0 - self._p1) / (1.0 - p0))
        self._llr_coef = (log_fail - log_pass, log_pass)  # llr = k * c0 + n * c1

    def _step(self, n: int, k: int) -> None:
        assert self._h is not None
        if self._s == 0.0:
            self._excursion_start = self._minute
            self._excursion_n = 0
            self._excursion_k = 0
        self._excursion_n += n
        self._excursion_k += k
        self._s = max(0.0, self._s + k * self._llr_coef[0] + n * self._llr_coef[1])
        if self._s >= self._h:
            self._fired = True
            self._alarms += 1

    def _snapshot(self) -> CusumState:
        in_excursion = self._s > 0.0 or self._fired
        rate = (
            self._excursion_k / self._excursion_n
            if in_excursion and self._excursion_n > 0
            else None
        )
        state = CusumState(
            minute=self._minute,
            warming_up=self._p0 is None,
            p0=self._p0,
            p1=self._p1,
            statistic=self._s,
            threshold=self._h,
            fired=self._fired,
            alarms=self._alarms,
            change_minute=self._excursion_start if in_excursion else None,
            rate_since_change=rate,
        )
        if self._fired:
            self._s = 0.0  # restart after an alarm, so the next snapshot starts a new excursion
        return state


def _llr_per_event(p0: float, p1: float) -> tuple[float, float]:
    """Log-likelihood ratio of one failure and of one success, ``p1`` against ``p0``."""
    return math.log(p1 / p0), math.log((1.0 - p1) / (1.0 - p0))


def _llr_table(p0: float, p1: float, n: int) -> NDArray[np.float64]:
    """Log-likelihood ratio of one step with ``k = 0..n`` failures among ``n`` events."""
    fail, ok = _llr_per_event(p0, p1)
    k = np.arange(n + 1, dtype=np.float64)
    table: NDArray[np.float64] = k * fail + (n - k) * ok
    return table


def _tilt(rate: float, fail: float, ok: float) -> float:
    """The ``theta > 0`` with ``E[exp(theta * llr)] = 1`` for one event failing at ``rate``.

    Under the measure tilted by ``exp(theta * llr)`` the CUSUM drifts upwards, and the likelihood
    ratio back to ``rate`` along a path is exactly ``exp(-theta * S)``; at ``rate = p0`` the root
    is ``theta = 1`` and the tilted measure is ``p1`` itself. The function is convex in ``theta``
    with value 0 at 0 and a negative slope there, so bisection on a doubling bracket finds it.
    """

    def excess(theta: float) -> float:
        return rate * math.exp(theta * fail) + (1.0 - rate) * math.exp(theta * ok) - 1.0

    high = 1.0
    while excess(high) < 0.0:
        high *= 2.0
    low = 0.0
    for _ in range(100):
        mid = 0.5 * (low + high)
        if excess(mid) < 0.0:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


def _excursions(
    llr: NDArray[np.float64],
    p: float,
    n: int,
    levels: NDArray[np.float64],
    count: int,
    theta: float,
    rng: np.random.Generator,
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.float64]]:
    """Simulate ``count`` CUSUM excursions from 0 under failure rate ``p``, for every level.

    An excursion ends when the sum falls to 0 or below or reaches the top level. For each level
    ``h`` it returns: the total length of the excursions *as if stopped at* ``h`` (the crossing
    step for those that reached ``h``, the full length for the others), how many reached ``h``,
    and the sum over those of ``exp(-theta * S)`` at the crossing (the importance weight back to
    the in-control measure, when ``p`` is the tilted rate).
    Crossings are recorded in difference arrays, so the cost does not grow with the grid.
    """
    size = len(levels) + 1
    cross_steps = np.zeros(size)
    cross_count = np.zeros(size)
    cross_weight = np.zeros(size)
    tail_lengths = np.zeros(size)
    top = levels[-1]
    s = np.zeros(count)
    peak = np.zeros(count)
    active = np.arange(count)
    step = 0
    while active.size:
        step += 1
        s = s + llr[rng.binomial(n, p, size=active.size)]
        up = s > peak
        if up.any():
            lo = np.searchsorted(levels, peak[up], side="right")
            hi = np.searchsorted(levels, s[up], side="right")
            weight = np.exp(-theta * s[up])
            for target, values in ((cross_steps, float(step)), (cross_count, 1.0)):
                target += np.bincount(lo, minlength=size) * values
                target -= np.bincount(hi, minlength=size) * values
            cross_weight += np.bincount(lo, weights=weight, minlength=size)
            cross_weight -= np.bincount(hi, weights=weight, minlength=size)
            peak[up] = s[up]
        ended_low = s <= 0.0
        if ended_low.any():
            # A failed excursion counts its full length at every level it did not reach.
            first_missed = np.searchsorted(levels, peak[ended_low], side="right")
            tail_lengths += np.bincount(first_missed, minlength=size) * float(step)
        keep = ~(ended_low | (s >= top))
        s, peak, active = s[keep], peak[keep], active[keep]
    lengths = np.cumsum(cross_steps)[:-1] + np.cumsum(tail_lengths)[:-1]
    reached = np.cumsum(cross_count)[:-1].astype(np.int64)
    weights = np.cumsum(cross_weight)[:-1]
    return lengths, reached, weights


@dataclass(frozen=True)
class SeasonalCusumState:
    """Snapshot of a :class:`SeasonalCusum` after one update.

    ``expected`` is this minute's in-control failure rate from the seasonal profile (``None``
    while warming up), ``dispersion`` the variance inflation the log-likelihood ratio is divided
    by, ``statistic`` the CUSUM sum and ``threshold`` its alarm level ``h``. During an
    excursion (``statistic > 0``) ``change_minute`` (update number) and ``change_at`` say where
    it began; on an alarm they are the most likely start of a step within it, and
    ``rate_since_change`` / ``expected_since_change`` compare what was observed since then with
    what the profile expected.
    """

    minute: int
    at: datetime | None
    warming_up: bool
    expected: float | None
    dispersion: float | None
    statistic: float
    threshold: float
    fired: bool
    alarms: int
    change_minute: int | None
    change_at: datetime | None
    rate_since_change: float | None
    expected_since_change: float | None
    history_failures: int


class SeasonalCusum:
    """Quasi-likelihood CUSUM against a seasonal expectation (hour of day × weekday/weekend).

    The in-control rate of each minute is ``p0(t)`` from a :class:`~alerts.seasonal.SeasonalProfile`
    learned on the series' own history; the chart accumulates the log-likelihood ratio of
    ``p0(t) + delta`` against ``p0(t)``, divided by the history's dispersion ``phi``:
    ``S = max(0, S + llr(t) / phi)``, and alarms at ``S >= h``.

    Promise: at most ``1440 / arl0_minutes`` false alarms a day (one per 30 days by default),
    from two thresholds, the larger of which is used:

    * ``h = log(arl0_minutes)``, the Shiryaev-Roberts bound: ``exp(S)`` never exceeds the SR
      statistic ``R``, and ``R_t - t`` is a supermartingale whenever each increment has
      ``E[exp(llr / phi)] <= 1`` in control, so the average run length is at least
      ``arl0_minutes``. That holds exactly for binomial counts at the profile's rates with
      ``phi = 1``, to second order for counts with variance ``phi`` times the binomial (the
      quasi-likelihood argument), and whatever the daily pattern of traffic or rate is;
    * a block-bootstrap threshold (:func:`bootstrap_cusum_threshold`): the history's own
      increments (each day scored by a profile fitted on the other days, so out of sample),
      resampled in blocks of an hour into synthetic days, alarm on at most half the promised
      share of days. It takes over where failures come in bursts heavier-tailed than
      a variance factor describes (retry storms).

    Both assume the profile is right: a rate that is higher than learned (history too short to
    see a weekly pattern, a change of the daily shape) is a change, and is paged as one.

    Learning: the detector keeps ``history_minutes`` of its own counts. It starts testing once
    the history spans ``min_history_minutes`` (a day: every hour seen once) and holds at least
    ``min_failures`` failures; until then it is warming up and never alarms. It refits the
    profile every ``refit_minutes`` on the history, leaving out the minutes of excursions that
    ended in an alarm (a degradation is never learned as normal while it keeps alarming).

    >>> from datetime import UTC, datetime, timedelta
    >>> det = SeasonalCusum(delta=0.01, min_failures=10)
    >>> t0 = datetime(2026, 11, 2, tzinfo=UTC)
    >>> rng = np.random.default_rng(0)
    >>> states = [det.update(200, int(rng.binomial(200, 0.02)), t0 + timedelta(minutes=i))
    ...           for i in range(1500)]
    >>> states[-1].warming_up, any(s.fired for s in states)
    (False, False)
    """

    name = "degradation"

    def __init__(
        self,
        delta: float = 0.01,
        arl0_minutes: float = 43_200.0,
        *,
        min_history_minutes: int = 1_440,
        min_failures: int = 30,
        history_minutes: int = 10_080,
        refit_minutes: int = 1_440,
        prior_failures: float = 20.0,
        seed: int = 0,
    ) -> None:
        if not 0.0 < delta < 0.5:
            raise ValueError("delta must be in (0, 0.5)")
        if not arl0_minutes > 1.0:
            raise ValueError("arl0_minutes must exceed one minute")
        if min_history_minutes < 60 or history_minutes < min_history_minutes:
            raise ValueError("need 60 <= min_history_minutes <= history_minutes")
        if min_failures < 1 or refit_minutes < 1 or prior_failures <= 0:
            raise ValueError("min_failures, refit_minutes and prior_failures must be positive")
        self.delta = delta
        self.arl0_minutes = arl0_minutes
        self.bound_threshold = math.log(arl0_minutes)
        self.threshold = self.bound_threshold
        self.bootstrap_threshold = 0.0
        self.seed = seed
        self.min_history_minutes = min_history_minutes
        self.min_failures = min_failures
        self.history_minutes = history_minutes
        self.refit_minutes = refit_minutes
        self.prior_failures = prior_failures
        self.reset()

    def reset(self) -> None:
        # history rows: (minute index since the epoch, hour, day type, n, k), minutes with n > 0
        self._history: deque[tuple[int, int, int, int, int]] = deque()
        self._history_k = 0
        self._first_index: int | None = None
        self._minute = 0
        self._profile: SeasonalProfile | None = None
        self._coef: NDArray[np.float64] = np.zeros((24, 2, 2))  # (hour, day) -> (c_fail, c_n)
        self._fitted_at = 0
        self._fits = 0
        self.threshold = self.bound_threshold
        self.bootstrap_threshold = 0.0
        self._s = 0.0
        self._alarms = 0
        self._fired = False
        self._excursion: tuple[int, int, datetime] | None = None  # (update no., index, at)
        self._exc_rows: list[tuple[int, int, float]] = []  # (n, k, expected failures) a minute
        self._state = SeasonalCusumState(
            0, None, True, None, None, 0.0, self.threshold, False, 0, None, None, None, None, 0
        )

    @property
    def state(self) -> SeasonalCusumState:
        return self._state

    @property
    def profile(self) -> SeasonalProfile | None:
        return self._profile

    def update(self, n: int, k: int, at: datetime) -> SeasonalCusumState:
        """Consume the minute starting at ``at`` (``n`` events, ``k`` failures)."""
        if n < 0 or k < 0 or k > n:
            raise ValueError(f"counts must satisfy 0 <= k <= n, got n={n}, k={k}")
        hour, day = hour_and_day_type(at)
        index = int(at.timestamp() // 60)
        self._minute += 1
        self._fired = False
        if self._first_index is None:
            self._first_index = index
        expected: float | None = None
        if self._profile is None or self._minute - self._fitted_at >= self.refit_minutes:
            self._maybe_fit(index)
        if self._profile is not None:
            expected = self._profile.expected(hour, day)
            self._step(n, k, at, index, hour, day, expected)
        self._remember(index, hour, day, n, k)
        self._state = self._snapshot(at, expected)
        if self._fired:
            self._s = 0.0
            self._excursion = None
        return self._state

    def learn(self, history: Sequence[tuple[datetime, int, int]]) -> None:
        """Bulk-load past minutes ``(at, n, k)`` in time order, as :meth:`update` would have
        seen them while warming up (no testing); then fit the profile if there is enough."""
        for at, n, k in history:
            if n < 0 or k < 0 or k > n:
                raise ValueError(f"counts must satisfy 0 <= k <= n, got n={n}, k={k}")
            hour, day = hour_and_day_type(at)
            index = int(at.timestamp() // 60)
            if self._first_index is None:
                self._first_index = index
            self._remember(index, hour, day, n, k)
        if self._history:
            self._maybe_fit(self._history[-1][0] + 1)

    def detection(self, key: str, at: datetime) -> Detection | None:
        if not self._fired:
            return None
        s = self._state
        effect = (
            s.rate_since_change - s.expected_since_change
            if s.rate_since_change is not None and s.expected_since_change is not None
            else None
        )
        profile = self._profile
        return Detection(
            detector=self.name,
            key=key,
            opened_at=at,
            statistic=s.statistic,
            threshold=s.threshold,
            effect=effect,
            details={
                "expected_rate": s.expected,
                "expected_since_change": s.expected_since_change,
                "rate_since_change": s.rate_since_change,
                "dispersion": s.dispersion,
                "delta": self.delta,
                "arl0_minutes": self.arl0_minutes,
                "change_minute": s.change_minute,
                "alarms": s.alarms,
                "history_failures": s.history_failures,
                "weekend_learned": bool(profile and profile.day_types_seen[1]),
            },
        )

    def _remember(self, index: int, hour: int, day: int, n: int, k: int) -> None:
        if n > 0:
            self._history.append((index, hour, day, n, k))
            self._history_k += k
        while self._history and self._history[0][0] <= index - self.history_minutes:
            self._history_k -= self._history.popleft()[4]

    def _maybe_fit(self, index: int) -> None:
        assert self._first_index is not None
        span = index - max(self._first_index, index - self.history_minutes)
        if span < self.min_history_minutes or self._history_k < self.min_failures:
            return
        rows = np.asarray(self._history, dtype=np.int64)
        if self._excursion is not None:
            rows = rows[rows[:, 0] < self._excursion[1]]  # the open excursion is not history
        if len(rows) == 0 or rows[:, 4].sum() < self.min_failures:
            return
        profile = fit_seasonal_profile(
            rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4],
            prior_failures=self.prior_failures,
        )  # fmt: skip
        self._coef = self._coefficients(profile, profile.dispersion)
        self._profile = profile
        self._fitted_at = self._minute
        self._fits += 1
        # The bootstrap resamples *out-of-sample* increments: each day's minutes are scored by
        # a profile fitted on the other days (by parity of the day), because in-sample the
        # hour rates absorb the history's own bursts and make it look calmer than the future.
        coef = self._coef[rows[:, 1], rows[:, 2]]
        day_number = rows[:, 0] // MINUTES_PER_DAY
        if len(np.unique(day_number)) >= 2:
            coef = coef.copy()
            for parity in (0, 1):
                held = day_number % 2 == parity
                rest = rows[~held]
                if rest[:, 4].sum() < 1 or not held.any():
                    continue
                other = fit_seasonal_profile(
                    rest[:, 0], rest[:, 1], rest[:, 2], rest[:, 3], rest[:, 4],
                    prior_failures=self.prior_failures,
                )  # fmt: skip
                table = self._coefficients(other, profile.dispersion)
                coef[held] = table[rows[held, 1], rows[held, 2]]
        increments = np.zeros(int(rows[-1, 0] - rows[0, 0]) + 1)
        increments[rows[:, 0] - rows[0, 0]] = rows[:, 4] * coef[:, 0] + rows[:, 3] * coef[:, 1]
        rng = np.random.default_rng([self.seed, self._fits])
        self.bootstrap_threshold = bootstrap_cusum_threshold(
            increments, MINUTES_PER_DAY / self.arl0_minutes / 2.0, rng
        )
        self.threshold = max(self.bound_threshold, self.bootstrap_threshold)

    def _coefficients(self, profile: SeasonalProfile, dispersion: float) -> NDArray[np.float64]:
        """Per (hour, day type): the log-likelihood ratio per failure beyond a success, and per
        event, of ``p0 + delta`` against ``p0``, divided by ``dispersion``."""
        p0 = np.asarray(profile.hour_rate)[:, None] * np.asarray(profile.day_level)[None, :]
        p0 = np.clip(p0, 1e-6, 0.5)
        p1 = np.minimum(p0 + self.delta, 0.999)
        log_fail = np.log(p1 / p0)
        log_pass = np.log((1.0 - p1) / (1.0 - p0))
        table: NDArray[np.float64] = np.stack([log_fail - log_pass, log_pass], axis=-1)
        return table / dispersion

    def _step(
        self, n: int, k: int, at: datetime, index: int, hour: int, day: int, expected: float
    ) -> None:
        if self._s == 0.0:
            self._excursion = (self._minute, index, at)
            self._exc_rows = []
        c_fail, c_n = self._coef[hour, day]
        self._s = max(0.0, self._s + k * float(c_fail) + n * float(c_n))
        self._exc_rows.append((n, k, n * expected))
        if self._s >= self.threshold:
            self._fired = True
            self._alarms += 1
            assert self._excursion is not None
            start = self._excursion[1]
            # The alarmed excursion is a degradation, not history to learn the profile from.
            kept = [row for row in self._history if row[0] < start]
            self._history_k = sum(row[4] for row in kept)
            self._history = deque(kept)
        elif self._s == 0.0:
            self._excursion = None

    def _snapshot(self, at: datetime, expected: float | None) -> SeasonalCusumState:
        excursion = self._excursion if (self._s > 0.0 or self._fired) else None
        change_minute = change_at = rate = base = None
        if excursion is not None:
            change_minute, change_at = excursion[0], excursion[2]
        if excursion is not None and self._fired and self._exc_rows:
            offset, n, k, e = _step_change(self._exc_rows)
            change_minute = excursion[0] + offset
            change_at = excursion[2] + timedelta(minutes=offset)
            rate = k / n if n else None
            base = e / n if n else None
        return SeasonalCusumState(
            minute=self._minute,
            at=at,
            warming_up=self._profile is None,
            expected=expected,
            dispersion=self._profile.dispersion if self._profile else None,
            statistic=self._s,
            threshold=self.threshold,
            fired=self._fired,
            alarms=self._alarms,
            change_minute=change_minute,
            change_at=change_at,
            rate_since_change=rate,
            expected_since_change=base,
            history_failures=self._history_k,
        )


MINUTES_PER_DAY = 1440
_BOOTSTRAP_BLOCK = 60
_BOOTSTRAP_DAYS = 800


def bootstrap_cusum_threshold(
    increments: NDArray[np.float64], alarm_days: float, rng: np.random.Generator
) -> float:
    """Threshold whose chance of an alarm within a day is ``alarm_days`` on resampled history.

    A moving-block bootstrap (blocks of an hour) of the history's own CUSUM increments builds
    ``_BOOTSTRAP_DAYS`` synthetic days; the CUSUM is run over each from zero and the threshold is
    the ``1 - alarm_days`` quantile of the days' maxima. Bursts that span minutes (a retry storm)
    stay inside blocks, so their heavy tail, which a single dispersion factor cannot describe,
    is in the resampled days too. Returns 0 when the history is shorter than a block.
    """
    if len(increments) < _BOOTSTRAP_BLOCK:
        return 0.0
    blocks = MINUTES_PER_DAY // _BOOTSTRAP_BLOCK
    starts = rng.integers(0, len(increments) - _BOOTSTRAP_BLOCK + 1, (_BOOTSTRAP_DAYS, blocks))
    index = (starts[:, :, None] + np.arange(_BOOTSTRAP_BLOCK)[None, None, :]).reshape(
        _BOOTSTRAP_DAYS, -1
    )
    days = increments[index]
    s = np.zeros(_BOOTSTRAP_DAYS)
    peak = np.zeros(_BOOTSTRAP_DAYS)
    for t in range(days.shape[1]):
        s = np.maximum(0.0, s + days[:, t])
        np.maximum(peak, s, out=peak)
    return float(np.quantile(peak, 1.0 - alarm_days))


def _step_change(rows: list[tuple[int, int, float]]) -> tuple[int, int, int, float]:
    """Most likely start of a step within an excursion, and the counts from there on.

    The CUSUM's own estimate (where the excursion left zero) can lie hours early when the sum
    drifts down slowly (low traffic, a small ``delta``). Among the excursion's minutes, this picks
    the ``tau`` that maximises the Poisson log-likelihood ratio of "failures from ``tau`` on run
    at ``K/E`` times the expected" against the profile, ``K log(K/E) - (K - E)`` with ``K`` the
    failures and ``E`` the expected failures from ``tau`` on (only ``K > E`` counts). Returns the
    offset of ``tau`` from the excursion's first minute, and events, failures and expected
    failures from ``tau`` on.
    """
    table = np.asarray(rows, dtype=np.float64)
    tail = np.cumsum(table[::-1], axis=0)[::-1]  # sums from each minute to the end
    n, k, e = tail[:, 0], tail[:, 1], np.maximum(tail[:, 2], 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.where(k > e, k * np.log(np.maximum(k, 1e-12) / e) - (k - e), 0.0)
    offset = int(np.argmax(gain))
    return offset, int(n[offset]), int(k[offset]), float(e[offset])
