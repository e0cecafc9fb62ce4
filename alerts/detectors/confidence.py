"""Confidence bounds for failure rates: always-valid (Robbins' beta-binomial mixture) for the
tests, and fixed-sample Wilson and Newcombe intervals for describing what a test decided."""

from __future__ import annotations

import math

from alerts.detectors.counts import check_counts

__all__ = [
    "newcombe_interval",
    "rate_confidence_sequence",
    "wilson_interval",
    "wilson_interval_of_rate",
]


def rate_confidence_sequence(
    n: int, k: int, alpha: float, prior: tuple[float, float] = (0.5, 0.5)
) -> tuple[float, float]:
    """Always-valid ``1 - alpha`` confidence bounds for a Bernoulli rate after ``k`` of ``n``.

    The bounds are the set of rates ``p`` whose beta-binomial mixture martingale
    ``B(a + k, b + n - k) / B(a, b) / (p**k (1 - p)**(n - k))`` is below ``1/alpha``. Under the
    true ``p`` that ratio is a test martingale, so by Ville's inequality the bounds cover ``p`` at
    every ``n`` simultaneously with probability at least ``1 - alpha``.

    >>> low, high = rate_confidence_sequence(10_000, 200, 0.05)
    >>> 0.014 < low < 0.02 < high < 0.027
    True
    """
    check_counts(n, k)
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must be in (0, 1)")
    if n == 0:
        return 0.0, 1.0
    a, b = prior
    log_level = math.log(1.0 / alpha)
    # p is in the set iff loglik(p) > loglik-of-the-mixture - log(1/alpha). By the symmetry
    # p <-> 1 - p, the upper bound is one minus the lower bound of the failure-free rate.
    log_mixture = _log_beta(a + k, b + n - k) - _log_beta(a, b)
    low = _lower_root(n, k, log_mixture - log_level)
    high = 1.0 - _lower_root(n, n - k, log_mixture - log_level)
    return low, high


def _lower_root(n: int, k: int, cut: float) -> float:
    """Smallest ``p`` with ``k log p + (n - k) log(1 - p) >= cut`` (0 if that holds at 0).

    In ``u = log p`` the left side is concave, so Newton's method started left of the root
    stays left of it and converges monotonically; a handful of steps reach machine precision.
    """
    if k == 0:
        return 0.0
    p_hat = k / n

    def excess(u: float) -> float:
        return k * u + ((n - k) * math.log1p(-math.exp(u)) if n > k else 0.0) - cut

    u = math.log(p_hat)
    # Start from a normal-approximation guess and step left until below the cut.
    gap = max(excess(u), 0.0)
    width = math.sqrt(2.0 * gap * p_hat * (1.0 - p_hat) / n) if n > k else 0.0
    u = math.log(max(p_hat - 1.5 * width, p_hat / 4.0))
    while excess(u) > 0.0:
        u -= 1.0
        if u < -745.0:  # below the smallest float: the bound is zero for all practical purposes
            return 0.0
    for _ in range(100):
        e_u = math.exp(u)
        slope = k - ((n - k) * e_u / (1.0 - e_u) if n > k else 0.0)
        step = -excess(u) / slope
        u += step
        if step < 1e-13 * max(1.0, abs(u)):
            break
    return math.exp(u)


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


_Z95 = 1.959963984540054


def wilson_interval(k: int, n: int, z: float = _Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial rate (default 95 %); ``(0, 1)`` when ``n`` is 0.

    >>> low, high = wilson_interval(10, 100)
    >>> round(low, 4), round(high, 4)
    (0.0552, 0.1744)
    """
    if n <= 0:
        return 0.0, 1.0
    check_counts(n, k)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def wilson_interval_of_rate(rate: float, n: float, z: float = _Z95) -> tuple[float, float]:
    """The Wilson interval of an estimated ``rate`` worth ``n`` independent events (``n`` need
    not be whole: a weighted sample's effective size); ``(0, 1)`` when ``n`` is 0.

    >>> low, high = wilson_interval_of_rate(0.1, 100.0)
    >>> (round(low, 4), round(high, 4)) == tuple(round(b, 4) for b in wilson_interval(10, 100))
    True
    """
    if n <= 0:
        return 0.0, 1.0
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate {rate} is not within [0, 1]")
    denom = 1 + z * z / n
    centre = (rate + z * z / (2 * n)) / denom
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(k1: int, n1: int, k2: int, n2: int, z: float = _Z95) -> tuple[float, float]:
    """Newcombe's hybrid score interval for ``k1/n1 - k2/n2`` (method 10 of Newcombe 1998)."""
    p1 = k1 / n1 if n1 else 0.0
    p2 = k2 / n2 if n2 else 0.0
    l1, u1 = wilson_interval(k1, n1, z)
    l2, u2 = wilson_interval(k2, n2, z)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return max(-1.0, low), min(1.0, high)
