"""Threshold of a Bernoulli CUSUM for a target in-control ARL, by importance sampling.

Benchmark baseline (:class:`bench.baselines.BernoulliCusum`); the monitor's CUSUM
(:class:`alerts.SeasonalCusum`) uses a bound and a bootstrap instead. The CUSUM is a renewal
process, so ``ARL0(h) = E0[cycle length] / P0(an excursion reaches h)``; the rare-event
denominator is estimated under the exponentially tilted measure, weighting each crossing by
``exp(-theta * S)`` (Siegmund 1975), for a grid of thresholds from one batch of excursions.
``ARL0(h) >= exp(theta * h)`` (Lorden), so the grid stops at ``log(arl0) / theta``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

__all__ = ["calibrate_cusum_threshold", "crossover_rate", "llr_table"]

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
    llr = llr_table(p0, p1, events_per_step)
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


def _llr_per_event(p0: float, p1: float) -> tuple[float, float]:
    """Log-likelihood ratio of one failure and of one success, ``p1`` against ``p0``."""
    return math.log(p1 / p0), math.log((1.0 - p1) / (1.0 - p0))


def llr_table(p0: float, p1: float, n: int) -> NDArray[np.float64]:
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
