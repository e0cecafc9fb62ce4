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

``p0`` is estimated from a warm-up window, which the calibration treats as known; a short warm-up
makes the real ``ARL0`` shorter than the target (Jones, Champ and Rigdon 2004). Traffic per minute
is taken as the warm-up mean; if it changes by a large factor, recalibrate (``reset``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from alerts.base import Detection

__all__ = ["BernoulliCusum", "CusumState", "calibrate_cusum_threshold"]

_GRID_LEVELS = 1024


def calibrate_cusum_threshold(
    p0: float,
    p1: float,
    arl0: float,
    seed: int,
    *,
    events_per_step: int = 1,
    n_excursions: int = 50_000,
) -> float:
    """Threshold ``h`` for a Bernoulli CUSUM of ``p1`` vs ``p0`` with in-control ARL ``arl0``.

    Each step observes ``events_per_step`` events (one minute of traffic), so ``arl0`` is in
    steps. The result is random only through ``seed``; ``n_excursions`` excursions are simulated
    under each of ``p0`` and ``p1`` (the relative error of the estimated ``ARL0`` at the returned
    ``h`` is about ``1/sqrt(n_excursions)`` times a small constant).

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
    llr = _llr_table(p0, p1, events_per_step)
    levels = np.linspace(0.0, math.log(arl0), _GRID_LEVELS + 1)[1:]
    rng = np.random.default_rng(seed)
    length_sum, _, _ = _excursions(llr, p0, events_per_step, levels, n_excursions, rng)
    _, reached, weight_sum = _excursions(llr, p1, events_per_step, levels, n_excursions, rng)
    mean_length = length_sum / n_excursions
    p_alarm = weight_sum / n_excursions
    with np.errstate(divide="ignore"):
        arl = np.where(p_alarm > 0, mean_length / p_alarm, np.inf)
    # Estimates are noisy only where few excursions reached the level; demand a few dozen.
    ok = (arl >= arl0) & (reached >= 30)
    index = int(np.argmax(ok)) if ok.any() else _GRID_LEVELS - 1
    return float(levels[index])


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
        seed: int = 0,
    ) -> None:
        if not 0.0 < delta < 1.0:
            raise ValueError("delta must be in (0, 1)")
        if warmup_minutes < 1:
            raise ValueError("warmup_minutes must be >= 1")
        if p0 is not None and not 0.0 < p0 < 1.0 - delta:
            raise ValueError("p0 must be in (0, 1 - delta)")
        self.delta = delta
        self.arl0_minutes = arl0_minutes
        self.warmup_minutes = warmup_minutes
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
            self._start(self._given_p0, self._given_rate or 1)
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
                self._start(p0, self._given_rate or per_minute)
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

    def _start(self, p0: float, events_per_minute: int) -> None:
        self._p0 = p0
        self._p1 = p0 + self.delta
        self._h = self._given_threshold
        if self._h is None:
            self._h = calibrate_cusum_threshold(
                p0, self._p1, self.arl0_minutes, self.seed, events_per_step=events_per_minute
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


def _llr_table(p0: float, p1: float, n: int) -> NDArray[np.float64]:
    """Log-likelihood ratio of one step with ``k = 0..n`` failures among ``n`` events."""
    k = np.arange(n + 1, dtype=np.float64)
    table: NDArray[np.float64] = k * math.log(p1 / p0) + (n - k) * math.log((1 - p1) / (1 - p0))
    return table


def _excursions(
    llr: NDArray[np.float64],
    p: float,
    n: int,
    levels: NDArray[np.float64],
    count: int,
    rng: np.random.Generator,
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.float64]]:
    """Simulate ``count`` CUSUM excursions from 0 under failure rate ``p``, for every level.

    An excursion ends when the sum falls to 0 or below or reaches the top level. For each level
    ``h`` it returns: the total length of the excursions *as if stopped at* ``h`` (the crossing
    step for those that reached ``h``, the full length for the others), how many reached ``h``,
    and the sum over those of ``exp(-S)`` at the crossing (the importance weight ``dP0/dP1``).
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
            weight = np.exp(-s[up])
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
