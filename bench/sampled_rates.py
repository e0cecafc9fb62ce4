"""Coverage of a sampled rate's interval: does it hold the planted rate 95 % of the time?

    .venv/bin/python bench/sampled_rates.py [--runs 2000] [--rate 0.25] [--json]

Traffic as the sampling tests make it (``tests/support/sampled_traffic.py``): ``--users`` users
of ``--per-user`` events, each fresh answer a failure with probability ``--failure-rate``, a
user's later events repeating their last answer with probability ``--retry``. Units are drawn
as the worker draws them (:func:`streams.sampling.unit_draw`, a new salt each run) at
``--rate``; the rate is the share flagged among the drawn events (equal weights: the Hájek
estimate) and its interval is Wilson's on (a) Kish's effective size alone, the drawn count at
equal weights, and (b) that times the content groups' share, ``n² / Σ m_i²`` over identical
answers, as ``telltale rates`` computes it (:mod:`telltale.sampled_rates`). Printed: the share
of runs whose interval holds the whole traffic's rate, and the mean width of each.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from alerts import wilson_interval_of_rate  # noqa: E402
from streams.sampling import unit_draw  # noqa: E402


@dataclass
class Tally:
    held: int = 0
    width: float = 0.0

    def add(self, low: float, high: float, truth: float) -> None:
        self.held += low <= truth <= high
        self.width += high - low


def one_run(seed: int, args: argparse.Namespace, kish: Tally, both: Tally) -> bool:
    """One traffic, one draw; False when nothing was drawn."""
    rng = random.Random(seed)
    events: list[tuple[int, int, bool]] = []  # (user, answer, flagged)
    answer = 0
    for user in range(args.users):
        current: tuple[int, bool] | None = None
        for _ in range(args.per_user):
            if current is None or rng.random() >= args.retry:
                answer += 1
                current = (answer, rng.random() < args.failure_rate)
            events.append((user, *current))
    truth = sum(flagged for *_, flagged in events) / len(events)
    drawn = [e for e in events if unit_draw(f"user:{e[0]}", f"run{seed}") < args.rate]
    n = len(drawn)
    if not n:
        return False
    estimate = sum(flagged for *_, flagged in drawn) / n
    groups: dict[int, int] = {}
    for _, content, _ in drawn:
        groups[content] = groups.get(content, 0) + 1
    worth = n * n / sum(m * m for m in groups.values())
    kish.add(*wilson_interval_of_rate(estimate, n), truth)
    both.add(*wilson_interval_of_rate(estimate, n * min(worth / n, 1.0)), truth)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=0.25)
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--per-user", type=int, default=5)
    parser.add_argument("--failure-rate", type=float, default=0.2)
    parser.add_argument("--retry", type=float, default=0.4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    kish, both = Tally(), Tally()
    runs = sum(one_run(seed, args, kish, both) for seed in range(args.runs))
    result = {
        "runs": runs, "sampling_rate": args.rate,
        "kish_only": {"coverage": kish.held / runs, "mean_width": kish.width / runs},
        "kish_times_content": {"coverage": both.held / runs, "mean_width": both.width / runs},
    }  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{runs} runs at sampling rate {args.rate}: share of intervals holding the rate")
    for name in ("kish_only", "kish_times_content"):
        r = result[name]
        print(f"  {name:20s} coverage {r['coverage']:.3f}  mean width {r['mean_width']:.3f}")


if __name__ == "__main__":
    main()
