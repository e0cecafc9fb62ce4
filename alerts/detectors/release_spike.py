"""Release-spike test: does a new model version fail more often than its baseline?

An anytime-valid e-process (a mixture SPRT on the exact conditional likelihood of the new
version's failures given each bucket's total, Fisher's non-central hypergeometric; Johari et al.
2017): by Ville's inequality it crosses ``1/alpha`` with probability at most ``alpha`` however
often it is looked at. The log-likelihood ratio is tempered by a within-bucket dispersion ``phi``
and, per block of lagged buckets (one day against one baseline day), by a day-level variance
(:mod:`alerts.detectors.dispersion`). Alarms keep their ``alpha`` when units are independent
apart from ``phi``, day effects are independent across days, ``phi`` and the day variance are not
underestimated by much (the track's day variance counts only what the history's days show beyond
chance: precise where traffic is busy; where it is sparse the within-day noise dominates, so it
matters little), and both versions see the same mix of prompts within a bucket. The effect gets a
conservative always-valid confidence sequence (:mod:`alerts.detectors.confidence`); the decision
is the e-process's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from alerts.detectors.base import Detection
from alerts.detectors.confidence import rate_confidence_sequence
from alerts.detectors.counts import check_counts

__all__ = ["ReleaseSpikeDetector", "ReleaseSpikeState"]

_GRID_SIZE = 64
_CACHE_SIZE = 4_096
_LOG_E_CAP = 700.0  # exp(709) overflows a float64; the cap only affects reporting, not the decision


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

    Call :meth:`update` once per bucket with that bucket's counts (increments, not running
    totals): ``n_new`` units of the new version of which ``k_new`` failed, and the baseline's
    ``n_base`` / ``k_base`` over the same span. The alarm fires, and stays fired, once the e-value
    reaches ``1/alpha``; the probability that this ever happens when the new version is not worse
    is at most ``alpha`` (under the assumptions in the module docstring).

    ``mixture_tau`` is the scale of the prior on the log odds ratio: an equal mixture of
    half-normals with scales ``tau`` and ``4 tau``. The narrow one puts its weight on odds ratios
    between about 1.1 and 3 (a 2% failure rate going to 2.2%-6%), the wide one on the large jumps
    a sparse product must catch from few events (2% going to 12%).

    ``dispersion`` and ``day_variance`` temper the likelihood ratio (module docstring); the
    defaults (1 and 0) give the exact conditional test on independent events. With
    ``interval_every_update=False`` (for simulations) the confidence sequence is computed only
    once the alarm has fired and reads ``[-1, 1]`` before; the decision is the same.

    ``block`` names the block a lagged bucket belongs to (e.g. ``("2026-11-03", "lag_1d")``);
    ``None`` (a concurrent bucket) makes the bucket its own block with no day component.

    >>> det = ReleaseSpikeDetector(alpha=0.01)
    >>> for _ in range(30):
    ...     state = det.update(n_new=200, k_new=14, n_base=200, k_base=4)
    >>> state.fired, state.effect is not None and state.effect > 0
    (True, True)
    """

    name = "release_spike"

    def __init__(
        self,
        alpha: float = 0.01,
        mixture_tau: float = 0.5,
        *,
        dispersion: float = 1.0,
        day_variance: float = 0.0,
        interval_every_update: bool = True,
    ) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError("alpha must be in (0, 1)")
        if not mixture_tau > 0.0:
            raise ValueError("mixture_tau must be positive")
        if not dispersion >= 1.0 or not day_variance >= 0.0:
            raise ValueError("dispersion must be >= 1 and day_variance >= 0")
        self._interval_always = interval_every_update
        self.alpha = alpha
        self.mixture_tau = mixture_tau
        self.dispersion = float(dispersion)
        self.day_variance = float(day_variance)
        # Grid over log odds ratios in [0, 8 tau]; the weights are the discretised mixture.
        self._log_psi: NDArray[np.float64] = np.linspace(0.0, 8.0 * mixture_tau, _GRID_SIZE)
        narrow = np.exp(-0.5 * (self._log_psi / mixture_tau) ** 2)
        wide = np.exp(-0.5 * (self._log_psi / (4.0 * mixture_tau)) ** 2)
        weights = narrow / narrow.sum() + wide / wide.sum()
        self._log_weights: NDArray[np.float64] = np.log(weights / weights.sum())
        self._cache: dict[tuple[int, int, int], NDArray[np.float64]] = {}
        self.reset()

    def reset(self) -> None:
        self._closed: NDArray[np.float64] = np.zeros(_GRID_SIZE)  # tempered, finished blocks
        self._block: object = None
        self._block_lr: NDArray[np.float64] = np.zeros(_GRID_SIZE)  # open block, untempered
        self._block_w = 0.0
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

    def update(
        self,
        n_new: int,
        k_new: int,
        n_base: int,
        k_base: int,
        *,
        block: object = None,
        dispersion: float | None = None,
    ) -> ReleaseSpikeState:
        """Consume one bucket of counts (increments) and return the new state.

        ``dispersion`` is this bucket's variance inflation (default: the constructor's).
        """
        check_counts(n_new, k_new)
        check_counts(n_base, k_base)
        phi = self.dispersion if dispersion is None else float(dispersion)
        if not phi >= 1.0:
            raise ValueError("dispersion must be >= 1")
        llr = _conditional_log_lr(n_new, k_new, n_base, k_base, self._log_psi, self._cache)
        variance = _null_variance(n_new, k_new, n_base, k_base)
        if block is None or block != self._block:
            self._close_block()
        if block is None:
            self._closed += llr / phi
        else:
            self._block = block
            self._block_lr += llr / phi
            self._block_w += variance / phi
        total = n_new + n_base
        if total > 0:
            self._mh_num += k_new * (n_base - k_base) / total
            self._mh_den += k_base * (n_new - k_new) / total
        self._minutes += 1
        for i, value in enumerate((n_new, k_new, n_base, k_base)):
            self._totals[i] += value
        log_lr = self._closed + self._block_lr / self._block_temper()
        log_e = float(_logsumexp(log_lr + self._log_weights, axis=0))
        self._max_log_e = max(self._max_log_e, log_e)
        was_fired = self._fired
        self._fired = self._fired or log_e >= math.log(1.0 / self.alpha)
        self._opened_now = self._fired and not was_fired
        self._state = self._snapshot(log_e)
        return self._state

    def _block_temper(self) -> float:
        return 1.0 + self.day_variance * self._block_w

    def _close_block(self) -> None:
        if self._block is not None:
            self._closed += self._block_lr / self._block_temper()
        self._block, self._block_w = None, 0.0
        self._block_lr = np.zeros(_GRID_SIZE)

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
                "dispersion": self.dispersion,
                "day_variance": self.day_variance,
            },
        )

    def _snapshot(self, log_e: float) -> ReleaseSpikeState:
        n_new, k_new, n_base, k_base = self._totals
        # The rate bounds use effective counts: phi correlated events weigh as one.
        phi = self.dispersion
        if self._interval_always or self._fired:
            low_new, high_new = rate_confidence_sequence(
                *_effective(n_new, k_new, phi), self.alpha / 2
            )
            low_base, high_base = rate_confidence_sequence(
                *_effective(n_base, k_base, phi), self.alpha / 2
            )
        else:
            low_new, high_new, low_base, high_base = 0.0, 1.0, 0.0, 1.0
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


def _effective(n: int, k: int, phi: float) -> tuple[int, int]:
    if phi <= 1.0:
        return n, k
    n_eff = round(n / phi)
    return n_eff, min(n_eff, round(k / phi))


def _null_variance(n: int, k: int, m: int, k_other: int) -> float:
    """Hypergeometric variance of the new version's failures given the bucket's total."""
    t, total = k + k_other, n + m
    if n == 0 or m == 0 or t == 0 or t == total or total < 2:
        return 0.0
    return t * n * m * (total - t) / (total * total * (total - 1))


def _conditional_log_lr(
    n: int,
    k: int,
    m: int,
    k_other: int,
    log_psi: NDArray[np.float64],
    cache: dict[tuple[int, int, int], NDArray[np.float64]] | None = None,
) -> NDArray[np.float64]:
    """``log f_psi(k | t) - log f_1(k | t)``, ``t = k + k_other``, for every grid ``log psi``.

    ``f_psi`` is Fisher's non-central hypergeometric pmf of the new version's failures given the
    minute's total failures. Minutes where the split is forced (no events on one side, no failures,
    or only failures) carry no information and contribute zero. The ratio is ``k log psi`` minus
    a normaliser that depends on ``(n, m, t)`` only; ``cache`` keeps those normalisers (steady
    traffic repeats the same few).
    """
    t = k + k_other
    if n == 0 or m == 0 or t == 0 or t == n + m:
        return np.zeros_like(log_psi)
    key = (n, m, t)
    if cache is not None:
        normaliser = cache.get(key)
        if normaliser is None:
            if len(cache) >= _CACHE_SIZE:
                cache.clear()
            normaliser = cache[key] = _normaliser(n, m, t, log_psi)
        result: NDArray[np.float64] = k * log_psi - normaliser
        return result
    return k * log_psi - _normaliser(n, m, t, log_psi)


def _normaliser(n: int, m: int, t: int, log_psi: NDArray[np.float64]) -> NDArray[np.float64]:
    """``log sum_j C(n, j) C(m, t - j) psi^j - log sum_j C(n, j) C(m, t - j)``."""
    lo, hi = max(0, t - m), min(n, t)
    support = np.arange(lo, hi + 1, dtype=np.float64)
    # log C(n, j) + log C(m, t - j) over j = lo..hi; only differences matter, so the constant
    # log C(n, lo) + log C(m, t - lo) is dropped and the rest is a cumulative sum of log ratios.
    ratios = np.log((n - support[:-1]) * (t - support[:-1])) - np.log(
        (support[:-1] + 1.0) * (m - t + support[:-1] + 1.0)
    )
    log_comb = np.concatenate(([0.0], np.cumsum(ratios)))
    log_partition = _logsumexp(log_comb[None, :] + log_psi[:, None] * support[None, :], axis=1)
    result: NDArray[np.float64] = log_partition - _logsumexp(log_comb, axis=0)
    return result


def _logsumexp(x: NDArray[np.float64], axis: int) -> NDArray[np.float64]:
    # scipy.special.logsumexp costs ~100 us a call in array-API dispatch; this runs every bucket,
    # so the array methods are called directly (the np.* wrappers cost as much as the maths).
    peak = x.max(axis=axis, keepdims=True)
    result: NDArray[np.float64] = np.log(np.exp(x - peak).sum(axis=axis)) + peak.squeeze(axis)
    return result
