"""Slow degradation within one version: a quasi-likelihood CUSUM against a seasonal profile.

:class:`SeasonalCusum` accumulates the log-likelihood ratio of ``p0(t) + delta`` against the
seasonal expectation ``p0(t)`` (:mod:`alerts.detectors.seasonal`), divided by the history's
dispersion, and alarms at the larger of the Shiryaev-Roberts bound ``log(arl0)`` and a
block-bootstrap threshold of its own history (:func:`bootstrap_cusum_threshold`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from alerts.detectors.base import Detection
from alerts.detectors.calendar import hour_and_day_type
from alerts.detectors.counts import check_counts
from alerts.detectors.seasonal import SeasonalProfile, fit_seasonal_profile

__all__ = ["SeasonalCusum", "SeasonalCusumState", "bootstrap_cusum_threshold"]


@dataclass(frozen=True)
class SeasonalCusumState:
    """Snapshot of a :class:`SeasonalCusum` after one update.

    ``expected`` is this minute's in-control failure rate from the seasonal profile (``None``
    while warming up), ``dispersion`` the variance inflation the log-likelihood ratio is divided
    by this minute (the history's dispersion times the inflation for the error of this hour's
    learned rate), ``statistic`` the CUSUM sum and ``threshold`` its alarm level ``h``. During an
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

    The in-control rate of each minute is ``p0(t)`` from a
    :class:`~alerts.detectors.seasonal.SeasonalProfile` learned on the series' own history; the
    chart accumulates the log-likelihood ratio of ``p0(t) + delta`` against ``p0(t)``, divided
    by the history's dispersion ``phi``: ``S = max(0, S + llr(t) / phi)``, and alarms at
    ``S >= h``.

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

    Both take the profile's pattern as right: a rate that is higher than learned (history too
    short to see a weekly pattern, a change of the daily shape) is a change, and is paged as
    one. What they do account for is the profile's estimation error: each hour's rate rests on
    that hour's failures in the history (few of them when the history is sampled or short),
    and an hour under-estimated by chance reads as a small shift for the whole hour, every day.
    ``phi`` is therefore widened per hour and day type by the variance that error adds over
    the chart's horizon (:meth:`_profile_inflation`); with dense history (hundreds of failures
    an hour) the widening is small.

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
        self._scale: NDArray[np.float64] = np.ones((24, 2))  # (hour, day) -> what llr / by
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
        check_counts(n, k)
        hour, day = hour_and_day_type(at)
        index = int(at.timestamp() // 60)
        self._minute += 1
        self._fired = False
        if self._first_index is None:
            self._first_index = index
        expected: float | None = None
        scale: float | None = None
        if self._profile is None or self._minute - self._fitted_at >= self.refit_minutes:
            self._maybe_fit(index)
        if self._profile is not None:
            expected = self._profile.expected(hour, day)
            scale = float(self._scale[hour, day])
            self._step(n, k, at, index, hour, day, expected)
        self._remember(index, hour, day, n, k)
        self._state = self._snapshot(at, expected, scale)
        if self._fired:
            self._s = 0.0
            self._excursion = None
        return self._state

    def learn(self, history: Sequence[tuple[datetime, int, int]]) -> None:
        """Bulk-load past minutes ``(at, n, k)`` in time order, as :meth:`update` would have
        seen them while warming up (no testing); then fit the profile if there is enough."""
        for at, n, k in history:
            check_counts(n, k)
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
        self._scale = profile.dispersion * self._profile_inflation(profile, profile.dispersion)
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
        event, of ``p0 + delta`` against ``p0``, divided by ``dispersion`` times the profile's
        error inflation (:meth:`_profile_inflation`)."""
        p0, p1 = self._rates(profile)
        log_fail = np.log(p1 / p0)
        log_pass = np.log((1.0 - p1) / (1.0 - p0))
        table: NDArray[np.float64] = np.stack([log_fail - log_pass, log_pass], axis=-1)
        scale = dispersion * self._profile_inflation(profile, dispersion)
        return table / scale[:, :, None]

    def _rates(self, profile: SeasonalProfile) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        p0 = np.asarray(profile.hour_rate)[:, None] * np.asarray(profile.day_level)[None, :]
        p0 = np.clip(p0, 1e-6, 0.5)
        return p0, np.minimum(p0 + self.delta, 0.999)

    def _profile_inflation(
        self, profile: SeasonalProfile, dispersion: float
    ) -> NDArray[np.float64]:
        """Per (hour, day type): ``1 + E_w v / phi``, the variance the profile's own error adds
        to the chart's evidence, relative to the counts' (``phi`` times the binomial).

        The chart scores each minute against ``p0`` as if it were known, but ``p0`` is learned
        from the ``K`` failures of that hour in the history; its log is off by an error of
        variance ``v`` (:meth:`~alerts.detectors.seasonal.SeasonalProfile.log_rate_variance`,
        about ``phi / K``), the same for every minute of the hour. Over a window of ``w``
        minutes of the hour holding ``E_w`` expected failures, the failures minus their
        expectation then have variance ``phi E_w + E_w^2 v`` instead of ``phi E_w``. The
        quasi-likelihood argument behind the Shiryaev-Roberts bound (``E[exp(llr / phi)] <= 1``
        over a block whose counts have ``phi`` times the binomial variance) holds over such a
        window with ``phi (1 + E_w v / phi)`` in place of ``phi``, which is what this widens
        by. The window is the chart's own horizon: an in-control excursion that reaches the
        bound ``log(arl0)`` climbs, conditionally on reaching it, like the chart under
        ``p0 + delta`` (the exponential tilt of a likelihood ratio), so it spans about
        ``log(arl0) phi / (n KL(p0 + delta, p0))`` minutes at ``n`` events a minute; at most
        the hour, since the next hour's error is another, independent one. ``E_w / K`` is then
        about the window's share of the history's minutes of that hour: small where failures
        are many a minute (an alarm's evidence comes in minutes) and the history long, up to
        ``1 / days`` of history where a sample's few failures make the chart gather its
        evidence over the whole hour. An hour without traffic has nothing to widen.
        """
        p0, p1 = self._rates(profile)
        kl = p1 * np.log(p1 / p0) + (1.0 - p1) * np.log((1.0 - p1) / (1.0 - p0))
        per_minute = np.asarray(profile.hour_events_per_minute)[:, None]
        drift = np.maximum(per_minute * kl / dispersion, 1e-12)
        window = np.clip(self.bound_threshold / drift, 1.0, _PROFILE_WINDOW)
        expected_failures = per_minute * p0 * window
        inflation: NDArray[np.float64] = (
            1.0 + expected_failures * profile.log_rate_variance() / dispersion
        )
        return inflation

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

    def _snapshot(
        self, at: datetime, expected: float | None, scale: float | None
    ) -> SeasonalCusumState:
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
            dispersion=scale,
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
_PROFILE_WINDOW = 60.0  # minutes: a profile cell (an hour) shares one estimation error
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
