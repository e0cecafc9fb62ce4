"""Release-spike test: is a new model version's failure rate higher than its baseline's?

The monitor may look at the answer every minute for days, so a fixed-sample test is the wrong tool
(see :mod:`alerts.fixed_horizon`: checked every minute it pages far more often than its ``alpha``).
This module uses an *e-process*, a non-negative supermartingale under the null hypothesis, which
by Ville's inequality crosses ``1/alpha`` with probability at most ``alpha`` however often and
however long it is watched.

The test (a mixture sequential probability ratio test on conditional likelihoods)
--------------------------------------------------------------------------------
Each update is one stratum (one minute): ``n`` events of the new version with ``k`` failures and
``m`` events of the baseline with ``l`` failures. Conditional on the total ``t = k + l``, the new
version's share ``k`` is hypergeometric when both versions fail at the same rate, and Fisher's
non-central hypergeometric with odds ratio ``psi`` otherwise; the shared base rate drops out. The
per-minute likelihood ratio ``f_psi(k | t) / f_1(k | t)`` therefore has expectation at most one
under the *composite* null "odds ratio <= 1 in every minute", whatever the base rate is and however
it moves with the time of day (the log-partition function of the family is convex, which gives
``E_psi0[f_psi / f_1] <= 1`` for every ``psi0 <= 1 <= psi``). Multiplying the ratios over minutes
and averaging over a half-normal prior on ``log psi`` (discretised on a grid; any prior keeps
validity, it only moves power) gives the e-process; this is the mixture SPRT of Johari et al.,
"Always valid inference" (2017/2022), built on an exact conditional likelihood instead of the
normal approximation, so it needs no plug-in variance and no large-sample argument.

The baseline must be *concurrent*: the old version serving beside the new one (canary, A/B,
gradual rollout) or, after a full cut-over, the same minute of the baseline version one week
earlier. Pairing by minute is what makes the test immune to the daily prompt mix.

The confidence sequence
-----------------------
The failure-rate difference gets an always-valid confidence sequence from one beta-binomial
mixture martingale per version (Robbins' method; Jeffreys prior), each at level ``alpha/2``,
combined by a union bound. It assumes each version's rate is constant while monitored. It is
conservative: it spends ``alpha`` on two separate rates and ignores the pairing by minute, so at
the moment of an alarm it may still reach below zero (it excludes zero some minutes later). It is
reported for sizing the effect; the decision is the e-process's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from alerts.base import Detection

__all__ = ["ReleaseSpikeDetector", "ReleaseSpikeState", "rate_confidence_sequence"]

_GRID_SIZE = 64
_LOG_E_CAP = 700.0  # exp(709) overflows a float64; the cap only affects reporting, not the decision


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
    _check_counts(n, k)
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


@dataclass(frozen=True)
class ReleaseSpikeState:
    """Snapshot after one update. Counts are running totals over all updates so far.

    ``effect`` is the observed failure-rate difference (new minus baseline) and
    ``[cs_low, cs_high]`` its always-valid confidence sequence. ``p_value`` is the always-valid
    p-value ``min(1, 1 / max e-value so far)``. ``odds_ratio`` is the Mantel-Haenszel common odds
    ratio over the minutes (``None`` until it is defined).
    """

    minutes: int
    n_new: int
    k_new: int
    n_base: int
    k_base: int
    e_value: float
    log_e_value: float
    p_value: float
    fired: bool
    effect: float | None
    cs_low: float
    cs_high: float
    odds_ratio: float | None


class ReleaseSpikeDetector:
    """Anytime-valid one-sided test that a new version fails more often than its baseline.

    Call :meth:`update` once per minute with that minute's counts (increments, not running
    totals): ``n_new`` events of the new version of which ``k_new`` failed, and the concurrent
    baseline's ``n_base`` / ``k_base``. The alarm fires, and stays fired, once the e-value reaches
    ``1/alpha``; the probability that this ever happens when the new version is not worse is at
    most ``alpha``.

    ``mixture_tau`` is the scale of the half-normal prior on the log odds ratio: the odds ratios
    it expects to catch. The default 0.5 puts most weight on odds ratios between about 1.1 and 3
    (a 2% failure rate going to 2.2%-6%); smaller values detect small effects sooner and large
    ones later.

    >>> det = ReleaseSpikeDetector(alpha=0.01)
    >>> for _ in range(30):
    ...     state = det.update(n_new=200, k_new=14, n_base=200, k_base=4)
    >>> state.fired, state.effect is not None and state.effect > 0
    (True, True)
    """

    name = "release_spike"

    def __init__(self, alpha: float = 0.01, mixture_tau: float = 0.5) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError("alpha must be in (0, 1)")
        if not mixture_tau > 0.0:
            raise ValueError("mixture_tau must be positive")
        self.alpha = alpha
        self.mixture_tau = mixture_tau
        # Grid over log odds ratios in [0, 4 tau]; the weights are the discretised half-normal.
        self._log_psi: NDArray[np.float64] = np.linspace(0.0, 4.0 * mixture_tau, _GRID_SIZE)
        weights = np.exp(-0.5 * (self._log_psi / mixture_tau) ** 2)
        self._log_weights: NDArray[np.float64] = np.log(weights / weights.sum())
        self.reset()

    def reset(self) -> None:
        self._log_lr: NDArray[np.float64] = np.zeros(_GRID_SIZE)
        self._max_log_e = 0.0
        self._minutes = 0
        self._totals = [0, 0, 0, 0]  # n_new, k_new, n_base, k_base
        self._mh_num = 0.0
        self._mh_den = 0.0
        self._fired = False
        self._opened_now = False
        self._state = self._snapshot(0.0)

    @property
    def state(self) -> ReleaseSpikeState:
        return self._state

    def update(self, n_new: int, k_new: int, n_base: int, k_base: int) -> ReleaseSpikeState:
        """Consume one minute of counts (increments) and return the new state."""
        _check_counts(n_new, k_new)
        _check_counts(n_base, k_base)
        self._log_lr += _conditional_log_lr(n_new, k_new, n_base, k_base, self._log_psi)
        total = n_new + n_base
        if total > 0:
            self._mh_num += k_new * (n_base - k_base) / total
            self._mh_den += k_base * (n_new - k_new) / total
        self._minutes += 1
        for i, value in enumerate((n_new, k_new, n_base, k_base)):
            self._totals[i] += value
        log_e = float(_logsumexp(self._log_lr + self._log_weights, axis=0))
        self._max_log_e = max(self._max_log_e, log_e)
        was_fired = self._fired
        self._fired = self._fired or log_e >= math.log(1.0 / self.alpha)
        self._opened_now = self._fired and not was_fired
        self._state = self._snapshot(log_e)
        return self._state

    def detection(self, key: str, at: datetime) -> Detection | None:
        if not self._opened_now:
            return None
        s = self._state
        return Detection(
            detector=self.name,
            key=key,
            opened_at=at,
            statistic=s.e_value,
            threshold=1.0 / self.alpha,
            p_value=s.p_value,
            e_value=s.e_value,
            effect=s.effect,
            effect_low=s.cs_low,
            effect_high=s.cs_high,
            details={
                "minutes": s.minutes,
                "n_new": s.n_new,
                "k_new": s.k_new,
                "n_base": s.n_base,
                "k_base": s.k_base,
                "odds_ratio": s.odds_ratio,
                "mixture_tau": self.mixture_tau,
            },
        )

    def _snapshot(self, log_e: float) -> ReleaseSpikeState:
        n_new, k_new, n_base, k_base = self._totals
        low_new, high_new = rate_confidence_sequence(n_new, k_new, self.alpha / 2)
        low_base, high_base = rate_confidence_sequence(n_base, k_base, self.alpha / 2)
        effect = k_new / n_new - k_base / n_base if n_new and n_base else None
        odds_ratio = self._mh_num / self._mh_den if self._mh_den > 0 else None
        return ReleaseSpikeState(
            minutes=self._minutes,
            n_new=n_new,
            k_new=k_new,
            n_base=n_base,
            k_base=k_base,
            e_value=math.exp(min(log_e, _LOG_E_CAP)),
            log_e_value=log_e,
            p_value=math.exp(-self._max_log_e),
            fired=self._fired,
            effect=effect,
            cs_low=low_new - high_base,
            cs_high=high_new - low_base,
            odds_ratio=odds_ratio,
        )


def _conditional_log_lr(
    n: int, k: int, m: int, k_other: int, log_psi: NDArray[np.float64]
) -> NDArray[np.float64]:
    """``log f_psi(k | t) - log f_1(k | t)``, ``t = k + k_other``, for every grid ``log psi``.

    ``f_psi`` is Fisher's non-central hypergeometric pmf of the new version's failures given the
    minute's total failures. Minutes where the split is forced (no events on one side, no failures,
    or only failures) carry no information and contribute zero.
    """
    t = k + k_other
    if n == 0 or m == 0 or t == 0 or t == n + m:
        return np.zeros_like(log_psi)
    lo, hi = max(0, t - m), min(n, t)
    support = np.arange(lo, hi + 1, dtype=np.float64)
    # log C(n, j) + log C(m, t - j) over j = lo..hi; only differences matter, so the constant
    # log C(n, lo) + log C(m, t - lo) is dropped and the rest is a cumulative sum of log ratios.
    ratios = np.log((n - support[:-1]) * (t - support[:-1])) - np.log(
        (support[:-1] + 1.0) * (m - t + support[:-1] + 1.0)
    )
    log_comb = np.concatenate(([0.0], np.cumsum(ratios)))
    log_partition = _logsumexp(log_comb[None, :] + log_psi[:, None] * support[None, :], axis=1)
    result: NDArray[np.float64] = k * log_psi - log_partition + _logsumexp(log_comb, axis=0)
    return result


def _logsumexp(x: NDArray[np.float64], axis: int) -> NDArray[np.float64]:
    # scipy.special.logsumexp costs ~100 us a call in array-API dispatch; this runs every minute.
    peak = np.max(x, axis=axis, keepdims=True)
    result: NDArray[np.float64] = np.squeeze(
        peak + np.log(np.sum(np.exp(x - peak), axis=axis, keepdims=True)), axis=axis
    )
    return result


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _check_counts(n: int, k: int) -> None:
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"counts must satisfy 0 <= k <= n, got n={n}, k={k}")
