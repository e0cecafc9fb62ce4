"""Audits: a small labelled sample measures a signal's own errors, and flag rates are corrected.

A signal's flag rate ``q`` is not the failure rate ``π``: with sensitivity ``Se`` (the share of
failing events it flags) and specificity ``Sp`` (the share of good events it leaves alone),
``q = Se·π + (1 − Sp)·(1 − π)``, so ``π = (q + Sp − 1) / (Se + Sp − 1)`` (Rogan–Gladen). Both
``Se`` and ``Sp`` are unknown and are measured here from an audit.

The sampling design
-------------------
The stored events of one signal version are cut into strata: product version × score band
(``flagged``; ``near``, the unflagged events scoring in the top tenth of the unflagged, where the
misses sit; ``clear``, the rest). A budget of ``n`` labels is spread over the strata by Neyman
allocation (``n_h ∝ N_h·S_h``, with a guessed spread ``S_h`` per band, at least two per stratum
so that none is left to its prior), and each stratum is drawn by simple random sampling, so each
drawn event's inclusion probability is ``n_h / N_h``.

The estimator, and why this one
-------------------------------
Each stratum's failure share ``θ_h`` gets a weak prior worth one label (the flagged band
Jeffreys' Beta(½, ½); the unflagged bands Beta(0.3, 0.7), as failures are rarer there: with
Jeffreys' prior a clear band of 17,000 events with 0 failures in 26 labels still "holds" 150
failures a priori and the interval misses low prevalences from above) and, from ``x_h``
failures among ``n_h`` labels, the posterior Beta(x_h + a, n_h − x_h + b). Monte Carlo draws
of every ``θ_h`` give draws of ``Se = Σ_flagged N_h θ_h / Σ_h N_h θ_h`` and
``Sp = Σ_unflagged N_h (1 − θ_h) / Σ_h N_h (1 − θ_h)``. A rate row with ``k`` flags among ``n``
events draws its flag rate from Beta(k + ½, n − k + ½) and, per draw, the Rogan–Gladen value
clipped to [0, 1]; the corrected rate is the median of those draws and the interval their 2.5 %
and 97.5 % quantiles. So the interval carries both the flag rate's sampling error and the error
of the audit.

Chosen by coverage (``bench/corrected_rates.py``): the delta-method Rogan–Gladen interval is
symmetric and undercovers at low prevalence, where the truth sits near 0 and the sampling
distribution is skewed; a bootstrap of 40 labels with no failure in a stratum resamples that
zero and gives a zero-width share. The Beta posteriors keep a zero count uncertain and the
clipped draws keep the interval inside [0, 1].

The assumption every misclassification correction makes, stated: the signal's ``Se`` and ``Sp``
are the same in the rows corrected as in the audited events. They are estimated per product
version where that version has enough labels (a new release writes differently), and
:func:`error_shift` says when two versions' sensitivity or specificity differs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "BANDS",
    "NEAR_QUANTILE",
    "Band",
    "CorrectedRate",
    "ErrorEstimate",
    "ErrorModel",
    "ErrorShift",
    "Interval",
    "StratumCount",
    "StratumKey",
    "allocate",
    "band_of",
    "error_shift",
]

Band = Literal["flagged", "near", "clear"]
BANDS: tuple[Band, ...] = ("flagged", "near", "clear")

NEAR_QUANTILE = 0.9
"""Unflagged events scoring at or above this quantile of the unflagged scores are ``near``."""

StratumKey = tuple[str, str]
"""(product version, score band)."""

# Guessed spread sqrt(θ(1 − θ)) per band for Neyman allocation: flagged events fail about half
# the time, near ones sometimes, clear ones rarely (θ ≈ 0.5, 0.2, 0.02).
_BAND_SPREAD: dict[str, float] = {"flagged": 0.5, "near": 0.4, "clear": 0.14}
_MIN_PER_STRATUM = 2
_DRAWS = 4000
_SEED = 20261206
_PRIOR: dict[str, tuple[float, float]] = {
    "flagged": (0.5, 0.5),
    "near": (0.3, 0.7),
    "clear": (0.3, 0.7),
}


def band_of(flagged: bool, score: float, near_cut: float) -> Band:
    """The score band of one event (``near_cut``: the unflagged scores' NEAR_QUANTILE)."""
    if flagged:
        return "flagged"
    return "near" if score >= near_cut else "clear"


def allocate(sizes: Mapping[StratumKey, int], budget: int) -> dict[StratumKey, int]:
    """How many of ``budget`` labels each stratum gets (never more than its size).

    Neyman allocation ``n_h ∝ N_h·S_h`` after a floor of two per stratum; largest remainders
    round, and what a small stratum cannot take goes to the others.

    >>> allocate({("v1", "flagged"): 100, ("v1", "clear"): 900}, 10)
    {('v1', 'clear'): 6, ('v1', 'flagged'): 4}
    """
    if budget < 1:
        raise ValueError("an audit needs a budget of at least one label")
    keys = sorted((k for k, n in sizes.items() if n > 0), key=lambda k: (-sizes[k], k))
    budget = min(budget, sum(sizes[k] for k in keys))
    take = {k: 0 for k in keys}
    for k in keys:  # the floor, biggest strata first when the budget is tiny
        extra = min(_MIN_PER_STRATUM, sizes[k], budget - sum(take.values()))
        take[k] += max(extra, 0)
    while (left := budget - sum(take.values())) > 0:
        open_keys = [k for k in keys if take[k] < sizes[k]]
        weights = np.array([sizes[k] * _BAND_SPREAD[k[1]] for k in open_keys], dtype=float)
        share = weights / weights.sum() * left
        whole = np.floor(share).astype(int)
        order = np.argsort(-(share - whole), kind="stable")
        for i in order[: left - int(whole.sum())]:
            whole[i] += 1
        for k, n in zip(open_keys, whole, strict=True):
            take[k] = min(sizes[k], take[k] + int(n))
    return {k: take[k] for k in sorted(keys) if take[k] > 0}


@dataclass(frozen=True)
class StratumCount:
    """One stratum of an audit: its size, how many of its drawn events are labelled, and how
    many of those fail."""

    key: StratumKey
    size: int
    labelled: int
    failures: int

    def __post_init__(self) -> None:
        if not 0 <= self.failures <= self.labelled <= self.size:
            raise ValueError(f"stratum {self.key}: need 0 <= failures <= labelled <= size")


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float | None]:
        """JSON-ready: an undefined measure (NaN, e.g. precision with nothing flagged) is None."""
        values = {"value": self.value, "low": self.low, "high": self.high}
        return {k: None if math.isnan(v) else v for k, v in values.items()}


@dataclass(frozen=True)
class ErrorEstimate:
    """A signal's measured errors on the audited events (95 % intervals)."""

    labelled: int
    failures: int
    sensitivity: Interval
    specificity: Interval
    precision: Interval
    prevalence: Interval

    def as_dict(self) -> dict[str, object]:
        return {
            "labelled": self.labelled,
            "failures_labelled": self.failures,
            "sensitivity": self.sensitivity.as_dict(),
            "specificity": self.specificity.as_dict(),
            "precision": self.precision.as_dict(),
            "prevalence": self.prevalence.as_dict(),
        }


@dataclass(frozen=True)
class CorrectedRate:
    """A failure rate with the signal's errors taken out and put into the interval."""

    rate: float
    low: float
    high: float
    note: str = ""


def _interval(draws: NDArray[np.float64]) -> Interval:
    lo, mid, hi = np.quantile(draws, [0.025, 0.5, 0.975])
    return Interval(float(mid), float(lo), float(hi))


class ErrorModel:
    """Posterior draws of a signal's sensitivity, specificity and precision from its audit.

    >>> model = ErrorModel([StratumCount(("v1", "flagged"), 100, 20, 15),
    ...                     StratumCount(("v1", "clear"), 900, 20, 1)])
    >>> round(model.correct(1000, 100).rate, 2)
    0.13
    """

    def __init__(self, strata: Sequence[StratumCount], *, seed: int = _SEED) -> None:
        if not strata:
            raise ValueError("an error model needs at least one audited stratum")
        self.strata = tuple(strata)
        rng = np.random.default_rng(seed)
        theta = np.column_stack(
            [
                rng.beta(s.failures + a, s.labelled - s.failures + b, _DRAWS)
                for s in strata
                for a, b in (_PRIOR[s.key[1]],)
            ]
        )
        size = np.array([s.size for s in strata], dtype=float)
        flagged = np.array([s.key[1] == "flagged" for s in strata])
        fail = theta * size
        good = (1.0 - theta) * size
        fail_flagged = fail[:, flagged].sum(axis=1)
        good_flagged = good[:, flagged].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.sensitivity = fail_flagged / fail.sum(axis=1)
            self.specificity = (good.sum(axis=1) - good_flagged) / good.sum(axis=1)
            self.precision = fail_flagged / size[flagged].sum() if flagged.any() else None
        self.prevalence = fail.sum(axis=1) / size.sum()
        self._rng = rng

    @property
    def labelled(self) -> int:
        return sum(s.labelled for s in self.strata)

    def estimate(self) -> ErrorEstimate:
        nan = Interval(float("nan"), float("nan"), float("nan"))
        return ErrorEstimate(
            labelled=self.labelled,
            failures=sum(s.failures for s in self.strata),
            sensitivity=_interval(self.sensitivity),
            specificity=_interval(self.specificity),
            precision=nan if self.precision is None else _interval(self.precision),
            prevalence=_interval(self.prevalence),
        )

    def correct(
        self, events: int, flagged: float, *, effective_events: float | None = None
    ) -> CorrectedRate:
        """The failure rate of a row with ``flagged`` of ``events`` flagged, corrected
        (``flagged`` need not be whole: a sampled row's weighted estimate).

        ``effective_events``: what the row's events are worth as independent draws. Retries
        repeat one content, and a classifier gives every copy the same flag, so ``m`` copies
        move the flag count by ``m`` at once: with content groups of sizes ``m_i`` the row is
        worth ``n² / Σ m_i²`` events (Kish's effective sample size with identical copies).
        Without it, events are taken as independent.
        """
        if events <= 0:
            raise ValueError("a rate needs at least one event")
        n = min(float(events), effective_events) if effective_events else float(events)
        k = flagged * n / events
        q = self._rng.beta(k + 0.5, n - k + 0.5, _DRAWS)
        youden = self.sensitivity + self.specificity - 1.0
        usable = youden > 0
        pi = np.clip((q[usable] + self.specificity[usable] - 1.0) / youden[usable], 0.0, 1.0)
        if usable.mean() < 0.5:
            # the audit says the signal is more likely than not no better than chance: its flags
            # say nothing about failures, and the honest interval is everything
            mid = float(np.median(pi)) if pi.size else float("nan")
            return CorrectedRate(mid, 0.0, 1.0, "signal not better than chance on its audit")
        lo, mid, hi = np.quantile(pi, [0.025, 0.5, 0.975])
        note = "" if usable.mean() >= 0.975 else "audit too small to rule out a chance-level signal"
        return CorrectedRate(float(mid), float(lo), float(hi), note)


@dataclass(frozen=True)
class ErrorShift:
    """A signal's errors on two product versions, and whether the instrument changed.

    Precision is shown but does not decide: it moves with the failure rate even when the
    classifier does not (more failures, more of the flags are right). Sensitivity and
    specificity do not; the instrument changed when either differs (95 % interval of the
    difference excludes 0)."""

    before: str
    after: str
    precision_before: Interval
    precision_after: Interval
    sensitivity_difference: Interval  # after − before
    specificity_difference: Interval

    @property
    def changed(self) -> bool:
        return any(
            d.high < 0 or d.low > 0
            for d in (self.sensitivity_difference, self.specificity_difference)
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "before": self.before,
            "after": self.after,
            "precision_before": self.precision_before.as_dict(),
            "precision_after": self.precision_after.as_dict(),
            "sensitivity_difference": self.sensitivity_difference.as_dict(),
            "specificity_difference": self.specificity_difference.as_dict(),
            "changed": self.changed,
        }


def error_shift(
    before: str, after: str, model_before: ErrorModel, model_after: ErrorModel
) -> ErrorShift | None:
    """Compare a signal's audited errors on two product versions (None when one has no flagged
    stratum). The models' draws are independent, so the quantiles of their differences are
    intervals of the changes."""
    if model_before.precision is None or model_after.precision is None:
        return None
    return ErrorShift(
        before, after, _interval(model_before.precision), _interval(model_after.precision),
        _interval(model_after.sensitivity - model_before.sensitivity),
        _interval(model_after.specificity - model_before.specificity),
    )  # fmt: skip
