"""The release test's latency and usage watches: false alarms and detection delays.

Run ``python bench/alerts_release_watches.py`` (``--quick`` for a small smoke run, ``--json`` for
one JSON document). Every figure comes from a seeded simulation in this run; nothing is
hard-coded. A watch (:mod:`alerts.tracks.release_watches`) turns a per-event quantity into the
share of units above a threshold fixed from the baseline before the release, then runs the
release test exactly as for a failure signal; here the per-event values are simulated, the
threshold and the per-unit indicator are computed as ``storage.exceedance`` computes them in
ClickHouse (a unit's value is the largest of its events'; the threshold is a quantile of the
history's units), and
the counts go through :func:`bench.alerts_traffic_release.first_alarm` (buckets, variance
components from the history, the detector).

Traffic: a full cut-over on a Wednesday after 8 days of the previous version, like-with-like
lagged baselines (the hardest case: no concurrent baseline), Poisson units with a daily cycle;
per event a log-normal latency (400 ms, log-sd 0.5) or output-token count (200, log-sd 0.6,
rounded), both higher at the daily peak, with a day-to-day level noise (5 % latency, 3 % tokens:
infrastructure and prompt-mix days), and about three retry storms an hour (one session repeating
one request 10-20 times, every copy 5x slower: timeouts; one unit). Thresholds at the monitor's
defaults: latency above the baseline's p95 (``latency.p95``), tokens above its median
(``usage.output_tokens``; ``usage.cost_per_event`` is the same test on another number).

* **null** — the new version is the old one: the share of runs with an alarm over
  ``--horizon-days``, at ``alpha = 0.01`` for the watch alone (the monitor runs each watch at
  ``alpha / S``, smaller still), against the promise ``alpha`` (goal: the upper end of the 95 %
  Wilson interval at most twice it).
* **changes** — tokens x1.5 and x2 per event, latency x1.5 (every event, so the p95 too), at
  ``alpha / 3`` (a release with one signal and the two watches): detection share within the
  horizon, p50 and p80 delay in hours after the release.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from alerts.detectors import like_with_like_lags  # noqa: E402
from alerts.settings import MonitorConfig  # noqa: E402
from bench.alerts_traffic_release import WEDNESDAY, Stream, first_alarm, wilson  # noqa: E402

DAY = 1_440
HISTORY_DAYS = 8


@dataclass(frozen=True)
class Quantity:
    name: str
    median: float
    log_sd: float
    peak: float  # exponent of the daily cycle in the level (traffic follows the cycle itself)
    day_cv: float
    level: float  # the threshold's quantile (the monitor's default)
    integer: bool


LATENCY = Quantity("latency.p95", 400.0, 0.5, 0.5, 0.05, 0.95, False)
TOKENS = Quantity("usage.output_tokens", 200.0, 0.6, 0.3, 0.03, 0.5, True)


@dataclass(frozen=True)
class WatchConfig:
    seed: int = 0
    alpha: float = 0.01
    family: int = 3  # the changes run at alpha / family
    null_runs: int = 300
    change_runs: int = 60
    horizon_days: float = 3.0
    rates: tuple[float, ...] = (2.0, 20.0)
    storms_per_hour: float = 3.0


@dataclass
class NullRow:
    scenario: str
    runs: int
    alarms: int
    rate: float
    ci_high: float
    promise: float
    meets: bool


@dataclass
class ChangeRow:
    scenario: str
    runs: int
    found: float
    p50_h: float | None
    p80_h: float | None


def _rng(cfg: WatchConfig, *labels: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([cfg.seed, *labels]))


@dataclass
class _Units:
    """Per unit: its minute and the largest value of its events (a unit is above the threshold
    when any of its events is)."""

    minute: NDArray[np.int64]
    top: NDArray[np.float64]


def _units(
    rng: np.random.Generator, q: Quantity, level: NDArray[np.float64],
    per_minute: NDArray[np.float64], storms_per_hour: float,
) -> _Units:  # fmt: skip
    minutes = len(level)
    single_minute = np.repeat(np.arange(minutes), rng.poisson(per_minute))
    single = level[single_minute] * rng.lognormal(0.0, q.log_sd, len(single_minute))
    storm_minute = np.flatnonzero(rng.random(minutes) < storms_per_hour / 60.0)
    copies = rng.integers(10, 21, len(storm_minute))
    copy_minute = np.repeat(storm_minute, copies)
    copy_value = 5.0 * level[copy_minute] * rng.lognormal(0.0, q.log_sd, len(copy_minute))
    if q.integer:
        single, copy_value = (
            np.maximum(1.0, np.round(single)),
            np.maximum(1.0, np.round(copy_value)),
        )
    storm_top = (
        np.maximum.reduceat(copy_value, np.concatenate(([0], np.cumsum(copies)[:-1])))
        if len(storm_minute)
        else np.zeros(0)
    )
    return _Units(
        np.concatenate((single_minute, storm_minute)), np.concatenate((single, storm_top))
    )


def simulate(
    cfg: WatchConfig, rng: np.random.Generator, q: Quantity, per_minute: float, scale: float
) -> Stream:
    """One run: the units above the frozen threshold per minute, paired by the lagged baseline."""
    s = MonitorConfig().release_spike
    release = WEDNESDAY
    start = release - timedelta(days=HISTORY_DAYS)
    horizon = round(cfg.horizon_days * DAY)
    total = HISTORY_DAYS * DAY + horizon
    i = np.arange(total)
    hours = (i % DAY) / 60.0  # the run starts at midnight UTC
    cycle = 1.0 + 0.4 * np.sin(2 * np.pi * (hours - 9.0) / 24.0)
    day_noise = 1.0 + rng.normal(0.0, q.day_cv, total // DAY + 1)
    level = q.median * cycle**q.peak * day_noise[i // DAY]
    split = HISTORY_DAYS * DAY
    level[split:] *= scale
    units = _units(rng, q, level, per_minute * (0.5 + 0.5 * cycle), cfg.storms_per_hour)
    # The threshold: the quantile of the history's units (of each unit's largest value).
    threshold = float(np.quantile(units.top[units.minute < split], q.level))
    n = np.bincount(units.minute, minlength=total).astype(np.int64)
    k = np.bincount(units.minute, weights=units.top > threshold, minlength=total).astype(np.int64)
    history = {
        start + timedelta(minutes=int(m)): (int(n[m]), int(k[m])) for m in np.flatnonzero(n[:split])
    }
    n_new, k_new = n[split:], k[split:]
    n_base = np.zeros(horizon, dtype=np.int64)
    k_base = np.zeros(horizon, dtype=np.int64)
    blocks: list[object] = []
    hour_lag: dict[datetime, int | None] = {}
    for m in range(horizon):
        at = release + timedelta(minutes=m)
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
        blocks.append((at.date().isoformat(), lag))
        n_base[m], k_base[m] = n[split + m - lag], k[split + m - lag]
    return Stream(n_new, k_new, n_base, k_base, blocks, history)


def _quantile_h(delays: list[float], q: float) -> float | None:
    with np.errstate(invalid="ignore"):
        value = float(np.quantile(np.asarray(delays), q))
    return round(value / 60.0, 2) if math.isfinite(value) else None


def null_row(cfg: WatchConfig, q: Quantity, rate: float, tag: int) -> NullRow:
    alarms = sum(
        first_alarm(simulate(cfg, _rng(cfg, tag, run), q, rate, 1.0), cfg.alpha, watch=True)
        is not None
        for run in range(cfg.null_runs)
    )
    high = wilson(alarms, cfg.null_runs)[1]
    return NullRow(f"{q.name}, {rate:g}/min", cfg.null_runs, alarms, alarms / cfg.null_runs,
                   round(high, 4), cfg.alpha, high <= 2 * cfg.alpha)  # fmt: skip


def change_row(cfg: WatchConfig, q: Quantity, scale: float, rate: float, tag: int) -> ChangeRow:
    delays = []
    for run in range(cfg.change_runs):
        stream = simulate(cfg, _rng(cfg, tag, run), q, rate, scale)
        first = first_alarm(stream, cfg.alpha / cfg.family, watch=True)
        delays.append(math.inf if first is None else float(first))
    found = sum(map(math.isfinite, delays)) / cfg.change_runs
    return ChangeRow(f"{q.name}: x{scale:g}, {rate:g}/min", cfg.change_runs, found,
                     _quantile_h(delays, 0.5), _quantile_h(delays, 0.8))  # fmt: skip


CHANGES = ((TOKENS, 1.5), (TOKENS, 2.0), (LATENCY, 1.5))


def run(cfg: WatchConfig) -> dict[str, object]:
    started = time.perf_counter()
    nulls, changes = [], []
    for w, q in enumerate((LATENCY, TOKENS)):
        for r, rate in enumerate(cfg.rates):
            t0 = time.perf_counter()
            nulls.append(null_row(cfg, q, rate, 100 + 10 * w + r))
            print(f"  null {nulls[-1].scenario}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    for c, (q, scale) in enumerate(CHANGES):
        for r, rate in enumerate(cfg.rates):
            t0 = time.perf_counter()
            changes.append(change_row(cfg, q, scale, rate, 200 + 10 * c + r))
            print(f"  {changes[-1].scenario}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return {
        "config": asdict(cfg),
        "null": [asdict(row) for row in nulls],
        "changes": [asdict(row) for row in changes],
        "duration_s": round(time.perf_counter() - started, 1),
    }


def _f(value: object, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def render(result: dict[str, object]) -> str:
    cfg = result["config"]
    lines = [
        "Release watches on a cut-over with daily cycles, day-level noise and retry storms",
        "",
        f"null (alpha {cfg['alpha']} per watch, {cfg['horizon_days']:g} days)"  # type: ignore[index]
        f"{'':<12} {'runs':>5} {'alarms':>6} {'rate':>7} {'CI high':>8} {'promise':>7}  meets",
    ]
    for r in result["null"]:  # type: ignore[attr-defined]
        lines.append(
            f"{r['scenario']:<48} {r['runs']:>5} {r['alarms']:>6} {r['rate']:>7.4f} "
            f"{r['ci_high']:>8.4f} {r['promise']:>7.3f}  {'yes' if r['meets'] else 'NO'}"
        )
    family = cfg["family"]  # type: ignore[index]
    lines += ["", f"changes (alpha / {family} per watch){'':<14} {'runs':>5} {'found':>6} "
              f"{'p50 h':>7} {'p80 h':>7}"]  # fmt: skip
    for r in result["changes"]:  # type: ignore[attr-defined]
        lines.append(
            f"{r['scenario']:<48} {r['runs']:>5} {r['found']:>6.2f} {_f(r['p50_h']):>7} "
            f"{_f(r['p80_h']):>7}"
        )
    lines += ["", f"total {result['duration_s']} s"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few runs, one day")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--null-runs", type=int, default=None)
    parser.add_argument("--change-runs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cfg = WatchConfig(
        seed=args.seed, null_runs=args.null_runs or (20 if args.quick else 300),
        change_runs=args.change_runs or (10 if args.quick else 60),
        horizon_days=1.0 if args.quick else 3.0,
    )  # fmt: skip
    result = run(cfg)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
