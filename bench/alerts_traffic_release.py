"""The release test on traffic shaped like production: false alarms and detection delays.

Run ``python bench/alerts_traffic_release.py`` (``--quick`` for a small smoke run, ``--json`` for
one JSON document). Every figure comes from a seeded simulation in this run; nothing is
hard-coded. The detector math runs in memory exactly as the monitor's release track drives it:
independent units per minute, :class:`~alerts.detectors.buckets.AdaptiveBuckets`, the variance
components from the baseline's own simulated history (:func:`estimate_dispersion`),
:class:`~alerts.ReleaseSpikeDetector` tempered by them, like-with-like lags
(:func:`like_with_like_lags`) after a cut-over, and the monitor's default settings.

Scenarios (2% base failure rate, ``alpha = 0.01``, 200 units a minute per version unless said):

* **i.i.d.** — a 50/50 canary, independent Bernoulli events.
* **beta-binomial ICC** 0.002 / 0.01 / 0.03 — each version's minute draws its own rate from a
  beta distribution with that intraclass correlation.
* **sticky retry storms** — about three storms an hour; one user retries a failing request 15-40
  times within three minutes, all copies on the version serving that user. ``units`` is what the
  monitor counts (repeats of one request are one unit: :func:`storage.series.unit_counts`);
  ``raw events`` counts every copy (the old behaviour), for contrast.
* **weekend** — a full cut-over at Sunday 00:00, 36 h monitored against lagged baselines; the
  rate is 2.5% on weekdays and 1.5% at weekends, with a daily cycle in rate and traffic and a 7%
  day-to-day level noise. ``8-day history`` has the week-earlier lag; ``5-day history`` forces
  Monday onto the Friday before (never the Sunday).
* **late rows** 5 / 10 / 30% — that share of the successes (or of the failures) arrives two hours
  late, beyond the settle time, for both versions; a cut-over with a one-day lagged baseline,
  12 h monitored. The live view reads the baseline *as of* the same lateness; when the late rows
  land the monitor recomputes on complete data. A run false-alarms if either view alarms.
  ``no as-of`` reads the baseline complete (the old behaviour), for contrast.
* **low traffic** 0.2 and 2 units/min — a cut-over, lagged one day, 48 h monitored.
* **canary** 1 / 5 / 50% of 200 units/min, with retry storms.

Null scenarios run ``--null-runs`` (default 200) times; the false-alarm rate has a 95% Wilson
interval, and the requirement is that its upper end is at most twice the promise ``alpha``.
Change scenarios (+1 / +2 / +5 pp on 2% at 200 a minute per version, a 50/50 canary) report the
median and 80th percentile delay in minutes and the ratio of that p80 to the minutes an oracle
fixed-horizon z-test needs for 80% power at the same alpha; the requirement is a ratio of at
most 2.0 for +1 and +2 pp. Low-traffic changes (2% -> 12%) report the delay in hours (a verdict
within a day is the goal).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import NormalDist

import numpy as np
from numpy.typing import NDArray

# ``python bench/...`` puts bench/ first on sys.path; the repository root goes there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from alerts.detectors import (  # noqa: E402
    AdaptiveBuckets,
    ReleaseSpikeDetector,
    estimate_dispersion,
    like_with_like_lags,
)
from alerts.settings import MonitorConfig  # noqa: E402

Ints = NDArray[np.int64]
SUNDAY = datetime(2026, 11, 8, tzinfo=UTC)
WEDNESDAY = datetime(2026, 11, 4, tzinfo=UTC)


@dataclass(frozen=True)
class Config:
    seed: int = 0
    alpha: float = 0.01
    null_runs: int = 200
    change_runs: int = 100
    per_minute: int = 200
    base_rate: float = 0.02
    quick: bool = False
    only: tuple[str, ...] = ()  # run only the null scenarios whose name contains one of these
    nulls_only: bool = False


@dataclass
class Stream:
    """One run's per-minute units: the new version, its baseline, the block of each minute
    (``None`` for a concurrent minute), and the baseline's history before the release."""

    n_new: Ints
    k_new: Ints
    n_base: Ints
    k_base: Ints
    blocks: list[object]
    history: dict[datetime, tuple[int, int]]
    # The view after late rows land (complete counts), where it differs from the live one.
    complete: tuple[Ints, Ints, Ints, Ints] | None = None


def _rng(cfg: Config, *labels: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([cfg.seed, *labels]))


def _history_dict(start: datetime, n: Ints, k: Ints) -> dict[datetime, tuple[int, int]]:
    return {start + timedelta(minutes=i): (int(n[i]), int(k[i])) for i in range(len(n)) if n[i] > 0}


def first_alarm(
    stream: Stream,
    alpha: float,
    view: tuple[Ints, Ints, Ints, Ints] | None = None,
    *,
    watch: bool = False,
) -> int | None:
    """Minute (1-based) of the first alarm, driving the detector as the release track does
    (``watch``: as it drives a latency or usage watch, the day variance on the log-odds scale at
    the history's share)."""
    s = MonitorConfig().release_spike
    d = estimate_dispersion(stream.history, icc_prior=s.icc_prior, day_cv_floor=s.day_cv_floor,
                            confidence=s.variance_confidence)  # fmt: skip
    day_variance = d.day_variance
    if watch:
        n, k = (sum(c[i] for c in stream.history.values()) for i in (0, 1))
        day_variance = d.log_odds_day_variance(min(0.99, k / max(1, n)))
    det = ReleaseSpikeDetector(
        alpha=alpha, mixture_tau=s.mixture_tau, dispersion=d.phi, day_variance=day_variance,
        interval_every_update=False,
    )  # fmt: skip
    buckets = AdaptiveBuckets(s.bucket_min_events)
    n_new, k_new, n_base, k_base = view or (
        stream.n_new,
        stream.k_new,
        stream.n_base,
        stream.k_base,
    )
    for i in range(len(n_new)):
        block = stream.blocks[i]
        key = ("concurrent",) if block is None else block
        for b in buckets.add(
            int(n_new[i]), int(k_new[i]), int(n_base[i]), int(k_base[i]), block=key
        ):
            state = det.update(b.n_new, b.k_new, b.n_base, b.k_base,
                               block=None if b.block == ("concurrent",) else b.block,
                               dispersion=b.dispersion(d))  # fmt: skip
            if state.fired:
                return i + 1
    return None


# -- traffic ------------------------------------------------------------------------------------


def _beta_rates(
    rng: np.random.Generator, p: float | NDArray[np.float64], icc: float, size: int
) -> NDArray[np.float64]:
    if icc <= 0.0:
        return np.broadcast_to(np.asarray(p, dtype=np.float64), (size,)).copy()
    p_arr = np.broadcast_to(np.asarray(p, dtype=np.float64), (size,))
    scale = (1.0 - icc) / icc
    return rng.beta(p_arr * scale, (1.0 - p_arr) * scale)


def _storms(
    rng: np.random.Generator, minutes: int, per_hour: float, share_new: float
) -> tuple[Ints, Ints, Ints, Ints]:
    """Storm units and storm copies per minute landing on (new, base)."""
    units = [np.zeros(minutes, dtype=np.int64) for _ in range(2)]
    copies = [np.zeros(minutes, dtype=np.int64) for _ in range(2)]
    for start in np.flatnonzero(rng.random(minutes) < per_hour / 60.0):
        side = 0 if rng.random() < share_new else 1
        count = int(rng.integers(15, 41))
        units[side][start] += 1
        spread = rng.integers(0, 3, size=count)  # copies within three minutes
        for offset in spread:
            copies[side][min(minutes - 1, start + int(offset))] += 1
    return units[0], units[1], copies[0], copies[1]


def concurrent(
    cfg: Config, rng: np.random.Generator, minutes: int, *, jump: float = 0.0, icc: float = 0.0,
    share_new: float = 0.5, total: int | None = None, storms_per_hour: float = 0.0,
    raw_storms: bool = False,
) -> Stream:  # fmt: skip
    """A canary next to the baseline; the history is a day of the baseline alone."""
    p = cfg.base_rate
    if total is None:
        n_new = np.full(minutes, cfg.per_minute, dtype=np.int64)
        n_base = np.full(minutes, cfg.per_minute, dtype=np.int64)
    else:
        n_new = rng.binomial(total, share_new, minutes).astype(np.int64)
        n_base = total - n_new
    k_new = rng.binomial(n_new, _beta_rates(rng, p + jump, icc, minutes)).astype(np.int64)
    k_base = rng.binomial(n_base, _beta_rates(rng, p, icc, minutes)).astype(np.int64)
    hist_minutes = 1_440
    h_n = np.full(hist_minutes, total or cfg.per_minute, dtype=np.int64)
    h_k = rng.binomial(h_n, _beta_rates(rng, p, icc, hist_minutes)).astype(np.int64)
    if storms_per_hour > 0:
        u_new, u_base, c_new, c_base = _storms(rng, minutes, storms_per_hour, share_new)
        add_new, add_base = (c_new, c_base) if raw_storms else (u_new, u_base)
        n_new, k_new = n_new + add_new, k_new + add_new
        n_base, k_base = n_base + add_base, k_base + add_base
        hu, _, hc, _ = _storms(rng, hist_minutes, storms_per_hour, 1.0)
        h_add = hc if raw_storms else hu
        h_n, h_k = h_n + h_add, h_k + h_add
    history = _history_dict(datetime(2026, 11, 3, tzinfo=UTC), h_n, h_k)
    return Stream(n_new, k_new, n_base, k_base, [None] * minutes, history)


Floats = NDArray[np.float64]


def _day_profile(start: datetime, minutes: int, *, weekday_rate: float, weekend_rate: float,
                 day_cv: float, rng: np.random.Generator, per_minute: float,
                 weekend_days: Sequence[int]) -> tuple[Floats, Floats]:  # fmt: skip
    """Per-minute rate and traffic: weekday type, daily cycle, day-level noise."""
    rates = np.empty(minutes)
    traffic = np.empty(minutes)
    noise: dict[object, float] = {}
    for i in range(minutes):
        at = start + timedelta(minutes=i)
        day = at.date()
        if day not in noise:
            noise[day] = float(rng.normal(0.0, day_cv))
        hour = at.hour + at.minute / 60.0
        cycle = 1.0 + 0.4 * math.sin(2 * math.pi * (hour - 9.0) / 24.0)
        base = weekend_rate if at.weekday() in weekend_days else weekday_rate
        rates[i] = min(0.5, base * cycle * (1.0 + noise[day]))
        traffic[i] = per_minute * (0.5 + 0.5 * cycle)
    return rates, traffic


def cutover(
    cfg: Config, rng: np.random.Generator, *, release: datetime, minutes: int, history_days: int,
    per_minute: float, jump: float = 0.0, weekday_rate: float | None = None,
    weekend_rate: float | None = None, day_cv: float = 0.0, late_share: float = 0.0,
    late_failures: bool = False, as_of: bool = True,
) -> Stream:  # fmt: skip
    """A full cut-over at ``release``; the baseline is the previous version's history, paired by
    the like-with-like lags of the monitor's settings (first lag with traffic in that hour)."""
    s = MonitorConfig().release_spike
    weekday = cfg.base_rate if weekday_rate is None else weekday_rate
    weekend = cfg.base_rate if weekend_rate is None else weekend_rate
    h_start = release - timedelta(days=history_days)
    total = history_days * 1_440 + minutes
    rates, traffic = _day_profile(h_start, total, weekday_rate=weekday, weekend_rate=weekend,
                                  day_cv=day_cv, rng=rng, per_minute=per_minute,
                                  weekend_days=s.weekend_days)  # fmt: skip
    n = rng.poisson(traffic).astype(np.int64)
    split = history_days * 1_440
    p = rates.copy()
    p[split:] = np.minimum(0.99, p[split:] + jump)
    k = rng.binomial(n, p).astype(np.int64)
    # Late rows (beyond the settle time): the live view misses them, on both sides alike.
    late_n = np.zeros(total, dtype=np.int64)
    late_k = np.zeros(total, dtype=np.int64)
    if late_share > 0:
        if late_failures:
            late_k = rng.binomial(k, late_share).astype(np.int64)
            late_n = late_k
        else:
            late_n = rng.binomial(n - k, late_share).astype(np.int64)
    h_n, h_k = n[:split], k[:split]
    history = _history_dict(h_start, h_n, h_k)
    n_new, k_new = n[split:], k[split:]
    n_base = np.zeros(minutes, dtype=np.int64)
    k_base = np.zeros(minutes, dtype=np.int64)
    live_base_n = np.zeros(minutes, dtype=np.int64)
    live_base_k = np.zeros(minutes, dtype=np.int64)
    blocks: list[object] = []
    hour_lag: dict[datetime, int | None] = {}
    for i in range(minutes):
        at = release + timedelta(minutes=i)
        hour = at.replace(minute=0)
        if hour not in hour_lag:
            hour_lag[hour] = None
            for lag in like_with_like_lags(at, s.baseline_lags_minutes, s.weekend_days):
                j = split + int((hour - release).total_seconds() // 60) - lag
                if j >= 0 and j + 60 <= split and n[j : j + 60].sum() > 0:
                    hour_lag[hour] = lag
                    break
        lag = hour_lag[hour]
        if lag is None:
            blocks.append(("none",))
            continue
        j = split + i - lag
        blocks.append((at.date().isoformat(), lag))
        n_base[i], k_base[i] = n[j], k[j]
        live_base_n[i] = n[j] - (late_n[j] if as_of else 0)
        live_base_k[i] = k[j] - (late_k[j] if as_of else 0)
    live = (n_new - late_n[split:], k_new - late_k[split:], live_base_n, live_base_k)
    stream = Stream(n_new, k_new, n_base, k_base, blocks, history)
    if late_share > 0:
        stream.complete = (n_new, k_new, n_base, k_base)
        stream.n_new, stream.k_new, stream.n_base, stream.k_base = live
    return stream


# -- statistics ----------------------------------------------------------------------------------


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def oracle_minutes(
    p0: float, p1: float, alpha: float, per_minute: int, power: float = 0.8
) -> float:
    """Minutes a one-sided fixed-horizon two-proportion z-test needs for ``power``."""
    z_a, z_b = NormalDist().inv_cdf(1 - alpha), NormalDist().inv_cdf(power)
    p_bar = (p0 + p1) / 2
    n = ((z_a * math.sqrt(2 * p_bar * (1 - p_bar)) + z_b * math.sqrt(p0 * (1 - p0) + p1 * (1 - p1)))
         / (p1 - p0)) ** 2  # fmt: skip
    return n / per_minute


@dataclass
class NullRow:
    scenario: str
    runs: int
    alarms: int
    rate: float
    ci_low: float
    ci_high: float
    promise: float
    meets: bool


@dataclass
class ChangeRow:
    scenario: str
    runs: int
    detected: int
    median_minutes: float | None
    p80_minutes: float | None
    oracle_minutes: float | None
    p80_ratio: float | None
    requirement: str
    meets: bool | None


def _null(
    cfg: Config, name: str, make: Callable[[np.random.Generator], Stream], label: int
) -> NullRow:
    alarms = 0
    for run in range(cfg.null_runs):
        stream = make(_rng(cfg, label, run))
        fired = first_alarm(stream, cfg.alpha) is not None
        if not fired and stream.complete is not None:
            fired = first_alarm(stream, cfg.alpha, stream.complete) is not None
        alarms += fired
    low, high = wilson(alarms, cfg.null_runs)
    return NullRow(name, cfg.null_runs, alarms, alarms / cfg.null_runs, low, high, cfg.alpha,
                   high <= 2 * cfg.alpha)  # fmt: skip


def _change(cfg: Config, name: str, make: Callable[[np.random.Generator], Stream], label: int,
            oracle: float | None, requirement: str, limit: float | None) -> ChangeRow:  # fmt: skip
    delays = []
    for run in range(cfg.change_runs):
        first = first_alarm(make(_rng(cfg, label, run)), cfg.alpha)
        delays.append(math.inf if first is None else float(first))
    arr = np.asarray(delays)
    detected = int(np.isfinite(arr).sum())
    median, p80 = (float(np.quantile(arr, q)) for q in (0.5, 0.8))
    median = median if math.isfinite(median) else None  # fewer than half found in time
    p80 = p80 if math.isfinite(p80) else None
    ratio = p80 / oracle if p80 is not None and oracle else None
    meets = None if limit is None else (ratio is not None and ratio <= limit)
    return ChangeRow(name, cfg.change_runs, detected, median, p80, oracle, ratio, requirement,
                     meets)  # fmt: skip


def run(cfg: Config) -> dict[str, object]:
    started = time.perf_counter()
    six_h = 120 if cfg.quick else 360
    half_day = 240 if cfg.quick else 720
    weekend_minutes = 720 if cfg.quick else 2_160
    low_minutes = 1_440 if cfg.quick else 2_880
    nulls: list[NullRow] = []
    changes: list[ChangeRow] = []
    label = 0

    def add_null(name: str, make: Callable[[np.random.Generator], Stream]) -> None:
        nonlocal label
        label += 1
        if cfg.only and not any(part in name for part in cfg.only):
            return
        t0 = time.perf_counter()
        nulls.append(_null(cfg, name, make, label))
        print(f"  {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    add_null("i.i.d., canary 50%", lambda r: concurrent(cfg, r, six_h))
    for icc in (0.002, 0.01, 0.03):
        add_null(f"beta-binomial ICC {icc}", lambda r, icc=icc: concurrent(cfg, r, six_h, icc=icc))
    add_null("retry storms, units", lambda r: concurrent(cfg, r, six_h, storms_per_hour=3.0))
    add_null("retry storms, raw events (contrast)",
             lambda r: concurrent(cfg, r, six_h, storms_per_hour=3.0, raw_storms=True))  # fmt: skip
    for days in (8, 5):
        add_null(f"weekend: Sunday cut-over, {days}-day history",
                 lambda r, days=days: cutover(
                     cfg, r, release=SUNDAY, minutes=weekend_minutes, history_days=days,
                     per_minute=cfg.per_minute, weekday_rate=0.025, weekend_rate=0.015,
                     day_cv=0.07))  # fmt: skip
    for share in (0.05, 0.10, 0.30):
        for failures in (False, True):
            which = "failures" if failures else "successes"
            add_null(f"late rows {share:.0%} of {which}",
                     lambda r, share=share, failures=failures: cutover(
                         cfg, r, release=WEDNESDAY, minutes=half_day, history_days=1,
                         per_minute=cfg.per_minute, day_cv=0.05, late_share=share,
                         late_failures=failures))  # fmt: skip
    add_null("late rows 30% of successes, no as-of (contrast)",
             lambda r: cutover(cfg, r, release=WEDNESDAY, minutes=half_day, history_days=1,
                               per_minute=cfg.per_minute, day_cv=0.05, late_share=0.3,
                               as_of=False))  # fmt: skip
    for rate in (0.2, 2.0):
        add_null(f"low traffic {rate:g}/min, cut-over",
                 lambda r, rate=rate: cutover(cfg, r, release=WEDNESDAY, minutes=low_minutes,
                                              history_days=8, per_minute=rate))  # fmt: skip
    for share in (0.01, 0.05, 0.5):
        add_null(f"canary {share:.0%} of 200/min, storms",
                 lambda r, share=share: concurrent(cfg, r, six_h, share_new=share, total=200,
                                                   storms_per_hour=3.0))  # fmt: skip

    horizon = 720 if cfg.quick else 1_440
    for jump in () if cfg.nulls_only else (0.01, 0.02, 0.05):
        label += 1
        oracle = oracle_minutes(cfg.base_rate, cfg.base_rate + jump, cfg.alpha, cfg.per_minute)
        limit = 2.0 if jump < 0.03 else None
        changes.append(_change(
            cfg, f"+{jump * 100:.0f} pp, canary 50%, 200/min", lambda r, j=jump: concurrent(
                cfg, r, horizon, jump=j), label, oracle,
            "p80/oracle <= 2.0" if limit else "reported", limit))  # fmt: skip
    label += 1
    changes += [] if cfg.nulls_only else [_change(
        cfg, "+2 pp, ICC 0.01, canary 50%", lambda r: concurrent(cfg, r, horizon, jump=0.02,
                                                                 icc=0.01),
        label, oracle_minutes(cfg.base_rate, cfg.base_rate + 0.02, cfg.alpha, cfg.per_minute),
        "reported", None)]  # fmt: skip
    for rate in () if cfg.nulls_only else (0.2, 2.0):
        label += 1
        changes.append(_change(
            cfg, f"2% -> 12%, {rate:g}/min, cut-over", lambda r, rate=rate: cutover(
                cfg, r, release=WEDNESDAY, minutes=1_440, history_days=8, per_minute=rate,
                jump=0.10), label, None, "verdict within a day", None))  # fmt: skip
    return {
        "config": asdict(cfg),
        "null": [asdict(r) for r in nulls],
        "changes": [asdict(r) for r in changes],
        "duration_s": round(time.perf_counter() - started, 1),
    }


def _f(value: object, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def render(result: dict[str, object]) -> str:
    lines = [
        "Release test on production-shaped traffic (false alarms per run; promise = alpha)",
        "",
    ]
    lines.append(f"{'scenario':<48} {'runs':>5} {'alarms':>6} {'rate':>7} {'95% CI':>17} "
                 f"{'promise':>7}  meets (upper <= 2x)")  # fmt: skip
    for r in result["null"]:  # type: ignore[attr-defined]
        lines.append(
            f"{r['scenario']:<48} {r['runs']:>5} {r['alarms']:>6} {r['rate']:>7.3f} "
            f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}] {r['promise']:>7.3f}  "
            f"{'yes' if r['meets'] else 'NO'}"
        )
    lines += ["", f"{'change':<40} {'runs':>5} {'found':>5} {'median':>7} {'p80':>7} "
              f"{'oracle':>7} {'ratio':>6}  requirement"]  # fmt: skip
    for r in result["changes"]:  # type: ignore[attr-defined]
        verdict = "" if r["meets"] is None else (" yes" if r["meets"] else " NO")
        lines.append(
            f"{r['scenario']:<40} {r['runs']:>5} {r['detected']:>5} {_f(r['median_minutes']):>7} "
            f"{_f(r['p80_minutes']):>7} {_f(r['oracle_minutes'], '.1f'):>7} "
            f"{_f(r['p80_ratio'], '.2f'):>6}  {r['requirement']}{verdict}"
        )
    lines += ["", "(delays in minutes after the release)", f"total {result['duration_s']} s"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few runs, short horizons")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--null-runs", type=int, default=None)
    parser.add_argument("--change-runs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--only", action="append", default=[],
        help="run only null scenarios whose name contains this (repeatable); no change rows",
    )  # fmt: skip
    args = parser.parse_args(argv)
    cfg = Config(
        seed=args.seed, quick=args.quick,
        null_runs=args.null_runs or (20 if args.quick else 200),
        change_runs=args.change_runs or (10 if args.quick else 100),
        only=tuple(args.only), nulls_only=bool(args.only),
    )  # fmt: skip
    result = run(cfg)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
