"""Benchmark baselines: the detectors telltale's own are measured against. Do not alert with them.

* :class:`FixedHorizonZTest` — a fixed-sample two-proportion z-test re-run every minute, as a
  dashboard rule "page if p < 0.01" evaluated every minute does: each look has level ``alpha``,
  but the chance that *some* look crosses grows without bound as monitoring goes on.
* :class:`BernoulliCusum` — Page's CUSUM against one fixed rate learned from a warm-up, its
  threshold calibrated to an ARL by simulation (:mod:`bench.cusum_calibration`); blind to a
  daily cycle, which the monitor's seasonal CUSUM learns.
* :class:`NormalMixtureMsprt` — the textbook one-sided two-proportion mSPRT (Johari et al. 2017):
  a half-normal mixture over the rate difference on the normal approximation of the running
  totals, no tempering and no buckets; the reference the release test's delays are set against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from statistics import NormalDist

import numpy as np
from numpy.typing import NDArray
from scipy.special import log_ndtr

from alerts import Detection
from alerts.detectors.counts import check_counts
from bench.cusum_calibration import calibrate_cusum_threshold, crossover_rate

__all__ = [
    "BernoulliCusum",
    "CusumState",
    "FixedHorizonZTest",
    "MsprtState",
    "NormalMixtureMsprt",
    "ZTestState",
    "msprt_log_e",
    "msprt_log_e_path",
    "two_proportion_z_test",
]


def two_proportion_z_test(n_new: int, k_new: int, n_base: int, k_base: int) -> tuple[float, float]:
    """One-sided pooled two-proportion z-test of "new fails more often than base": ``(z, p)``.

    Returns ``(0.0, 1.0)`` while the test is undefined (an empty side, or a pooled rate of 0 or 1).

    >>> z, p = two_proportion_z_test(1000, 40, 1000, 20)
    >>> round(z, 2), p < 0.01
    (2.62, True)
    """
    check_counts(n_new, k_new)
    check_counts(n_base, k_base)
    if n_new == 0 or n_base == 0:
        return 0.0, 1.0
    pooled = (k_new + k_base) / (n_new + n_base)
    variance = pooled * (1.0 - pooled) * (1.0 / n_new + 1.0 / n_base)
    if variance <= 0.0:
        return 0.0, 1.0
    z = (k_new / n_new - k_base / n_base) / math.sqrt(variance)
    return z, 0.5 * math.erfc(z / math.sqrt(2.0))


@dataclass(frozen=True)
class ZTestState:
    """Snapshot after one look; counts are running totals. ``fired`` latches at the first look
    with ``p_value < alpha``, as a page would."""

    minutes: int
    n_new: int
    k_new: int
    n_base: int
    k_base: int
    z: float
    p_value: float
    fired: bool
    effect: float | None


class FixedHorizonZTest:
    """Two-proportion z-test on running totals, looked at after every minute's counts.

    :meth:`update` takes the same per-minute increments as
    :meth:`alerts.ReleaseSpikeDetector.update`.
    """

    name = "fixed_horizon_z"

    def __init__(self, alpha: float = 0.01) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError("alpha must be in (0, 1)")
        self.alpha = alpha
        self.reset()

    def reset(self) -> None:
        self._totals = [0, 0, 0, 0]
        self._minutes = 0
        self._fired = False
        self._opened_now = False
        self._state = ZTestState(0, 0, 0, 0, 0, 0.0, 1.0, False, None)

    @property
    def state(self) -> ZTestState:
        return self._state

    def update(self, n_new: int, k_new: int, n_base: int, k_base: int) -> ZTestState:
        """Add one minute of counts (increments) and re-run the test on the running totals."""
        totals = [a + b for a, b in zip(self._totals, (n_new, k_new, n_base, k_base), strict=True)]
        check_counts(n_new, k_new)
        check_counts(n_base, k_base)
        self._totals = totals
        self._minutes += 1
        z, p = two_proportion_z_test(*totals)
        was_fired = self._fired
        self._fired = self._fired or p < self.alpha
        self._opened_now = self._fired and not was_fired
        n1, k1, n2, k2 = totals
        effect = k1 / n1 - k2 / n2 if n1 and n2 else None
        self._state = ZTestState(self._minutes, n1, k1, n2, k2, z, p, self._fired, effect)
        return self._state

    def detection(self, key: str, at: datetime) -> Detection | None:
        if not self._opened_now:
            return None
        s = self._state
        return Detection(
            detector=self.name,
            key=key,
            opened_at=at,
            statistic=s.z,
            threshold=NormalDist().inv_cdf(1.0 - self.alpha),
            p_value=s.p_value,
            effect=s.effect,
            details={"minutes": s.minutes, "n_new": s.n_new, "n_base": s.n_base},
        )


@dataclass(frozen=True)
class MsprtState:
    """Snapshot after one update; counts are running totals. ``fired`` latches."""

    minutes: int
    n_new: int
    k_new: int
    n_base: int
    k_base: int
    log_e_value: float
    fired: bool


def msprt_log_e(n_new: int, k_new: int, n_base: int, k_base: int, tau: float) -> float:
    """Log of the one-sided normal-mixture likelihood ratio on running totals.

    With ``d`` the observed rate difference and ``V`` its pooled null variance, the Gaussian
    likelihood ratio ``exp(theta d / V - theta^2 / (2 V))`` mixed over a half-normal prior of scale
    ``tau`` on ``theta >= 0`` is ``2 sqrt(V / (V + tau^2)) exp(d^2 tau^2 / (2 V (V + tau^2)))
    Phi(d tau / sqrt(V (V + tau^2)))``. Zero while ``V`` is undefined.

    >>> round(msprt_log_e(2000, 80, 2000, 40, 0.02), 2)
    5.75
    """
    if n_new == 0 or n_base == 0:
        return 0.0
    pooled = (k_new + k_base) / (n_new + n_base)
    v = pooled * (1.0 - pooled) * (1.0 / n_new + 1.0 / n_base)
    if v <= 0.0:
        return 0.0
    d = k_new / n_new - k_base / n_base
    t2 = tau * tau
    x = d * tau / math.sqrt(v * (v + t2))
    log_phi = math.log(max(0.5 * math.erfc(-x / math.sqrt(2.0)), 1e-300))
    return math.log(2.0) + 0.5 * math.log(v / (v + t2)) + d * d * t2 / (2 * v * (v + t2)) + log_phi


def msprt_log_e_path(
    n_new: NDArray[np.int64],
    k_new: NDArray[np.int64],
    n_base: NDArray[np.int64],
    k_base: NDArray[np.int64],
    tau: float,
) -> NDArray[np.float64]:
    """:func:`msprt_log_e` on the running totals after every minute of per-minute counts, at once
    (what :class:`NormalMixtureMsprt` computes one update at a time)."""
    n1, k1, n2, k2 = (
        np.cumsum(np.asarray(a, dtype=np.float64)) for a in (n_new, k_new, n_base, k_base)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = (k1 + k2) / (n1 + n2)
        v = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)
        d = k1 / n1 - k2 / n2
        t2 = tau * tau
        x = d * tau / np.sqrt(v * (v + t2))
        log_phi = np.maximum(log_ndtr(x), math.log(1e-300))
        log_e = math.log(2.0) + 0.5 * np.log(v / (v + t2)) + d * d * t2 / (2 * v * (v + t2))
    result: NDArray[np.float64] = np.where((n1 > 0) & (n2 > 0) & (v > 0), log_e + log_phi, 0.0)
    return result


class NormalMixtureMsprt:
    """Textbook one-sided two-proportion mSPRT on running totals (Johari et al. 2017).

    ``tau`` is the mixing scale on the rate difference (e.g. 0.02-0.10). It fires, and stays
    fired, once the mixture likelihood ratio reaches ``1/alpha``. Its validity rests on the normal
    approximation and on independent events: at low counts and under overdispersion it promises
    more than it keeps (the delay bench reports its null rows too).
    :meth:`update` takes the same per-minute increments as
    :meth:`alerts.ReleaseSpikeDetector.update`.
    """

    name = "normal_mixture_msprt"

    def __init__(self, alpha: float = 0.01, tau: float = 0.05) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError("alpha must be in (0, 1)")
        if not tau > 0.0:
            raise ValueError("tau must be positive")
        self.alpha, self.tau = alpha, tau
        self.reset()

    def reset(self) -> None:
        self._totals = [0, 0, 0, 0]
        self._minutes = 0
        self._fired = False
        self._opened_now = False
        self._state = MsprtState(0, 0, 0, 0, 0, 0.0, False)

    @property
    def state(self) -> MsprtState:
        return self._state

    def update(self, n_new: int, k_new: int, n_base: int, k_base: int) -> MsprtState:
        """Add one minute of counts (increments) and recompute the mixture on the totals."""
        check_counts(n_new, k_new)
        check_counts(n_base, k_base)
        totals = [a + b for a, b in zip(self._totals, (n_new, k_new, n_base, k_base), strict=True)]
        self._totals = totals
        self._minutes += 1
        log_e = msprt_log_e(*totals, self.tau)
        was_fired = self._fired
        self._fired = self._fired or log_e >= math.log(1.0 / self.alpha)
        self._opened_now = self._fired and not was_fired
        self._state = MsprtState(self._minutes, *totals, log_e, self._fired)
        return self._state

    def detection(self, key: str, at: datetime) -> Detection | None:
        if not self._opened_now:
            return None
        s = self._state
        return Detection(
            detector=self.name, key=key, opened_at=at, statistic=math.exp(s.log_e_value),
            threshold=1.0 / self.alpha, p_value=min(1.0, math.exp(-s.log_e_value)),
            details={"minutes": s.minutes, "n_new": s.n_new, "n_base": s.n_base, "tau": self.tau},
        )  # fmt: skip


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
        check_counts(n, k)
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
