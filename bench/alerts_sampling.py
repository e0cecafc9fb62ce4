"""The release test and the degradation CUSUM on sampled traffic: false alarms and delays.

Run ``python bench/alerts_sampling.py`` (``--quick`` for a smoke run, ``--json`` for one JSON
document, ``--part release`` or ``--part cusum`` for one half, ``--rates 1 0.25 0.05`` and
``--version-floor`` for the sampling). Every figure comes from a seeded simulation in this run.
The traffic is the traffic-realism benches' (``bench/alerts_traffic_release.py``,
``bench/alerts_traffic_cusum_drift.py``: daily and weekly cycles, day-level noise, extra-binomial
minutes, sticky retry storms), with users who come back many times; it is thinned as the worker
samples it (:mod:`bench.sampled_traffic`: ``streams.sampling.unit_draw`` on each unit's user, the
per-version floor of ``streams.sampling.SamplingConfig``), and the detectors read the per-minute
counts of *scored* units, unweighted, with their unit and retry logic unchanged. Each simulated
run is thinned at every rate, so the rates compare on the same traffic (and nested samples).

Why unweighted counts of a unit-keyed sample are the right input:

* **Release test.** It conditions on each bucket's units per version and tests the split of the
  bucket's failures between the versions (Fisher's non-central hypergeometric): it compares the
  two versions' *rates*, never their volumes. Whether a unit is scored depends on a hash of its
  user and on the version's inclusion probability, which depends on the version's volume, not on
  any outcome; so the scored units of each version are a random subset of its units, their
  failures are Bernoulli at that version's rate, and under "not worse" the conditional law is the
  test's null whatever the two probabilities are. A per-version floor that scores a small canary
  at 1 and its baseline at 0.05 therefore biases nothing: per-version Horvitz-Thompson counts
  (``n / p``, ``k / p``) would leave the rates as they are and inflate the counts by ``1 / p``,
  which makes the exact test act as if it had ``1 / p`` times the evidence (anti-conservative);
  they are for totals, not for this test. Two second-order channels remain, both measured here:
  ``p`` varying within a bucket while the rate varies too (buckets span few minutes), and a
  storm's copies raising its version's volume, which lowers ``p`` in that minute (the
  ``canary 1%`` row has a small version whose probability the floor sets). The variance
  components scale correctly: the within-minute correlation gives ``phi = 1 + icc (m - 1)`` with
  the *scored* units per minute ``m``, which the history's (equally sampled) counts estimate; the
  day-level variance is weighted by the scored units. Because a user is in or out with all its
  events, a retry storm stays one collapsed unit (or none), never a fraction of its copies.
  A per-user failure propensity (not in these generators) would add between-version variance
  from which users are scored; sampling whole users scales it by ``1 / p`` exactly as it
  scales the binomial variance, so its share of the variance is what it is at rate 1.
* **CUSUM.** It compares each minute's failures with the seasonal profile's rate times the
  minute's units; the profile is a rate learned from the same series' own scored history, and a
  unit-keyed sample leaves rates unbiased whatever ``p`` is in each minute (the floor makes
  ``p`` follow the daily traffic cycle). The Shiryaev-Roberts bound holds for binomial counts at
  the profile's rates at any ``n``, and the bootstrap threshold is fitted on the history's own
  sampled increments. What sampling costs is evidence: about ``1 / p`` times the delay. And
  one second-order effect: the profile's hour rates rest on ``p`` times fewer failures, so an
  hour the short history under-estimated reads as a small shift for the whole hour. The chart
  widens its dispersion by that error (``SeasonalCusum._profile_inflation``: about ``E_w / K``,
  the failures expected over the chart's horizon within the hour over the history's of that
  hour), which sampling raises because the chart then gathers its evidence over more of the
  hour; without it, two days of history and a strong daily cycle (the ``daily cycle`` row)
  lifted the false-alarm rate above the promise at a 5 % sample.

``--only NAME`` runs the null rows whose name contains NAME (no change rows), e.g. with
another ``--seed`` for more runs of one row; the JSON lists the runs that alarmed.

Null rows report false alarms per run (release: promise ``alpha`` = 0.01 per release; CUSUM:
``1440 / arl0`` = 0.033 per day) with 95 % Wilson intervals, and the pooled rate per sampling
rate; the goal is an upper end at most twice the promise. Change rows report detections, the
median and 80th percentile delay in minutes, and the p80 relative to rate 1 (the price of the
sample). ``p`` columns give the mean inclusion probability of each version.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from alerts.detectors import SeasonalCusum  # noqa: E402
from alerts.settings import MonitorConfig  # noqa: E402
from bench.alerts_traffic_cusum_drift import (  # noqa: E402
    MINUTES_PER_DAY,
    MONDAY,
    PROMISE_PER_DAY,
    Traffic,
    _cycle,
    _flat,
)
from bench.alerts_traffic_release import (  # noqa: E402
    SUNDAY,
    WEDNESDAY,
    Config,
    first_alarm,
    oracle_minutes,
    wilson,
)
from bench.sampled_traffic import (  # noqa: E402
    Assemble,
    Ints,
    concurrent_arms,
    cusum_arm,
    cutover_arms,
)
from streams.sampling import SamplingConfig  # noqa: E402

ALPHA = 0.01
TRACK_HORIZON = MonitorConfig().release_spike.horizon_minutes


@dataclass(frozen=True)
class Settings:
    rates: tuple[float, ...] = (1.0, 0.25, 0.05)
    floor: float = SamplingConfig().version_floor_per_min
    seed: int = 0
    null_runs: int = 100
    change_runs: int = 30
    cusum_runs: int = 60
    cusum_change_runs: int = 30
    part: str = "all"
    quick: bool = False
    only: tuple[str, ...] = ()  # run only the null rows whose name contains one of these

    def runs_row(self, name: str) -> bool:
        return not self.only or any(part in name for part in self.only)


@dataclass
class Tally:
    """Per sampling rate: runs, alarms (or delays) and the mean inclusion probabilities."""

    alarms: list[int] = field(default_factory=list)
    delays: list[list[float]] = field(default_factory=list)
    p_new: list[list[float]] = field(default_factory=list)
    p_base: list[list[float]] = field(default_factory=list)
    warming: list[int] = field(default_factory=list)
    alarm_runs: list[list[int]] = field(default_factory=list)

    @classmethod
    def of(cls, rates: int) -> Tally:
        return cls([0] * rates, [[] for _ in range(rates)], [[] for _ in range(rates)],
                   [[] for _ in range(rates)], [0] * rates, [[] for _ in range(rates)])  # fmt: skip

    def alarm(self, i: int, run: int, fired: bool) -> None:
        self.alarms[i] += fired
        if fired:
            self.alarm_runs[i].append(run)


# -- release test --------------------------------------------------------------------------------


def _release_rows(st: Settings, cfg: Config) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    six_h = 120 if st.quick else 360
    weekend = 720 if st.quick else 2_160
    low = 1_440 if st.quick else 2_880
    nulls: list[tuple[str, Callable[[np.random.Generator, str], Assemble]]] = [
        ("i.i.d., canary 50%", lambda r, t: concurrent_arms(cfg, r, six_h, t)),
        ("beta-binomial ICC 0.01", lambda r, t: concurrent_arms(cfg, r, six_h, t, icc=0.01)),
        ("retry storms 3/h, canary 50%",
         lambda r, t: concurrent_arms(cfg, r, six_h, t, storms_per_hour=3.0)),
        ("canary 1% of 200/min, storms",
         lambda r, t: concurrent_arms(cfg, r, six_h, t, share_new=0.01, total=200,
                                      storms_per_hour=3.0)),
        ("weekend: Sunday cut-over, 8-day history",
         lambda r, t: cutover_arms(cfg, r, t, release=SUNDAY, minutes=weekend, history_days=8,
                                   per_minute=cfg.per_minute, weekday_rate=0.025,
                                   weekend_rate=0.015, day_cv=0.07)),
        ("low traffic 2/min, cut-over",
         lambda r, t: cutover_arms(cfg, r, t, release=WEDNESDAY, minutes=low, history_days=8,
                                   per_minute=2.0)),
    ]  # fmt: skip
    null_rows = []
    for label, (name, make) in enumerate(nulls, start=1):
        if not st.runs_row(name):
            continue
        t0 = time.perf_counter()
        tally = Tally.of(len(st.rates))
        for run in range(st.null_runs):
            assemble = make(_rng(st, 1, label, run), f"r{label}-{run}")
            for i, rate in enumerate(st.rates):
                stream, p_new, p_base = assemble(rate, st.floor)
                tally.alarm(i, run, first_alarm(stream, ALPHA) is not None)
                tally.p_new[i].append(p_new)
                tally.p_base[i].append(p_base)
        null_rows.append(_null_row(name, st, tally, ALPHA))
        print(f"  release {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    change_rows = []
    for label, jump in enumerate(() if st.only else (0.01, 0.02, 0.05), start=1):
        t0 = time.perf_counter()
        oracle = oracle_minutes(cfg.base_rate, cfg.base_rate + jump, ALPHA, cfg.per_minute)
        horizon = int(min(TRACK_HORIZON, max(1_440, 8 * oracle / min(st.rates))))
        tally = Tally.of(len(st.rates))
        for run in range(st.change_runs):
            assemble = concurrent_arms(cfg, _rng(st, 2, label, run), horizon, f"c{label}-{run}",
                                       jump=jump)  # fmt: skip
            for i, rate in enumerate(st.rates):
                stream, p_new, p_base = assemble(rate, st.floor)
                first = first_alarm(stream, ALPHA)
                tally.delays[i].append(math.inf if first is None else float(first))
                tally.p_new[i].append(p_new)
                tally.p_base[i].append(p_base)
        name = f"+{jump * 100:.0f} pp on 2%, canary 50%, 200/min (oracle {oracle:.0f} min)"
        change_rows.append(_change_row(name, st, tally, horizon))
        print(f"  release {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return null_rows, change_rows


# -- CUSUM ---------------------------------------------------------------------------------------


def _cusum(
    ats: list[datetime], n: Ints, k: Ints, cut: int, stop_from: int | None = None
) -> tuple[SeasonalCusum, list[int]]:
    """Learn on the minutes before ``cut``, test the rest; the minutes that alarmed (stopping at
    the first alarm at or after ``stop_from``, if given)."""
    s = MonitorConfig().degradation
    det = SeasonalCusum(delta=s.delta, arl0_minutes=s.arl0_minutes,
                        min_history_minutes=s.min_history_minutes, min_failures=s.min_failures,
                        history_minutes=s.history_minutes)  # fmt: skip
    det.learn(list(zip(ats[:cut], n[:cut].tolist(), k[:cut].tolist(), strict=True)))
    fired = []
    for i in range(cut, len(ats)):
        if det.update(int(n[i]), int(k[i]), ats[i]).fired:
            fired.append(i)
            if stop_from is not None and i >= stop_from:
                break
    return det, fired


def _cusum_rows(st: Settings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    cycle_rate = _cycle(0.01, 0.03)
    laws: list[tuple[str, Traffic, int, datetime]] = [
        ("iid", Traffic(_flat(200.0), _flat(0.02)), 2, MONDAY),
        ("betabin ICC 0.01", Traffic(_flat(200.0), _flat(0.02), icc=0.01), 2, MONDAY),
        ("retry storms 1/h, de-duplicated",
         Traffic(_flat(200.0), _flat(0.02), storms_per_hour=1.0, storms_counted_once=True), 2,
         MONDAY),
        ("retry storms 1/h, raw copies (contrast)",
         Traffic(_flat(200.0), _flat(0.02), storms_per_hour=1.0), 2, MONDAY),
        ("daily cycle (rate+traffic)", Traffic(_cycle(50.0, 350.0), cycle_rate), 2, MONDAY),
        ("weekend (Sunday, week of history)",
         Traffic(_cycle(50.0, 350.0, 0.5), _cycle(0.01, 0.03, 1.4)), 7, MONDAY - timedelta(days=1)),
    ]  # fmt: skip
    null_rows = []
    for label, (name, law, days, start) in enumerate(laws, start=1):
        if not st.runs_row(name):
            continue
        t0 = time.perf_counter()
        tally = Tally.of(len(st.rates))
        for run in range(st.cusum_runs):
            total = (days + 1) * MINUTES_PER_DAY
            ats, arm = cusum_arm(_rng(st, 3, label, run), law, start, total, f"u{label}-{run}")
            for i, rate in enumerate(st.rates):
                n, k, p = arm.thin(rate, st.floor)
                det, fired = _cusum(ats, n, k, days * MINUTES_PER_DAY)
                tally.alarm(i, run, bool(fired))
                tally.warming[i] += det.profile is None
                tally.p_new[i].append(float(p.mean()))
        null_rows.append(_null_row(name, st, tally, PROMISE_PER_DAY))
        print(f"  cusum {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    change_rows = []
    watch = 1 if st.quick else 3
    for label, shift in enumerate(() if st.only else (0.01, 0.02, 0.05), start=1):
        t0 = time.perf_counter()
        tally = Tally.of(len(st.rates))
        early = [0] * len(st.rates)
        for run in range(st.cusum_change_runs):
            rng = _rng(st, 4, label, run)
            cut, total = 2 * MINUTES_PER_DAY, (2 + watch) * MINUTES_PER_DAY
            change = cut + int(rng.integers(60, 720))
            bump = np.where(np.arange(total) >= change, shift, 0.0)
            law = Traffic(_flat(200.0), _flat(0.02))
            ats, arm = cusum_arm(rng, law, MONDAY, total, f"v{label}-{run}", bump)
            for i, rate in enumerate(st.rates):
                n, k, p = arm.thin(rate, st.floor)
                _, fired = _cusum(ats, n, k, cut, stop_from=change)
                early[i] += bool(fired) and fired[0] < change
                after = [f for f in fired if f >= change]
                tally.delays[i].append(after[0] + 1 - change if after else math.inf)
                tally.p_new[i].append(float(p.mean()))
        row = _change_row(f"+{shift * 100:.0f} pp on 2%, 200/min", st, tally, watch * 1_440)
        for i, by_rate in enumerate(row["by_rate"]):
            by_rate["false_before"] = early[i]
        change_rows.append(row)
        print(f"  cusum +{shift * 100:.0f} pp: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return null_rows, change_rows


# -- rows and driver -----------------------------------------------------------------------------


def _rng(st: Settings, *labels: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([st.seed, *labels]))


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _null_row(name: str, st: Settings, tally: Tally, promise: float) -> dict[str, Any]:
    runs = st.cusum_runs if promise != ALPHA else st.null_runs
    by_rate = []
    for i, rate in enumerate(st.rates):
        low, high = wilson(tally.alarms[i], runs)
        by_rate.append({
            "rate": rate, "runs": runs, "alarms": tally.alarms[i],
            "fa_rate": tally.alarms[i] / runs, "ci_low": low, "ci_high": high,
            "meets": high <= 2 * promise, "p_new": _mean(tally.p_new[i]),
            "p_base": _mean(tally.p_base[i]), "warming_up_runs": tally.warming[i],
            "alarm_runs": tally.alarm_runs[i],
        })  # fmt: skip
    return {"scenario": name, "promise": promise, "by_rate": by_rate}


def _change_row(name: str, st: Settings, tally: Tally, horizon: int) -> dict[str, Any]:
    by_rate = []
    for i, rate in enumerate(st.rates):
        arr = np.asarray(tally.delays[i])
        med, p80 = (float(np.quantile(arr, q)) for q in (0.5, 0.8))
        by_rate.append({
            "rate": rate, "runs": len(arr), "detected": int(np.isfinite(arr).sum()),
            "median_minutes": med if math.isfinite(med) else None,
            "p80_minutes": p80 if math.isfinite(p80) else None,
            "p_new": _mean(tally.p_new[i]), "p_base": _mean(tally.p_base[i]),
        })  # fmt: skip
    first = by_rate[0]["p80_minutes"]
    for row in by_rate:
        row["p80_vs_first_rate"] = (
            row["p80_minutes"] / first if row["p80_minutes"] is not None and first else None
        )
    return {"scenario": name, "horizon_minutes": horizon, "by_rate": by_rate}


def _pooled(rows: list[dict[str, Any]], st: Settings, promise: float) -> list[dict[str, Any]]:
    out = []
    for i, rate in enumerate(st.rates):
        alarms = sum(r["by_rate"][i]["alarms"] for r in rows)
        runs = sum(r["by_rate"][i]["runs"] for r in rows)
        low, high = wilson(alarms, runs)
        out.append({"rate": rate, "runs": runs, "alarms": alarms, "fa_rate": alarms / runs,
                    "ci_low": low, "ci_high": high, "meets": high <= 2 * promise})  # fmt: skip
    return out


def run(st: Settings) -> dict[str, Any]:
    started = time.perf_counter()
    result: dict[str, Any] = {"settings": asdict(st)}
    if st.part in ("all", "release"):
        nulls, changes = _release_rows(st, Config(seed=st.seed))
        result["release"] = {"promise": ALPHA, "null": nulls, "changes": changes,
                             "pooled": _pooled(nulls, st, ALPHA)}  # fmt: skip
    if st.part in ("all", "cusum"):
        nulls, changes = _cusum_rows(st)
        result["cusum"] = {"promise": PROMISE_PER_DAY, "null": nulls, "changes": changes,
                           "pooled": _pooled(nulls, st, PROMISE_PER_DAY)}  # fmt: skip
    result["duration_s"] = round(time.perf_counter() - started, 1)
    return result


def _f(value: float | None, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def render(result: dict[str, Any]) -> str:
    st = result["settings"]
    lines = [f"Sampling rates {st['rates']}, version floor {st['floor']:g}/min, seed {st['seed']}"]
    for part, unit in (("release", "per release"), ("cusum", "per day")):
        if part not in result:
            continue
        res = result[part]
        lines += ["", f"{part}: false alarms {unit} (promise {res['promise']:.4f}; goal: "
                  "Wilson upper <= 2x promise)"]  # fmt: skip
        head = "".join(f" | rate {r:<5g} alarms  upper  p_new p_base" for r in st["rates"])
        lines.append(f"{'scenario':42}{head}")
        for row in [*res["null"], {"scenario": "pooled", "by_rate": res["pooled"]}]:
            cells = "".join(
                f" | {c['alarms']:>4}/{c['runs']:<4} {c['fa_rate']:6.3f} {c['ci_high']:6.3f}"
                f"{'' if c['meets'] else '!'} {_f(c.get('p_new'), '.2f'):>5} "
                f"{_f(c.get('p_base'), '.2f'):>5}"
                + (f" w{c['warming_up_runs']}" if c.get("warming_up_runs") else "")
                for c in row["by_rate"]
            )
            lines.append(f"{row['scenario'][:42]:42}{cells}")
        lines += ["", f"{part}: detection delay in minutes (found/runs, median, p80, p80 / rate "
                  f"{st['rates'][0]:g})"]  # fmt: skip
        for row in res["changes"]:
            cells = "".join(
                f" | {c['detected']:>3}/{c['runs']:<3} {_f(c['median_minutes']):>5} "
                f"{_f(c['p80_minutes']):>5} x{_f(c['p80_vs_first_rate'], '.1f'):>4}"
                + (f" early {c['false_before']}" if c.get("false_before") else "")
                for c in row["by_rate"]
            )
            lines.append(f"{row['scenario'][:52]:52}{cells}  (horizon {row['horizon_minutes']})")
    lines += ["", "! = Wilson upper above twice the promise; w = runs still warming up",
              f"total {result['duration_s']} s"]  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few runs, short horizons")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--part", choices=["all", "release", "cusum"], default="all")
    parser.add_argument(
        "--rates",
        type=float,
        nargs="+",
        default=[1.0, 0.25, 0.05],
        help="sampling rates (TELLTALE_SAMPLE_RATE), the first is the reference",
    )
    parser.add_argument(
        "--version-floor",
        type=float,
        default=SamplingConfig().version_floor_per_min,
        help="events a minute a version is scored at least (0: none)",
    )
    parser.add_argument("--null-runs", type=int, help="release null runs per scenario")
    parser.add_argument("--change-runs", type=int, help="release change runs per shift")
    parser.add_argument("--cusum-runs", type=int, help="CUSUM null days per scenario")
    parser.add_argument("--cusum-change-runs", type=int, help="CUSUM change runs per shift")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--only", action="append", default=[],
        help="run only null rows whose name contains this (repeatable); no change rows",
    )  # fmt: skip
    args = parser.parse_args(argv)  # fmt: skip
    quick = args.quick
    st = Settings(
        rates=tuple(args.rates), floor=args.version_floor, seed=args.seed, part=args.part,
        quick=quick, only=tuple(args.only), null_runs=args.null_runs or (4 if quick else 100),
        change_runs=args.change_runs or (3 if quick else 30),
        cusum_runs=args.cusum_runs or (3 if quick else 60),
        cusum_change_runs=args.cusum_change_runs or (3 if quick else 30),
    )  # fmt: skip
    result = run(st)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
