"""Release-test delays at low traffic: telltale vs a textbook mSPRT vs an oracle fixed horizon.

Run ``python bench/alerts_release_delays.py`` (``--quick`` for a small smoke run, ``--json`` for
one JSON document; the full run took about 11 minutes on two shared, loaded cores, ``--quick``
under one). Every figure comes from a seeded simulation in this run; nothing is
hard-coded.

Each change row is a full cut-over on a Wednesday, monitored for ``--horizon-days`` against the
like-with-like lagged baseline of the previous version (8 days of history, daily cycle in traffic
and rate), exactly the streams of :mod:`bench.alerts_traffic_release` (``cutover``). On the same
stream run

* **telltale** — the release test as the monitor's release track drives it (settings defaults,
  buckets, variance components from the history): ``first_alarm`` of the traffic bench;
* **mSPRT** — :class:`bench.baselines.NormalMixtureMsprt` on the running totals, one-sided,
  mixing scale ``--tau`` on the rate difference, no tempering;
* **oracle** — the minutes a one-sided fixed-horizon two-proportion z-test needs for 80% power at
  the same ``alpha`` and mean traffic (it knows the effect and when to look; a floor, not a
  competitor).

Per row: detection share within the horizon, p50 and p80 delay (hours after the release; ``-``
where fewer than half / 80% of runs detect) and ``p80(telltale) / p80(mSPRT)`` (goal <= 1.5).
Null rows run both sequential tests on the same null streams (2% throughout, over the horizon),
without and with a day-level noise of the rate (coefficient of variation 15%, which no test here
models at these rates), and report the runs with an alarm and the upper end of their 95% Wilson
interval against the promise ``alpha`` (goal: at most twice it). The mSPRT's normal approximation
and its independence assumption are not guaranteed here.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from bench.alerts_traffic_release import (  # noqa: E402
    WEDNESDAY,
    Config,
    Stream,
    cutover,
    first_alarm,
    oracle_minutes,
    wilson,
)
from bench.baselines import msprt_log_e_path  # noqa: E402

RATES = (0.2, 0.33, 2.0)  # units a minute per version
JUMPS = (  # (base rate, new rate, label)
    (0.02, 0.03, "+1 pp"),
    (0.02, 0.04, "+2 pp"),
    (0.02, 0.07, "+5 pp"),
    (0.01, 0.09, "1% -> 9%"),
    (0.02, 0.12, "2% -> 12%"),
)

NULL_DAY_CVS = (0.0, 0.15)  # day-to-day coefficient of variation of the rate in the null rows


@dataclass(frozen=True)
class DelayConfig:
    seed: int = 0
    alpha: float = 0.01
    tau: float = 0.05
    runs: int = 40
    null_runs: int = 100
    horizon_days: float = 7.0
    rates: tuple[float, ...] = RATES
    quick: bool = False


@dataclass
class DelayRow:
    scenario: str
    per_minute: float
    runs: int
    oracle_h: float
    telltale_found: float
    telltale_p50_h: float | None
    telltale_p80_h: float | None
    msprt_found: float
    msprt_p50_h: float | None
    msprt_p80_h: float | None
    p80_ratio: float | None
    meets: bool | None  # None: neither test finds 80% of the runs within the horizon


@dataclass
class NullDelayRow:
    scenario: str
    runs: int
    telltale_alarms: int
    telltale_ci_high: float
    msprt_alarms: int
    msprt_ci_high: float
    promise: float


def msprt_first_alarm(stream: Stream, alpha: float, tau: float) -> int | None:
    """Minute (1-based) of the textbook mSPRT's first alarm on the stream's per-minute totals
    (:class:`bench.baselines.NormalMixtureMsprt`, over the whole stream at once)."""
    log_e = msprt_log_e_path(stream.n_new, stream.k_new, stream.n_base, stream.k_base, tau)
    crossed = np.flatnonzero(log_e >= math.log(1.0 / alpha))
    return int(crossed[0]) + 1 if len(crossed) else None


def _rng(cfg: DelayConfig, *labels: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([cfg.seed, *labels]))


def _stream(
    cfg: DelayConfig, rng: np.random.Generator, p0: float, p1: float, rate: float,
    day_cv: float = 0.0,
) -> Stream:  # fmt: skip
    base = Config(seed=cfg.seed, alpha=cfg.alpha, base_rate=p0)
    return cutover(
        base, rng, release=WEDNESDAY, minutes=round(cfg.horizon_days * 1_440), history_days=8,
        per_minute=rate, jump=p1 - p0, day_cv=day_cv,
    )  # fmt: skip


def _quantile_h(delays: list[float], q: float) -> float | None:
    with np.errstate(invalid="ignore"):  # inf - inf between two undetected runs: nan, no delay
        value = float(np.quantile(np.asarray(delays), q))
    return round(value / 60.0, 2) if math.isfinite(value) else None


def delay_row(
    cfg: DelayConfig, p0: float, p1: float, label: str, rate: float, tag: int
) -> DelayRow:
    ours: list[float] = []
    theirs: list[float] = []
    for run in range(cfg.runs):
        stream = _stream(cfg, _rng(cfg, tag, run), p0, p1, rate)
        a = first_alarm(stream, cfg.alpha)
        b = msprt_first_alarm(stream, cfg.alpha, cfg.tau)
        ours.append(math.inf if a is None else float(a))
        theirs.append(math.inf if b is None else float(b))
    p80_ours, p80_theirs = _quantile_h(ours, 0.8), _quantile_h(theirs, 0.8)
    ratio = None
    if p80_ours is not None and p80_theirs is not None:
        ratio = round(p80_ours / p80_theirs, 2)
    meets = (
        None if p80_ours is None and p80_theirs is None else (ratio is not None and ratio <= 1.5)
    )
    return DelayRow(
        scenario=f"{label}, {rate:g}/min", per_minute=rate, runs=cfg.runs,
        oracle_h=round(oracle_minutes(p0, p1, cfg.alpha, rate) / 60.0, 2),  # type: ignore[arg-type]
        telltale_found=sum(map(math.isfinite, ours)) / cfg.runs,
        telltale_p50_h=_quantile_h(ours, 0.5), telltale_p80_h=p80_ours,
        msprt_found=sum(map(math.isfinite, theirs)) / cfg.runs,
        msprt_p50_h=_quantile_h(theirs, 0.5), msprt_p80_h=p80_theirs,
        p80_ratio=ratio, meets=meets,
    )  # fmt: skip


def null_row(cfg: DelayConfig, p0: float, rate: float, day_cv: float, tag: int) -> NullDelayRow:
    ours = theirs = 0
    for run in range(cfg.null_runs):
        stream = _stream(cfg, _rng(cfg, tag, run), p0, p0, rate, day_cv)
        ours += first_alarm(stream, cfg.alpha) is not None
        theirs += msprt_first_alarm(stream, cfg.alpha, cfg.tau) is not None
    return NullDelayRow(
        scenario=f"{rate:g}/min, day-level noise {day_cv:.0%}", runs=cfg.null_runs,
        telltale_alarms=ours, telltale_ci_high=round(wilson(ours, cfg.null_runs)[1], 4),
        msprt_alarms=theirs, msprt_ci_high=round(wilson(theirs, cfg.null_runs)[1], 4),
        promise=cfg.alpha,
    )  # fmt: skip


def run(cfg: DelayConfig) -> dict[str, object]:
    started = time.perf_counter()
    rows: list[DelayRow] = []
    nulls: list[NullDelayRow] = []
    for j, (p0, p1, label) in enumerate(JUMPS):
        for r, rate in enumerate(cfg.rates):
            t0 = time.perf_counter()
            rows.append(delay_row(cfg, p0, p1, label, rate, 100 + 10 * j + r))
            print(f"  {rows[-1].scenario}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    for c, day_cv in enumerate(NULL_DAY_CVS):
        for r, rate in enumerate(cfg.rates):
            t0 = time.perf_counter()
            nulls.append(null_row(cfg, 0.02, rate, day_cv, 200 + 10 * c + r))
            print(f"  null {nulls[-1].scenario}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return {
        "config": asdict(cfg),
        "changes": [asdict(row) for row in rows],
        "null": [asdict(row) for row in nulls],
        "duration_s": round(time.perf_counter() - started, 1),
    }


def _f(value: object, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _verdict(meets: bool | None) -> str:
    return "n/a (neither finds 80%)" if meets is None else ("yes" if meets else "NO")


def render(result: dict[str, object]) -> str:
    cfg = result["config"]
    lines = [
        f"Release-test delays (hours after a cut-over; alpha {cfg['alpha']}, "  # type: ignore[index]
        f"mSPRT tau {cfg['tau']}, horizon {cfg['horizon_days']} d)",  # type: ignore[index]
        "",
        f"{'change':<22} {'runs':>4} {'oracle':>7} | {'tt found':>8} {'p50':>6} {'p80':>6} | "
        f"{'mSPRT found':>11} {'p50':>6} {'p80':>6} | {'p80 ratio':>9}  goal <= 1.5",
    ]
    for r in result["changes"]:  # type: ignore[attr-defined]
        lines.append(
            f"{r['scenario']:<22} {r['runs']:>4} {_f(r['oracle_h']):>7} | "
            f"{r['telltale_found']:>8.0%} {_f(r['telltale_p50_h']):>6} "
            f"{_f(r['telltale_p80_h']):>6} | {r['msprt_found']:>11.0%} {_f(r['msprt_p50_h']):>6} "
            f"{_f(r['msprt_p80_h']):>6} | {_f(r['p80_ratio']):>9}  {_verdict(r['meets'])}"
        )
    lines += ["", f"{'null (2%)':<30} {'runs':>5} {'telltale':>9} {'CI high':>8} {'mSPRT':>6} "
              f"{'CI high':>8} {'promise':>8}"]  # fmt: skip
    for r in result["null"]:  # type: ignore[attr-defined]
        lines.append(
            f"{r['scenario']:<30} {r['runs']:>5} {r['telltale_alarms']:>9} "
            f"{r['telltale_ci_high']:>8.3f} {r['msprt_alarms']:>6} {r['msprt_ci_high']:>8.3f} "
            f"{r['promise']:>8.3f}"
        )
    lines += ["", f"total {result['duration_s']} s"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few runs, a two-day horizon")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--null-runs", type=int, default=None)
    parser.add_argument("--tau", type=float, default=0.05, help="mSPRT mixing scale")
    parser.add_argument("--horizon-days", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cfg = DelayConfig(seed=args.seed, tau=args.tau, quick=args.quick)
    if args.quick:
        cfg = replace(cfg, runs=6, null_runs=6, horizon_days=2.0)
    cfg = replace(
        cfg, runs=args.runs or cfg.runs, null_runs=args.null_runs or cfg.null_runs,
        horizon_days=args.horizon_days or cfg.horizon_days,
    )  # fmt: skip
    result = run(cfg)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
