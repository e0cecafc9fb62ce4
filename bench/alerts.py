"""Benchmark of the alert detectors on simulated streams with known ground truth.

Run ``.venv/bin/python bench/alerts.py`` (add ``--json`` for one JSON document on stdout). Every
figure is computed from a seeded simulation in this run; nothing is hard-coded.

Failure-rate scenarios (one row of counts per minute, 200 events a minute per version, 2% base
failure rate, ``alpha = 0.01``):

* **null** — nothing changes for six hours. The release-spike e-process (mixture SPRT) and the
  fixed-horizon z-test both compare a new version with an identical baseline, looking after every
  minute; the CUSUM watches one version (one hour of warm-up to learn ``p0``, five hours monitored,
  threshold calibrated to an in-control ARL of 30 days). A *false alarm* is any alarm in the run;
  the table reports the fraction of runs with one, next to what each method promises.
* **release jump** — the new version fails at 2% + 1, 2 or 5 percentage points from its first
  minute, the baseline stays at 2%; the delay is counted from the release, in minutes and in events
  of the new version, up to six hours.
* **slow degradation** — one version's rate steps up by 1, 2 or 5 points at minute 180 (after the
  warm-up and two quiet hours); the CUSUM's delay is counted from the change, up to six hours.
  Runs that alarm before the change are counted as false alarms, not detections.

Prompt-drift scenarios (embeddings in 32 dimensions, unit-normalised; each run draws 8 topic
centers and a topic mix, prompts are Gaussian clusters around the centers):

* **null** — the same topic mix for six hours. The reference is 800 prompts from before; every
  hour the detector tests 800 prompts sampled from that hour, at ``alpha / 24`` per look (a budget
  of ``alpha`` per day of hourly looks), so six looks promise at most ``6 * alpha / 24``.
* **mix shift** — at a random minute in the second hour, 10% or 30% of prompts start coming from
  a new topic (a ninth center). The delay runs from that minute to the look that fires; events are
  200 per minute since the change. For one run per shift, ``explain_drift`` reports the cluster
  that grew and how many of its example prompts really come from the new topic.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

# ``python bench/alerts.py`` puts bench/ first on sys.path, where this file would shadow the
# ``alerts`` package; the repository root goes there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from alerts import PromptDriftDetector, ReleaseSpikeDetector, explain_drift  # noqa: E402
from bench.baselines import BernoulliCusum, FixedHorizonZTest  # noqa: E402


@dataclass(frozen=True)
class Config:
    seed: int = 20260105
    events_per_minute: int = 200
    base_rate: float = 0.02
    alpha: float = 0.01
    minutes: int = 360
    jumps: tuple[float, ...] = (0.01, 0.02, 0.05)
    rate_null_runs: int = 200
    rate_delay_runs: int = 100
    cusum_warmup: int = 60
    cusum_change_minute: int = 180
    cusum_delta: float = 0.01
    cusum_arl0_minutes: float = 43_200.0
    dim: int = 32
    topics: int = 8
    topic_noise: float = 0.4
    reference_size: int = 800
    window_size: int = 800
    look_every: int = 60
    horizon_looks: int = 24
    n_permutations: int = 4999
    shifts: tuple[float, ...] = (0.1, 0.3)
    drift_null_runs: int = 50
    drift_delay_runs: int = 20


@dataclass(frozen=True)
class FalseAlarms:
    scenario: str
    detector: str
    runs: int
    horizon: str
    promised: str
    alarms: int
    rate: float


@dataclass(frozen=True)
class Delays:
    scenario: str
    detector: str
    runs: int
    detected: int
    early_alarms: int
    median_minutes: float | None
    mean_minutes: float | None
    p90_minutes: float | None
    median_events: float | None


def _rng(cfg: Config, *labels: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([cfg.seed, *labels]))


# --- failure-rate streams -----------------------------------------------------------------------


def _release_run(cfg: Config, jump: float, run: int) -> tuple[int | None, ...]:
    """First alarm minute and new-version events by then, for the e-process and the z-test."""
    rng = _rng(cfg, 1, round(jump * 1e4), run)
    n = cfg.events_per_minute
    k_new = rng.binomial(n, cfg.base_rate + jump, cfg.minutes)
    k_base = rng.binomial(n, cfg.base_rate, cfg.minutes)
    msprt, z_test = ReleaseSpikeDetector(alpha=cfg.alpha), FixedHorizonZTest(alpha=cfg.alpha)
    first: dict[str, int | None] = {"msprt": None, "z": None}
    for minute in range(1, cfg.minutes + 1):
        counts = (n, int(k_new[minute - 1]), n, int(k_base[minute - 1]))
        if first["msprt"] is None and msprt.update(*counts).fired:
            first["msprt"] = minute
        if first["z"] is None and z_test.update(*counts).fired:
            first["z"] = minute
        if first["msprt"] is not None and first["z"] is not None:
            break
    return first["msprt"], first["z"]


def _cusum_run(cfg: Config, jump: float, run: int) -> int | None:
    """Minute of the CUSUM's first alarm on one version's stream, or ``None``."""
    rng = _rng(cfg, 2, round(jump * 1e4), run)
    change = cfg.cusum_change_minute if jump else cfg.minutes + 1
    horizon = cfg.minutes if not jump else change + cfg.minutes
    det = BernoulliCusum(
        delta=cfg.cusum_delta,
        arl0_minutes=cfg.cusum_arl0_minutes,
        warmup_minutes=cfg.cusum_warmup,
        seed=run,
    )
    for minute in range(1, horizon + 1):
        rate = cfg.base_rate + (jump if minute >= change else 0.0)
        if det.update(cfg.events_per_minute, int(rng.binomial(cfg.events_per_minute, rate))).fired:
            return minute
    return None


# --- prompt embeddings --------------------------------------------------------------------------


@dataclass(frozen=True)
class _TopicWorld:
    centers: NDArray[np.float64]  # (topics + 1, dim); the last row is the new topic
    mix: NDArray[np.float64]  # topic probabilities before any shift

    def sample(
        self, rng: np.random.Generator, size: int, new_share: NDArray[np.float64], noise: float
    ) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        topic = rng.choice(len(self.mix), size=size, p=self.mix)
        topic[rng.random(size) < new_share] = len(self.centers) - 1
        x = self.centers[topic] + rng.normal(0.0, noise, (size, self.centers.shape[1]))
        return x / np.linalg.norm(x, axis=1, keepdims=True), topic


def _drift_run(
    cfg: Config, share: float, run: int, explain: bool
) -> tuple[int | None, int, dict[str, float] | None]:
    """First firing look's minute (or ``None``), the change minute, and an optional explanation."""
    rng = _rng(cfg, 3, round(share * 1e4), run)
    world = _TopicWorld(
        centers=rng.normal(size=(cfg.topics + 1, cfg.dim)),
        mix=rng.dirichlet(np.full(cfg.topics, 2.0)),
    )
    change = int(rng.integers(cfg.look_every, 2 * cfg.look_every)) if share else cfg.minutes + 1
    det = PromptDriftDetector(
        alpha=cfg.alpha,
        horizon_looks=cfg.horizon_looks,
        n_permutations=cfg.n_permutations,
        seed=run,
        explain_clusters=0,
    )
    no_shift = np.zeros(cfg.reference_size)
    reference, _ = world.sample(rng, cfg.reference_size, no_shift, cfg.topic_noise)
    for end in range(cfg.look_every, cfg.minutes + 1, cfg.look_every):
        # Each sampled prompt arrives at a uniform minute of the hour; after the change it comes
        # from the new topic with probability ``share``.
        arrival = rng.uniform(end - cfg.look_every, end, cfg.window_size)
        new_share = np.where(arrival >= change, share, 0.0)
        recent, topic = world.sample(rng, cfg.window_size, new_share, cfg.topic_noise)
        if det.update(reference, recent).fired:
            summary = _explanation_summary(reference, recent, topic, cfg) if explain else None
            return end, change, summary
    return None, change, None


def _explanation_summary(
    reference: NDArray[np.float64],
    recent: NDArray[np.float64],
    topic: NDArray[np.int64],
    cfg: Config,
) -> dict[str, float]:
    shifts = explain_drift(reference, recent, k=cfg.topics + 1, seed=cfg.seed, n_examples=10)
    grown = shifts[0]
    new_topic = cfg.topics
    examples = grown.recent_examples
    return {
        "reference_share": grown.reference_share,
        "recent_share": grown.recent_share,
        "true_new_share": float(np.mean(topic == new_topic)),
        "examples_from_new_topic": float(np.mean([topic[i] == new_topic for i in examples])),
        "examples": float(len(examples)),
    }


# --- summaries ----------------------------------------------------------------------------------


def _delays(
    scenario: str,
    detector: str,
    firsts: Sequence[int | None],
    origin: int,
    events_per_minute: int,
    early: int = 0,
) -> Delays:
    minutes = np.asarray([f - origin for f in firsts if f is not None], dtype=np.float64)

    def stat(fn: Callable[[NDArray[np.float64]], float]) -> float | None:
        return float(fn(minutes)) if len(minutes) else None

    return Delays(
        scenario=scenario,
        detector=detector,
        runs=len(firsts) + early,
        detected=len(minutes),
        early_alarms=early,
        median_minutes=stat(np.median),
        mean_minutes=stat(np.mean),
        p90_minutes=stat(lambda m: float(np.quantile(m, 0.9))),
        median_events=stat(lambda m: float(np.median(m)) * events_per_minute),
    )


def run(cfg: Config) -> dict[str, object]:
    started = time.perf_counter()
    timings: dict[str, float] = {}
    false_alarms: list[FalseAlarms] = []
    delays: list[Delays] = []
    explanations: dict[str, dict[str, float] | None] = {}
    hours = cfg.minutes // 60

    t0 = time.perf_counter()
    null = [_release_run(cfg, 0.0, r) for r in range(cfg.rate_null_runs)]
    for name, column, promised in (
        ("release-spike mSPRT", 0, f"<= {cfg.alpha:.3f} (anytime-valid)"),
        ("fixed-horizon z, every minute", 1, f"{cfg.alpha:.3f} per look only"),
    ):
        alarms = sum(run_[column] is not None for run_ in null)
        false_alarms.append(
            FalseAlarms(
                "same rate", name, len(null), f"{hours} h", promised, alarms, alarms / len(null)
            )
        )
    timings["release null"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    cusum_null = [_cusum_run(cfg, 0.0, r) for r in range(cfg.rate_null_runs)]
    monitored = cfg.minutes - cfg.cusum_warmup
    expected = 1.0 - math.exp(-monitored / cfg.cusum_arl0_minutes)
    alarms = sum(first is not None for first in cusum_null)
    false_alarms.append(
        FalseAlarms(
            "same rate",
            f"CUSUM (ARL0 {cfg.cusum_arl0_minutes / 1440:.0f} d)",
            len(cusum_null),
            f"{monitored // 60} h after {cfg.cusum_warmup} min warm-up",
            f"~{expected:.3f} (from ARL0)",
            alarms,
            alarms / len(cusum_null),
        )
    )
    timings["cusum null"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    for jump in cfg.jumps:
        label = f"+{jump * 100:.0f} pp ({cfg.base_rate:.0%} -> {cfg.base_rate + jump:.0%})"
        runs = [_release_run(cfg, jump, r) for r in range(cfg.rate_delay_runs)]
        for name, column in (("release-spike mSPRT", 0), ("fixed-horizon z, every minute", 1)):
            firsts = [run_[column] for run_ in runs]
            delays.append(_delays(f"release {label}", name, firsts, 0, cfg.events_per_minute))
        change = cfg.cusum_change_minute
        cusum = [_cusum_run(cfg, jump, r) for r in range(cfg.rate_delay_runs)]
        early = sum(1 for first in cusum if first is not None and first < change)
        firsts_after = [first for first in cusum if first is None or first >= change]
        delays.append(
            _delays(
                f"degradation {label}", "CUSUM", firsts_after, change, cfg.events_per_minute, early
            )
        )
    timings["rate jumps"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    drift_null = [_drift_run(cfg, 0.0, r, explain=False) for r in range(cfg.drift_null_runs)]
    looks = cfg.minutes // cfg.look_every
    alarms = sum(first is not None for first, _, _ in drift_null)
    false_alarms.append(
        FalseAlarms(
            "same prompt mix",
            "prompt drift MMD, hourly",
            len(drift_null),
            f"{looks} looks",
            f"<= {looks * cfg.alpha / cfg.horizon_looks:.4f} (Bonferroni)",
            alarms,
            alarms / len(drift_null),
        )
    )
    timings["drift null"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    for share in cfg.shifts:
        outcomes = [_drift_run(cfg, share, r, explain=r == 0) for r in range(cfg.drift_delay_runs)]
        minutes = [None if first is None else first - change for first, change, _ in outcomes]
        delays.append(
            _delays(
                f"prompt mix {share:.0%} new topic",
                "prompt drift MMD, hourly",
                minutes,
                0,
                cfg.events_per_minute,
            )
        )
        explanations[f"{share:.0%}"] = outcomes[0][2]
    timings["drift shifts"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - started

    return {
        "config": asdict(cfg),
        "false_alarms": [asdict(f) for f in false_alarms],
        "delays": [asdict(d) for d in delays],
        "explanations": explanations,
        "seconds": {k: round(v, 1) for k, v in timings.items()},
    }


def _fmt(value: object, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


def render(result: dict[str, object]) -> str:
    cfg = result["config"]
    assert isinstance(cfg, dict)
    false_alarms = result["false_alarms"]
    delays = result["delays"]
    explanations = result["explanations"]
    assert isinstance(false_alarms, list) and isinstance(delays, list)
    assert isinstance(explanations, dict)
    out = [
        f"telltale alert detectors, seed {cfg['seed']}: {cfg['events_per_minute']} events/min "
        f"per version, base failure rate {cfg['base_rate']:.0%}, alpha {cfg['alpha']}",
        "",
        "False alarms (no change)",
        _table(
            ["scenario", "detector", "runs", "horizon", "promised rate", "alarms", "rate"],
            [
                [
                    f["scenario"],
                    f["detector"],
                    str(f["runs"]),
                    f["horizon"],
                    f["promised"],
                    str(f["alarms"]),
                    f"{f['rate']:.3f}",
                ]
                for f in false_alarms
            ],
        ),
        "",
        "Detection delay after the change (minutes; events of the changed stream)",
        _table(
            [
                "scenario",
                "detector",
                "detected",
                "early",
                "median min",
                "mean min",
                "p90 min",
                "median events",
            ],
            [
                [
                    d["scenario"],
                    d["detector"],
                    f"{d['detected']}/{d['runs']}",
                    str(d["early_alarms"]),
                    _fmt(d["median_minutes"]),
                    _fmt(d["mean_minutes"], 1),
                    _fmt(d["p90_minutes"]),
                    _fmt(d["median_events"]),
                ]
                for d in delays
            ],
        ),
        "  (early = CUSUM alarms before the change; those runs count as false alarms, not delays)",
        "",
        "explain_drift on the first firing look of run 0 (cluster that grew most)",
    ]
    for share, summary in explanations.items():
        if summary is None:
            out.append(f"  {share} shift: run 0 did not fire")
            continue
        out.append(
            f"  {share} shift: share {summary['reference_share']:.3f} in reference -> "
            f"{summary['recent_share']:.3f} in recent window (true new-topic share "
            f"{summary['true_new_share']:.3f}); {summary['examples_from_new_topic']:.0%} of "
            f"{summary['examples']:.0f} nearest examples are from the new topic"
        )
    seconds = result["seconds"]
    assert isinstance(seconds, dict)
    out += ["", "seconds: " + ", ".join(f"{k} {v}" for k, v in seconds.items())]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--seed", type=int, default=Config.seed)
    args = parser.parse_args(argv)
    result = run(Config(seed=args.seed))
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
