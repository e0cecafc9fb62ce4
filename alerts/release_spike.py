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

What the test assumes, and how it survives real traffic
------------------------------------------------------
The exact conditional likelihood is valid when the events of a bucket are independent trials.
Production traffic is not: one user's retries fail together, and per-minute rates scatter more
than binomially. Two variance components are therefore estimated from the *baseline's own
history* (:func:`estimate_dispersion`) and the log-likelihood ratio is *tempered* by them:

* ``dispersion`` (``phi >= 1``): within-bucket variance inflation. It comes from an intraclass
  correlation ``rho`` of the units of one minute, estimated (an upper confidence bound) from the
  Pearson dispersion of the baseline's per-minute counts around their hourly rate; a bucket whose
  minutes hold ``n_j`` units then has ``phi = 1 + rho (sum n_j^2 / sum n_j - 1)`` on each side
  (:meth:`Dispersion.phi_for`), so a minute of 200 units is inflated and a minute of one is not;
* ``day_variance`` (``sigma^2 = 2 c^2``): the squared coefficient of variation ``c`` of the
  baseline's day-to-day level, counted twice because a lagged comparison sets one day's level
  against another's. It is zero for a concurrent baseline (both versions share the day).

Buckets compared against a lagged baseline are grouped in *blocks* (one new-version day against
one baseline day); buckets against the concurrent baseline are their own blocks. Within a block
the buckets' log-likelihood ratios ``l_i(psi)``, each divided by its bucket's ``phi_i``, enter
the e-process as ``sum_i (l_i / phi_i) / (1 + sigma^2 W)`` with ``W = sum_i V_i / phi_i``, where
``V_i`` is bucket ``i``'s null variance of the new version's failure count (hypergeometric).
Under a Gaussian model for the excess failures with variance ``phi_i V_i`` per bucket plus a
shared day effect of variance ``sigma^2 V^2`` this is exactly the likelihood ratio of a mean
shift against no shift along the block, hence a martingale at every bucket, and blocks are
independent, so the product stays a test supermartingale: anytime validity survives, at the
price of a Gaussian approximation to the per-block excess. With ``phi = 1`` and
``sigma^2 = 0`` it is the exact conditional test (Jensen's inequality makes any tempering by
``phi >= 1`` conservative under the exact model).

Stated plainly, alarms keep their ``alpha`` when (1) the units fed in are independent apart from
the within-bucket overdispersion ``phi`` (repeats of one request are counted once upstream:
:func:`storage.series.unit_counts`), (2) day-level effects are independent across days with a
coefficient of variation at most ``c``, (3) ``phi`` and ``c`` are not underestimated (the history's
upper bound, floored by the settings), and (4) within a bucket both versions see the same mix of
prompts: the concurrent baseline (canary, A/B) guarantees this and is the first choice; after a
full cut-over the baseline is the same clock span of a day of the *same weekday type* (a weekday
against a weekday, a weekend day against a weekend day), preferably a week earlier.

Buckets are formed adaptively (:class:`AdaptiveBuckets`): a bucket closes once both sides have
``min_events`` units, never across a block boundary. At 200 events a minute a bucket is a minute;
at ten events an hour it is a few hours, so sparse products still get a verdict within a day. The
closing rule looks only at the event counts, never at failures, so it does not bias the test.

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
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from statistics import NormalDist

import numpy as np
from numpy.typing import NDArray

from alerts.base import Detection

__all__ = [
    "AdaptiveBuckets",
    "Bucket",
    "Dispersion",
    "ReleaseSpikeDetector",
    "ReleaseSpikeState",
    "estimate_dispersion",
    "like_with_like_lags",
    "rate_confidence_sequence",
]

_GRID_SIZE = 64
_CACHE_SIZE = 4_096
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
        _check_counts(n_new, k_new)
        _check_counts(n_base, k_base)
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


def like_with_like_lags(
    minute: datetime, lags_minutes: Sequence[int], weekend_days: Collection[int]
) -> list[int]:
    """The lags (in order) that land ``minute`` on a day of the same weekday type.

    A weekday is compared with a weekday and a weekend day with a weekend day, never across:
    traffic and failure rates differ between the two. Multiples of a week always qualify.

    >>> monday = datetime(2026, 11, 9, 10, 0)
    >>> like_with_like_lags(monday, [10_080, 1_440, 2_880, 4_320], weekend_days=(5, 6))
    [10080, 4320]
    """
    weekend = minute.weekday() in weekend_days
    return [
        lag
        for lag in lags_minutes
        if ((minute - timedelta(minutes=lag)).weekday() in weekend_days) == weekend
    ]


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
    used. With fewer than ``min_df`` degrees of freedom, or minutes of fewer than two units on
    average, ``icc_prior`` is used. The day-level coefficient of variation comes from days with
    traffic in at least ``full_day_hours`` hours: the variance of their rates beyond what the
    within-day variance explains, relative to the mean rate; it is never below
    ``day_cv_floor``, since a handful of days cannot rule out a day effect.

    >>> d = estimate_dispersion({})
    >>> d.icc, d.day_cv, d.phi_for(200, 200 * 200)
    (0.01, 0.05, 2.99)
    """
    by_hour: dict[datetime, list[tuple[int, int]]] = {}
    for minute, (n, k) in minutes.items():
        _check_counts(n, k)
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
    if df >= min_df and size >= 2.0 and phi_estimate is not None:
        z = NormalDist().inv_cdf(confidence)
        # Lower chi-square quantile: chi2/quantile is the upper bound of the dispersion.
        q = df * (1.0 - 2.0 / (9.0 * df) - z * math.sqrt(2.0 / (9.0 * df))) ** 3
        icc_estimate = min(1.0, max(0.0, (phi_estimate - 1.0) / (size - 1.0)))
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
            cv_estimate = math.sqrt(max(0.0, spread - noise)) / mean
    return Dispersion(
        icc=icc, icc_estimate=icc_estimate, phi_estimate=phi_estimate, unit_size=size,
        day_cv=max(day_cv_floor, cv_estimate or 0.0), day_cv_estimate=cv_estimate,
        minutes=sum(len(c) for c in by_hour.values()), days=len(full),
    )  # fmt: skip


@dataclass(frozen=True)
class Bucket:
    """Counts of one closed bucket: the new version's and the baseline's over the same span."""

    n_new: int
    k_new: int
    n_base: int
    k_base: int
    block: object
    minutes: int
    squares_new: int = 0  # sum over the bucket's minutes of the squared numbers of units
    squares_base: int = 0

    def dispersion(self, new: Dispersion, base: Dispersion | None = None) -> float:
        """The bucket's variance inflation: each side's ``phi`` weighted as it enters the
        variance of the conditional count (``(m phi_new + n phi_base) / (n + m)``)."""
        base = base or new
        total = self.n_new + self.n_base
        if total == 0:
            return 1.0
        phi_new = new.phi_for(self.n_new, self.squares_new)
        phi_base = base.phi_for(self.n_base, self.squares_base)
        return (self.n_base * phi_new + self.n_new * phi_base) / total


class AdaptiveBuckets:
    """Sums consecutive minutes into buckets until both sides have ``min_events`` units.

    A bucket never spans two blocks: a minute of another block first closes the open bucket.
    Because the closing rule reads only the numbers of units (never the failures) it is a
    stopping rule the conditional test is indifferent to.

    >>> buckets = AdaptiveBuckets(min_events=5)
    >>> [b.n_new for m in range(12) for b in buckets.add(1, 0, 1, 0, block="d1")]
    [5, 5]
    """

    def __init__(self, min_events: int) -> None:
        if min_events < 1:
            raise ValueError("min_events must be at least 1")
        self.min_events = min_events
        self._open: list[int] | None = None  # n_new, k_new, n_base, k_base, minutes, squares
        self._block: object = None

    def add(
        self, n_new: int, k_new: int, n_base: int, k_base: int, *, block: object
    ) -> list[Bucket]:
        """Add one minute; return the buckets this closed (zero, one or two)."""
        closed: list[Bucket] = []
        if self._open is not None and block != self._block:
            closed.extend(self.flush())
        if self._open is None:
            self._open, self._block = [0, 0, 0, 0, 0, 0, 0], block
        for i, value in enumerate((n_new, k_new, n_base, k_base, 1, n_new**2, n_base**2)):
            self._open[i] += value
        if min(self._open[0], self._open[2]) >= self.min_events:
            closed.extend(self.flush())
        return closed

    def flush(self) -> list[Bucket]:
        """Close the open bucket (if it holds anything)."""
        if self._open is None:
            return []
        n, k, m, k_base, minutes, squares_new, squares_base = self._open
        self._open = None
        if n == 0 and m == 0:
            return []
        return [Bucket(n, k, m, k_base, self._block, minutes, squares_new, squares_base)]


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


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _check_counts(n: int, k: int) -> None:
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"counts must satisfy 0 <= k <= n, got n={n}, k={k}")
