"""Coverage of the corrected failure rate: simulated signals of known error, audited, corrected.

    .venv/bin/python bench/corrected_rates.py [--draws 500] [--population 20000] [--json]

Per cell (signal sensitivity/specificity × true prevalence × audit budget) and per draw:

1. a population of events, each failing with the cell's prevalence; a signal's score is
   N(0, 1) for good events and N(μ, 1) for failing ones, with the threshold and μ set so that
   the signal has exactly the cell's specificity and sensitivity;
2. the audit of ``signals.audit``: score bands (flagged / near / clear), Neyman allocation of
   the budget, a simple random sample per stratum, labels from the known truth;
3. the corrected rate (``ErrorModel.correct``) of two rows: the audited population itself, and a
   *slice* of 2,000 later events whose prevalence is twice the population's (the correction
   carries the signal's errors, not the population's prevalence, to other rows);
4. whether each 95 % interval covers the row's true failure share, and for contrast whether the
   raw flag rate's Wilson interval does.

``--scenario retries`` makes the traffic production-shaped: a fifth of the events are retries of
earlier ones by the same user (Zipf-distributed repeat counts), with the same content, so the
same truth and the same flag; the audit then draws retries as separate events, as it would,
and each row's flag rate is worth ``n² / Σ m_i²`` independent events (``m_i``: copies of one
content), as ``telltale rates --corrected`` counts it from the stored contents.

Printed per cell: coverage of the corrected interval on the population and on the slice, its
median width, and the raw Wilson coverage.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402
from scipy.stats import norm  # noqa: E402

from signals.audit import (  # noqa: E402
    NEAR_QUANTILE,
    ErrorModel,
    StratumCount,
    allocate,
)

SIGNALS = ((0.7, 0.9), (0.9, 0.98), (0.6, 0.8))
PREVALENCES = (0.01, 0.05, 0.2)
BUDGETS = (40, 80, 160)
SLICE_EVENTS = 2000


@dataclass
class Cell:
    covered: int = 0
    covered_slice: int = 0
    raw_covered: int = 0
    widths: list[float] | None = None
    draws: int = 0


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def population(
    rng: np.random.Generator, n: int, prevalence: float, se: float, sp: float, retries: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Truth, score and flag of ``n`` events (with retries: repeated rows of earlier ones), and
    the events' worth as independent draws, ``n² / Σ m_i²`` over content groups of size m_i."""
    threshold = norm.ppf(sp)
    shift = threshold - norm.ppf(1 - se)
    unique = int(n * 0.8) if retries else n
    truth = rng.random(unique) < prevalence
    score = rng.normal(0.0, 1.0, unique) + shift * truth
    if retries:
        repeats = np.minimum(rng.zipf(1.8, unique) - 1, 50)
        origin = np.repeat(np.arange(unique), repeats)[: n - unique]
        origin = np.concatenate([origin, rng.integers(0, unique, n - unique - origin.size)])
        truth = np.concatenate([truth, truth[origin]])
        score = np.concatenate([score, score[origin]])
        sizes = np.bincount(np.concatenate([np.arange(unique), origin]))
        return truth, score, score >= threshold, n * n / float((sizes**2).sum())
    return truth, score, score >= threshold, float(n)


def audit(
    rng: np.random.Generator, truth: np.ndarray, score: np.ndarray, flag: np.ndarray, budget: int
) -> ErrorModel:
    near_cut = np.quantile(score[~flag], NEAR_QUANTILE)
    band = np.where(flag, "flagged", np.where(score >= near_cut, "near", "clear"))
    members = {b: np.flatnonzero(band == b) for b in ("flagged", "near", "clear")}
    sizes = {("v1", b): int(m.size) for b, m in members.items()}
    take = allocate(sizes, budget)
    strata = []
    for (version, b), n in take.items():
        drawn = rng.choice(members[b], size=n, replace=False)
        strata.append(StratumCount((version, b), sizes[(version, b)], n, int(truth[drawn].sum())))
    return ErrorModel(strata, seed=int(rng.integers(2**31)))


def run_cell(
    se: float, sp: float, prevalence: float, budget: int, draws: int, size: int, retries: bool,
    seed: int,
) -> Cell:  # fmt: skip
    rng = np.random.default_rng(seed)
    cell = Cell(widths=[])
    for _ in range(draws):
        truth, score, flag, worth = population(rng, size, prevalence, se, sp, retries)
        model = audit(rng, truth, score, flag, budget)
        corrected = model.correct(size, int(flag.sum()), effective_events=worth)
        true_rate = truth.mean()
        cell.covered += corrected.low <= true_rate <= corrected.high
        low, high = wilson(int(flag.sum()), size)
        cell.raw_covered += low <= true_rate <= high
        s_truth, _, s_flag, s_worth = population(rng, SLICE_EVENTS, 2 * prevalence, se, sp,
                                                 retries)  # fmt: skip
        in_slice = model.correct(SLICE_EVENTS, int(s_flag.sum()), effective_events=s_worth)
        cell.covered_slice += in_slice.low <= s_truth.mean() <= in_slice.high
        assert cell.widths is not None
        cell.widths.append(corrected.high - corrected.low)
        cell.draws += 1
    return cell


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--population", type=int, default=20_000)
    parser.add_argument("--scenario", choices=("iid", "retries"), default="iid")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = []
    for i, (se, sp) in enumerate(SIGNALS):
        for j, prevalence in enumerate(PREVALENCES):
            for k, budget in enumerate(BUDGETS):
                retries = args.scenario == "retries"
                seed = 1000 * i + 100 * j + k
                cell = run_cell(se, sp, prevalence, budget, args.draws, args.population, retries,
                                seed)  # fmt: skip
                assert cell.widths is not None
                rows.append({
                    "sensitivity": se, "specificity": sp, "prevalence": prevalence,
                    "budget": budget, "draws": cell.draws,
                    "coverage": cell.covered / cell.draws,
                    "coverage_slice": cell.covered_slice / cell.draws,
                    "median_width": statistics.median(cell.widths),
                    "raw_wilson_coverage": cell.raw_covered / cell.draws,
                })  # fmt: skip
    if args.json:
        print(json.dumps({"scenario": args.scenario, "cells": rows}, indent=2))
        return
    print(f"scenario {args.scenario}: {args.draws} draws per cell, population "
          f"{args.population}, slice {SLICE_EVENTS} events at twice the prevalence")  # fmt: skip
    print(f"{'Se/Sp':>9} {'prev':>5} {'labels':>6} {'coverage':>9} {'slice':>7} "
          f"{'width':>7} {'raw Wilson':>11}")  # fmt: skip
    for r in rows:
        print(f"{r['sensitivity']:.2f}/{r['specificity']:.2f} {r['prevalence']:>5.0%} "
              f"{r['budget']:>6} {r['coverage']:>9.1%} {r['coverage_slice']:>7.1%} "
              f"{r['median_width']:>7.3f} {r['raw_wilson_coverage']:>11.1%}")  # fmt: skip
    worst = min(min(r["coverage"], r["coverage_slice"]) for r in rows)
    print(f"lowest coverage in any cell: {worst:.1%}  ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
