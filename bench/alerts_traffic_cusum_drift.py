"""Traffic-realism benchmark of the slow-degradation CUSUM and the prompt-drift test.

Run ``python bench/alerts_traffic_cusum_drift.py`` (``--quick`` for a smoke run of a few runs per
row, ``--json`` for one JSON document on stdout). Every figure comes from a seeded simulation in
this run; the detector code is the production code (:class:`alerts.SeasonalCusum`,
:func:`alerts.mmd_permutation_test` with the monitor's window rules), fed in memory instead
of through ClickHouse so that hundreds of simulated days fit in minutes.

CUSUM (per-minute counts of one series; a false alarm is any alarm on a day without a change):

* ``iid`` — 200 events/min, 2 % failures, independent.
* ``betabin ICC r`` — each minute's failure probability drawn from a beta law with mean 2 % and
  intraclass correlation ``r`` (0.002, 0.01, 0.03): extra-binomial variance.
* ``retry storms`` — on top of i.i.d. traffic, one storm an hour: a user retries a failing
  request 15–40 times over up to five minutes, every copy failing (raw counts, no de-duplication);
  and the same storms counted once each, as the series reads that count independent units see
  them.
* ``daily cycle (rate)`` — the failure rate moves between 1 % at 03:00 and 3 % at 15:00 UTC.
* ``daily cycle (rate+traffic)`` — the same, with traffic moving between 50 and 350 events/min.
* ``weekend`` — the daily cycle, and on Saturdays and Sundays 1.4× the rate at half the traffic;
  the history is the week before, the monitored day a Sunday.
* ``low traffic 0.2/min``, ``low traffic 2/min`` — 2 %, i.i.d., a week of history.

Each null run learns the profile from the history days before the monitored day (two days, or a
week where stated) and counts alarms over one monitored day. The promise is the CUSUM's: at most
``1440 / arl0_minutes`` false alarms a day (ARL0 = 30 days: 0.033 a day); the table shows the
fraction of days with an alarm, its 95 % Wilson interval, and whether the interval's upper end is
at most twice the promise. For context, the previous detector (a Bernoulli CUSUM with ``p0`` from
a 60-minute warm-up) is run on the daily-cycle row.

Changes: 200 events/min on a 2 % base, the rate steps up by 1, 2 or 5 points at a random minute of
the monitored day; the delay runs from the change to the first alarm (runs that alarm before the
change are counted apart). Next to it, the size of a one-sided fixed-horizon z-test with 80 %
power at a per-day level of ``1/30`` (the CUSUM's own false-alarm budget), in minutes of traffic.

Drift (64-d embeddings: eight random topic centres, prompts are unit-normalised Gaussian clusters
around them; users send sessions of 1–6 prompts on one topic):

* ``daily topic cycle`` — the topic mix follows the hour of day; no change. Hourly looks over one
  day with the seasonal reference (the same hours of the previous three days) and, for context,
  with the previous detector's reference (the 24 hours before the window).
* ``retry storm`` — no change, but in every window one user re-sends a near-identical off-topic
  prompt 30 times; unit permutations (by user) against per-prompt permutations.
* ``low traffic 10/h`` — no change at ten prompts an hour, count windows of 50 prompts.
* ``topic drift 35 %`` — from a random hour of the monitored day on, 35 % of prompts come from a
  new topic; delay in hours at 600 prompts/hour (hourly windows) and at 10 prompts/hour (count
  windows), and the number of incidents that one sustained shift opens with hysteresis
  (``clean_looks = 3``, reference frozen before the incident) and under the previous rule (an
  incident per run of firing looks, on the same looks' p-values).

Drift looks are tested at ``alpha = 0.05`` a day (24 looks, Bonferroni) so that the null days can
check the promise (``--drift-runs``, 50 by default; the rows marked "old" run a tenth of that, and
the change rows a fifth, with 999 permutations); the production default (0.01) is evaluated on
the same looks' p-values.
``--only cusum`` or ``--only drift`` runs one half of the matrix; ``--only drift-null`` only the
two main drift null rows (in two processes), for more runs than the full matrix can afford.
The machine running this may be shared: timings are indicative only.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import NDArray

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from alerts.detectors import (  # noqa: E402
    DriftHysteresis,
    SeasonalCusum,
    collapse_repeats,
    look_level,
    mmd_permutation_test,
)
from bench.baselines import BernoulliCusum  # noqa: E402

MINUTES_PER_DAY = 1440
MONDAY = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
ARL0_MINUTES = 43_200.0
PROMISE_PER_DAY = MINUTES_PER_DAY / ARL0_MINUTES

Floats = NDArray[np.float64]


def wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion."""
    if trials == 0:
        return (0.0, 1.0)
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = (
        z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    )
    return (max(0.0, centre - half), min(1.0, centre + half))


# --- CUSUM traffic ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Traffic:
    """A per-minute traffic law: events per minute and failure rate as functions of the minute's
    hour of day and day type, extra-binomial variation, and retry storms."""

    per_minute: Callable[[Floats, Floats], Floats]
    rate: Callable[[Floats, Floats], Floats]
    icc: float = 0.0
    storms_per_hour: float = 0.0
    storms_counted_once: bool = False  # what the unit de-duplication of the series reads does


def _flat(value: float) -> Callable[[Floats, Floats], Floats]:
    return lambda hours, weekend: np.full_like(hours, value)


def _cycle(
    low: float, high: float, weekend_factor: float = 1.0
) -> Callable[[Floats, Floats], Floats]:
    """``low`` at 03:00 UTC, ``high`` at 15:00, scaled by ``weekend_factor`` on weekends."""

    def law(hours: Floats, weekend: Floats) -> Floats:
        mid, amp = (high + low) / 2, (high - low) / 2
        value = mid - amp * np.cos(2 * np.pi * (hours - 3.0) / 24.0)
        return value * np.where(weekend > 0, weekend_factor, 1.0)

    return law


def simulate_counts(
    rng: np.random.Generator,
    start: datetime,
    minutes: int,
    law: Traffic,
    shift: Floats | None = None,
) -> tuple[list[datetime], NDArray[np.int64], NDArray[np.int64]]:
    """Per-minute ``(at, n, k)`` from ``start``; ``shift`` adds to the rate minute by minute."""
    ats = [start + timedelta(minutes=i) for i in range(minutes)]
    hours = np.array([a.hour + a.minute / 60.0 for a in ats])
    weekend = np.array([float(a.weekday() >= 5) for a in ats])
    n = rng.poisson(law.per_minute(hours, weekend)).astype(np.int64)
    p = law.rate(hours, weekend)
    if shift is not None:
        p = p + shift
    p = np.clip(p, 1e-6, 0.999)
    if law.icc > 0:
        scale = (1.0 - law.icc) / law.icc
        p = rng.beta(p * scale, (1.0 - p) * scale)
    k = rng.binomial(n, p).astype(np.int64)
    if law.storms_per_hour > 0:
        for begin in np.flatnonzero(rng.random(minutes) < law.storms_per_hour / 60.0):
            size = int(rng.integers(15, 41))
            span = int(rng.integers(1, 6))
            if law.storms_counted_once:
                size = span = 1
            for j, part in enumerate(np.array_split(np.ones(size, dtype=np.int64), span)):
                if begin + j < minutes:
                    n[begin + j] += len(part)
                    k[begin + j] += len(part)
    return ats, n, k


@dataclass
class NullRow:
    scenario: str
    runs: int
    days_with_alarm: int
    alarms: int
    rate: float
    low: float
    high: float
    promise: float
    meets: bool
    mean_dispersion: float
    warming_up_runs: int


def cusum_null(
    name: str,
    law: Traffic,
    runs: int,
    seed: int,
    *,
    history_days: int = 2,
    start: datetime = MONDAY,
) -> NullRow:
    alarm_days = alarms = warm = 0
    dispersions = []
    for run in range(runs):
        rng = np.random.default_rng([seed, run])
        total = (history_days + 1) * MINUTES_PER_DAY
        ats, n, k = simulate_counts(rng, start, total, law)
        cut = history_days * MINUTES_PER_DAY
        det = SeasonalCusum(arl0_minutes=ARL0_MINUTES)
        det.learn(list(zip(ats[:cut], n[:cut].tolist(), k[:cut].tolist(), strict=True)))
        fired = 0
        for i in range(cut, total):
            fired += det.update(int(n[i]), int(k[i]), ats[i]).fired
        if det.profile is None:
            warm += 1
        else:
            dispersions.append(det.profile.dispersion)
        alarms += fired
        alarm_days += fired > 0
    low, high = wilson(alarm_days, runs)
    return NullRow(
        name, runs, alarm_days, alarms, alarm_days / runs, low, high, PROMISE_PER_DAY,
        high <= 2 * PROMISE_PER_DAY, float(np.mean(dispersions)) if dispersions else float("nan"),
        warm,
    )  # fmt: skip


def old_cusum_alarms(law: Traffic, runs: int, seed: int) -> list[int]:
    """Alarms a day of the previous detector (p0 from a 60-minute warm-up at a random hour)."""
    out = []
    for run in range(runs):
        rng = np.random.default_rng([seed, run])
        offset = int(rng.integers(0, 24)) * 60
        _, n, k = simulate_counts(
            rng, MONDAY + timedelta(minutes=offset), MINUTES_PER_DAY + 60, law
        )
        det = BernoulliCusum(delta=0.01, arl0_minutes=ARL0_MINUTES, warmup_minutes=60, seed=run)
        out.append(sum(det.update(int(a), int(b)).fired for a, b in zip(n, k, strict=True)))
    return out


@dataclass
class ChangeRow:
    shift_pp: float
    runs: int
    detected: int
    false_before: int
    median_delay_min: float
    p80_delay_min: float
    fixed_horizon_min: float
    p80_ratio: float


def fixed_horizon_minutes(p0: float, delta: float, per_minute: float, alpha: float) -> float:
    """Minutes of traffic a one-sided z-test needs for 80 % power at level ``alpha``."""
    z_a, z_b = NormalDist().inv_cdf(1 - alpha), NormalDist().inv_cdf(0.8)
    p1 = p0 + delta
    events = ((z_a * math.sqrt(p0 * (1 - p0)) + z_b * math.sqrt(p1 * (1 - p1))) / delta) ** 2
    return events / per_minute


def cusum_change(shift: float, runs: int, seed: int) -> ChangeRow:
    law = Traffic(_flat(200.0), _flat(0.02))
    delays: list[int] = []
    false_before = 0
    for run in range(runs):
        rng = np.random.default_rng([seed, run])
        total = 3 * MINUTES_PER_DAY
        cut = 2 * MINUTES_PER_DAY
        change = cut + int(rng.integers(60, 720))
        bump = np.where(np.arange(total) >= change, shift, 0.0)
        ats, n, k = simulate_counts(rng, MONDAY, total, law, bump)
        det = SeasonalCusum(arl0_minutes=ARL0_MINUTES)
        det.learn(list(zip(ats[:cut], n[:cut].tolist(), k[:cut].tolist(), strict=True)))
        for i in range(cut, total):
            if det.update(int(n[i]), int(k[i]), ats[i]).fired:
                if i < change:
                    false_before += 1
                else:
                    delays.append(i + 1 - change)
                break
    oracle = fixed_horizon_minutes(0.02, shift, 200.0, PROMISE_PER_DAY)
    med = float(np.median(delays)) if delays else float("nan")
    p80 = float(np.percentile(delays, 80)) if delays else float("nan")
    return ChangeRow(shift * 100, runs, len(delays), false_before, med, p80, oracle, p80 / oracle)


# --- drift --------------------------------------------------------------------------------------

DIM = 64


@dataclass(frozen=True)
class Prompts:
    at: NDArray[np.int64]  # minute index from the simulation start
    vectors: Floats
    units: NDArray[np.int64]


def _topic_space(rng: np.random.Generator, topics: int) -> Floats:
    centres = rng.normal(size=(topics, DIM))
    return centres / np.linalg.norm(centres, axis=1, keepdims=True) * 1.5


def _hourly_mix(hour: Floats, topics: int, cycle: bool) -> Floats:
    """Topic weights by hour: with ``cycle``, each topic peaks at its own hour of the day."""
    if not cycle:
        return np.full((len(hour), topics), 1.0 / topics)
    phase = np.arange(topics) * 24.0 / topics
    weights = np.exp(1.2 * np.cos(2 * np.pi * (hour[:, None] - phase[None, :]) / 24.0))
    mix: Floats = weights / weights.sum(axis=1, keepdims=True)
    return mix


def simulate_prompts(
    rng: np.random.Generator,
    centres: Floats,
    minutes: int,
    per_hour: float,
    *,
    cycle: bool,
    drift_from: int | None = None,
    drift_share: float = 0.35,
    new_topic: Floats | None = None,
    storm_every: int = 0,
) -> Prompts:
    """Sessions of 1–6 prompts on one topic from distinct users, Poisson over the minutes."""
    topics = len(centres)
    sessions = rng.poisson(per_hour / 3.5 / 60.0 * minutes)
    start = np.sort(rng.integers(0, minutes, sessions))
    mix = _hourly_mix((start % MINUTES_PER_DAY) / 60.0, topics, cycle)
    cumulative = mix.cumsum(axis=1)
    topic = (rng.random(sessions)[:, None] > cumulative).sum(axis=1)
    vectors_centres = centres[np.minimum(topic, topics - 1)]
    if drift_from is not None and new_topic is not None:
        moved = (start >= drift_from) & (rng.random(sessions) < drift_share)
        vectors_centres = np.where(moved[:, None], new_topic[None, :], vectors_centres)
    lengths = rng.integers(1, 7, sessions)
    rows = np.repeat(np.arange(sessions), lengths)
    at = np.minimum(start[rows] + rng.integers(0, 5, len(rows)), minutes - 1)
    x = vectors_centres[rows] + rng.normal(0.0, 0.6, (len(rows), DIM))
    units = rows.astype(np.int64)
    if storm_every:
        # One user per window re-sends one off-topic prompt 30 times with tiny rephrasings.
        odd = rng.normal(size=DIM)
        odd = odd / np.linalg.norm(odd) * 1.5
        extra_at, extra_x, extra_u = [], [], []
        for window_start in range(0, minutes, storm_every):
            base = odd + rng.normal(0.0, 0.6, DIM)
            for _ in range(30):
                extra_at.append(window_start + int(rng.integers(0, storm_every)))
                extra_x.append(base + rng.normal(0.0, 0.02, DIM))
                extra_u.append(10_000_000 + window_start)
        at = np.concatenate([at, np.array(extra_at)])
        x = np.vstack([x, np.array(extra_x)])
        units = np.concatenate([units, np.array(extra_u, dtype=np.int64)])
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    order = np.argsort(at, kind="stable")
    return Prompts(at[order], x[order], units[order])


def _take(
    p: Prompts, spans: list[tuple[int, int]], limit: int, rng: np.random.Generator
) -> tuple[Floats, NDArray[np.int64]]:
    mask = np.zeros(len(p.at), dtype=bool)
    for lo, hi in spans:
        mask |= (p.at >= lo) & (p.at < hi)
    idx = np.flatnonzero(mask)
    if len(idx) > limit:  # whole units, in random order, as the monitor's read samples them
        units = p.units[idx]
        order = rng.permutation(np.unique(units))
        rank = np.empty(int(order.max()) + 1, dtype=np.int64)
        rank[order] = np.arange(len(order))
        idx = np.sort(idx[np.argsort(rank[units], kind="stable")][:limit])
    return p.vectors[idx], p.units[idx]


@dataclass
class DriftSettings:
    window: int = 60
    min_prompts: int = 50
    longest: int = MINUTES_PER_DAY
    reference_days: int = 3
    seasonal: bool = True
    units: bool = True
    recent_limit: int = 200
    reference_limit: int = 400
    alpha: float = 0.05
    horizon: int = 24
    permutations: int = 2999  # the smallest p-value, 1/3000, is below 0.01/24


def drift_looks(
    p: Prompts, first_end: int, last_end: int, s: DriftSettings, seed: int
) -> list[tuple[int, float, str, int]]:
    """``(look end, p-value, incident outcome, window minutes)`` of every look on the hourly grid in
    ``[first_end, last_end]``, with the monitor's rules: count windows, seasonal (or contiguous)
    reference frozen before an open incident, hysteresis."""
    rng = np.random.default_rng(seed)
    looks: list[tuple[int, float, str, int]] = []
    pending: int | None = None
    hysteresis = DriftHysteresis(clean_level=0.05, clean_looks=3)
    opened_at: int | None = None
    for end in range(first_end, last_end + 1, 60):
        start = end - s.window if pending is None else min(end - s.window, pending)
        start = max(start, end - s.longest)
        y, y_units = _take(p, [(start, end)], s.recent_limit, rng)
        if len(y) < s.min_prompts:
            if len(y):
                pending = start  # a skipped look leaves its prompts to the next window
            continue
        if s.seasonal:
            spans = [(start - d * MINUTES_PER_DAY, end - d * MINUTES_PER_DAY)
                     for d in range(1, 15)
                     if opened_at is None or end - d * MINUTES_PER_DAY <= opened_at
                     ][: s.reference_days]  # fmt: skip
        else:
            spans = [(start - MINUTES_PER_DAY, start)]
        x, x_units = _take(p, spans, s.reference_limit, rng)
        if len(x) < s.min_prompts:
            pending = end
            continue
        if s.units:
            keep_x = collapse_repeats(x, x_units.tolist())
            keep_y = collapse_repeats(y, y_units.tolist())
            x, x_units, y, y_units = x[keep_x], x_units[keep_x], y[keep_y], y_units[keep_y]
        result = mmd_permutation_test(
            x, y, s.permutations, seed=int(rng.integers(2**31)), stop_after=20,
            reference_units=x_units.tolist() if s.units else None,
            recent_units=y_units.tolist() if s.units else None,
        )  # fmt: skip
        level = _level(s.alpha, s, end - start)
        outcome = hysteresis.update(result.p_value <= level, result.p_value)
        if outcome == "opened":
            opened_at = start
        elif outcome == "resolved":
            opened_at = None
        looks.append((end, result.p_value, outcome, end - start))
        pending = end
    return looks


def _level(alpha: float, s: DriftSettings, window: int) -> float:
    return look_level(alpha, s.horizon, timedelta(minutes=window), timedelta(minutes=60))


@dataclass
class DriftNullRow:
    scenario: str
    runs: int
    looks: int
    days_with_alarm: int
    rate: float
    low: float
    high: float
    promise: float
    meets: bool
    days_with_alarm_at_001: int


def drift_null(
    name: str, runs: int, seed: int, s: DriftSettings, *, per_hour: float, cycle: bool,
    storm: bool = False,
) -> DriftNullRow:  # fmt: skip
    days = days001 = looks = 0
    history = s.reference_days + 1
    for run in range(runs):
        rng = np.random.default_rng([seed, run])
        centres = _topic_space(rng, 8)
        minutes = (history + 1) * MINUTES_PER_DAY
        p = simulate_prompts(rng, centres, minutes, per_hour, cycle=cycle,
                             storm_every=s.window if storm else 0)  # fmt: skip
        day_start = history * MINUTES_PER_DAY
        found = drift_looks(p, day_start + 60, minutes, s, seed=run)
        looks += len(found)
        alarm = any(pv <= _level(s.alpha, s, w) for _, pv, _, w in found)
        alarm001 = any(pv <= _level(0.01, s, w) for _, pv, _, w in found)
        days += alarm
        days001 += alarm001
        # One line a run on stderr, so a long run can be read while it goes.
        print(f"{name} | run {run} | alarm {int(alarm)} | at 0.01 {int(alarm001)}",
              file=sys.stderr, flush=True)  # fmt: skip
    low, high = wilson(days, runs)
    return DriftNullRow(name, runs, looks, days, days / runs, low, high, s.alpha,
                        high <= 2 * s.alpha, days001)  # fmt: skip


@dataclass
class DriftChangeRow:
    scenario: str
    runs: int
    detected: int
    false_before: int
    median_delay_h: float
    p80_delay_h: float
    incidents_with_hysteresis: float
    incidents_without: float


def _incidents(looks: list[tuple[int, float, str, int]], s: DriftSettings, hysteresis: bool) -> int:
    if hysteresis:
        return sum(outcome == "opened" for _, _, outcome, _ in looks)
    opened, firing = 0, False
    for _, pv, _, window in looks:
        fired = pv <= _level(s.alpha, s, window)
        opened += fired and not firing  # the previous rule: it clears at the first quiet look
        firing = fired
    return opened


def drift_change(
    name: str, runs: int, seed: int, s: DriftSettings, *, per_hour: float, watch_days: int
) -> DriftChangeRow:
    delays: list[float] = []
    false_before = 0
    with_h, without = [], []
    history = s.reference_days + 1
    for run in range(runs):
        rng = np.random.default_rng([seed, run])
        centres = _topic_space(rng, 9)
        minutes = (history + watch_days) * MINUTES_PER_DAY
        day_start = history * MINUTES_PER_DAY
        change = day_start + int(rng.integers(1, 12)) * 60 + int(rng.integers(0, 60))
        p = simulate_prompts(rng, centres[:8], minutes, per_hour, cycle=True, drift_from=change,
                             new_topic=centres[8])  # fmt: skip
        found = drift_looks(p, day_start + 60, minutes, s, seed=run)
        before = [look for look in found if look[0] <= change]
        after = [look for look in found if look[0] > change]
        if any(pv <= _level(s.alpha, s, w) for _, pv, _, w in before):
            false_before += 1
            continue
        hit = next((end for end, pv, _, w in after if pv <= _level(s.alpha, s, w)), None)
        if hit is not None:
            delays.append((hit - change) / 60.0)
        with_h.append(_incidents(after, s, True))
        without.append(_incidents(after, s, False))
    return DriftChangeRow(
        name, runs, len(delays), false_before,
        float(np.median(delays)) if delays else float("nan"),
        float(np.percentile(delays, 80)) if delays else float("nan"),
        float(np.mean(with_h)) if with_h else float("nan"),
        float(np.mean(without)) if without else float("nan"),
    )  # fmt: skip


# --- driver -------------------------------------------------------------------------------------


def run(quick: bool, only: str | None = None, drift_runs: int = 50) -> dict[str, Any]:
    cusum_runs = 4 if quick else 200
    change_runs = 4 if quick else 100
    drift_runs = 1 if quick else drift_runs
    drift_change_runs = 1 if quick else max(1, drift_runs // 5)
    result: dict[str, Any] = {}
    if only in (None, "cusum"):
        result |= _run_cusum(cusum_runs, change_runs, quick)
    if only in (None, "drift"):
        result |= _run_drift(drift_runs, drift_change_runs)
    if only == "drift-null":
        result |= _run_drift_null(drift_runs)
    return result


def _null_row(args: tuple[str, int, int, float]) -> DriftNullRow:
    name, runs, seed, per_hour = args
    return drift_null(name, runs, seed, DriftSettings(), per_hour=per_hour, cycle=True)


def _run_drift_null(runs: int) -> dict[str, Any]:
    """Only the two main null rows of the drift test (same seeds as the full run), one process
    each: enough runs to bound the false-alarm rate tightly in bounded time."""
    from concurrent.futures import ProcessPoolExecutor

    t = time.perf_counter()
    rows = [
        ("daily topic cycle, seasonal reference", runs, 300, 600.0),
        ("low traffic 10/h, count windows of 50", runs, 304, 10.0),
    ]
    with ProcessPoolExecutor(max_workers=len(rows)) as pool:
        found = list(pool.map(_null_row, rows))
    return {
        "drift_null": [asdict(r) for r in found],
        "drift_change": [],
        "seconds_drift": round(time.perf_counter() - t, 1),
    }


def _run_cusum(cusum_runs: int, change_runs: int, quick: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    cycle_rate = _cycle(0.01, 0.03)
    laws: list[tuple[str, Traffic, int, datetime]] = [
        ("iid", Traffic(_flat(200.0), _flat(0.02)), 2, MONDAY),
        ("betabin ICC 0.002", Traffic(_flat(200.0), _flat(0.02), icc=0.002), 2, MONDAY),
        ("betabin ICC 0.01", Traffic(_flat(200.0), _flat(0.02), icc=0.01), 2, MONDAY),
        ("betabin ICC 0.03", Traffic(_flat(200.0), _flat(0.02), icc=0.03), 2, MONDAY),
        ("retry storms 1/h", Traffic(_flat(200.0), _flat(0.02), storms_per_hour=1.0), 2, MONDAY),
        ("retry storms 1/h, de-duplicated",
         Traffic(_flat(200.0), _flat(0.02), storms_per_hour=1.0, storms_counted_once=True), 2,
         MONDAY),
        ("daily cycle (rate)", Traffic(_flat(200.0), cycle_rate), 2, MONDAY),
        ("daily cycle (rate+traffic)", Traffic(_cycle(50.0, 350.0), cycle_rate), 2, MONDAY),
        ("weekend (Sunday, week of history)",
         Traffic(_cycle(50.0, 350.0, 0.5), _cycle(0.01, 0.03, 1.4)), 7, MONDAY - timedelta(days=1)),
        ("low traffic 0.2/min", Traffic(_flat(0.2), _flat(0.02)), 7, MONDAY),
        ("low traffic 2/min", Traffic(_flat(2.0), _flat(0.02)), 7, MONDAY),
    ]  # fmt: skip
    null_rows = [
        cusum_null(name, law, cusum_runs, seed=100 + i, history_days=days, start=start)
        for i, (name, law, days, start) in enumerate(laws)
    ]
    old = old_cusum_alarms(Traffic(_flat(200.0), cycle_rate), 4 if quick else 24, seed=7)
    change_rows = [
        cusum_change(d, change_runs, seed=200 + i) for i, d in enumerate((0.01, 0.02, 0.05))
    ]
    return {
        "cusum_null": [asdict(r) for r in null_rows],
        "old_cusum_daily_cycle_alarms_per_day": {
            "runs": len(old), "median": float(np.median(old)), "min": min(old), "max": max(old),
        },
        "cusum_change": [asdict(r) for r in change_rows],
        "seconds_cusum": round(time.perf_counter() - t0, 1),
    }  # fmt: skip


def _run_drift(drift_runs: int, drift_change_runs: int) -> dict[str, Any]:
    t1 = time.perf_counter()
    seasonal = DriftSettings()
    # Changes are judged at alpha = 0.05 a day only: 999 permutations reach its per-look level
    # and a look that fires costs a third of the null rows' 2999.
    changing = DriftSettings(permutations=999)
    drift_rows = [
        drift_null("daily topic cycle, seasonal reference", drift_runs, 300, seasonal,
                   per_hour=600.0, cycle=True),
        drift_null("daily topic cycle, previous 24 h (old)", max(1, drift_runs // 10), 301,
                   DriftSettings(seasonal=False, units=False), per_hour=600.0, cycle=True),
        drift_null("retry storm, unit permutation", drift_runs, 302, seasonal, per_hour=600.0,
                   cycle=True, storm=True),
        drift_null("retry storm, prompt permutation (old)", max(1, drift_runs // 10), 303,
                   DriftSettings(units=False), per_hour=600.0, cycle=True, storm=True),
        drift_null("low traffic 10/h, count windows of 50", drift_runs, 304, seasonal,
                   per_hour=10.0, cycle=True),
    ]  # fmt: skip
    drift_changes = [
        drift_change("35 % drift, 600/h, hourly windows", drift_change_runs, 400, changing,
                     per_hour=600.0, watch_days=1),
        drift_change("35 % drift, 10/h, count windows of 50", drift_change_runs, 401, changing,
                     per_hour=10.0, watch_days=3),
    ]  # fmt: skip
    return {
        "drift_null": [asdict(r) for r in drift_rows],
        "drift_change": [asdict(r) for r in drift_changes],
        "seconds_drift": round(time.perf_counter() - t1, 1),
    }


def _print(result: dict[str, Any]) -> None:
    if "cusum_null" in result:
        _print_cusum(result)
    if "drift_null" in result:
        _print_drift(result)


def _print_cusum(result: dict[str, Any]) -> None:
    print(f"CUSUM, no change (promise: <= {PROMISE_PER_DAY:.4f} false alarms/day; "
          "requirement: Wilson upper <= 2x promise)")  # fmt: skip
    print(f"{'scenario':36} {'runs':>5} {'days w/ alarm':>13} {'rate':>7} {'95% CI':>17} "
          f"{'meets':>6} {'disp':>6} {'warming':>7}")  # fmt: skip
    for r in result["cusum_null"]:
        print(f"{r['scenario']:36} {r['runs']:5d} {r['days_with_alarm']:13d} {r['rate']:7.4f} "
              f"[{r['low']:.4f}, {r['high']:.4f}] {r['meets']!s:>6} "
              f"{r['mean_dispersion']:6.2f} {r['warming_up_runs']:7d}")  # fmt: skip
    old = result["old_cusum_daily_cycle_alarms_per_day"]
    print(
        f"previous CUSUM (60-min warm-up) on the daily rate cycle: alarms/day median "
        f"{old['median']:.0f} (min {old['min']}, max {old['max']}) over {old['runs']} runs"
    )
    print("\nCUSUM, step on a 2 % base at 200 events/min")
    print(f"{'shift':>6} {'runs':>5} {'detected':>8} {'false<':>6} {'median':>7} {'p80':>6} "
          f"{'fixed-h':>7} {'p80/fh':>6}")  # fmt: skip
    for r in result["cusum_change"]:
        print(f"{r['shift_pp']:5.0f}pp {r['runs']:5d} {r['detected']:8d} {r['false_before']:6d} "
              f"{r['median_delay_min']:7.1f} {r['p80_delay_min']:6.1f} "
              f"{r['fixed_horizon_min']:7.1f} {r['p80_ratio']:6.2f}")  # fmt: skip
    print(f"seconds: {result['seconds_cusum']}")


def _print_drift(result: dict[str, Any]) -> None:
    print("\nDrift, no change (alpha per day as promised; count of days at the default 0.01 too)")
    print(f"{'scenario':42} {'runs':>5} {'looks':>6} {'days':>5} {'rate':>6} {'95% CI':>15} "
          f"{'promise':>7} {'meets':>6} {'@0.01':>6}")  # fmt: skip
    for r in result["drift_null"]:
        print(f"{r['scenario']:42} {r['runs']:5d} {r['looks']:6d} {r['days_with_alarm']:5d} "
              f"{r['rate']:6.3f} [{r['low']:.3f}, {r['high']:.3f}] {r['promise']:7.3f} "
              f"{r['meets']!s:>6} {r['days_with_alarm_at_001']:6d}")  # fmt: skip
    print("\nDrift, 35 % of prompts move to a new topic")
    print(f"{'scenario':40} {'runs':>5} {'found':>5} {'false<':>6} {'median h':>8} {'p80 h':>6} "
          f"{'incidents (hyst.)':>17} {'(old rule)':>10}")  # fmt: skip
    for r in result["drift_change"]:
        print(
            f"{r['scenario']:40} {r['runs']:5d} {r['detected']:5d} {r['false_before']:6d} "
            f"{r['median_delay_h']:8.1f} {r['p80_delay_h']:6.1f} "
            f"{r['incidents_with_hysteresis']:17.2f} {r['incidents_without']:10.2f}"
        )
    print(f"seconds: {result['seconds_drift']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few runs per row (smoke test)")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument(
        "--only", choices=["cusum", "drift", "drift-null"], help="one part of the matrix"
    )
    parser.add_argument("--drift-runs", type=int, default=50, help="null runs per drift row")
    args = parser.parse_args(argv)
    result = run(args.quick, args.only, args.drift_runs)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
