"""Prompt drift: scheduled MMD permutation tests with a per-horizon false-alarm budget.

Each look tests a recent window of prompt embeddings against a reference
(:func:`~alerts.detectors.mmd.mmd_permutation_test`, permuting units as wholes) at
``alpha / horizon_looks`` (Bonferroni over the horizon); :class:`DriftHysteresis` makes one
sustained shift one incident, and :func:`~alerts.detectors.explain.explain_drift` says which
kinds of prompts grew.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from alerts.detectors.base import Detection
from alerts.detectors.explain import ClusterShift, explain_drift
from alerts.detectors.mmd import embedding_matrix, mmd_permutation_test

__all__ = [
    "DriftHysteresis",
    "DriftState",
    "PromptDriftDetector",
    "count_window_start",
    "look_level",
    "seasonal_reference_spans",
]

_DAY = timedelta(days=1)


@dataclass(frozen=True)
class DriftState:
    """Result of one look. ``level`` is the per-look significance level ``alpha/horizon_looks``;
    ``explanation`` is filled only on looks that fired, largest growth first."""

    look: int
    mmd2: float
    p_value: float
    level: float
    fired: bool
    bandwidth: float
    n_reference: int
    n_recent: int
    explanation: tuple[ClusterShift, ...] | None


class PromptDriftDetector:
    """Scheduled MMD permutation tests with a per-horizon false-alarm budget.

    Call :meth:`update` once per look (e.g. hourly) with the reference window and the recent
    window, both ``(n, dim)`` embedding arrays; each look should use a recent window that does not
    overlap the previous one. A look fires when its p-value is at most ``alpha / horizon_looks``;
    by the Bonferroni inequality the chance of any false alarm among ``horizon_looks`` looks is
    at most ``alpha``. The defaults fit hourly looks: at most one false alarm per hundred days on
    average.
    ``n_permutations`` must be large enough for the p-value to reach the per-look level;
    ``stop_after`` ends a look early once that many permutations beat the observed statistic
    (see :func:`mmd_permutation_test`), which makes looks without drift cheap. On a look that
    fires, :func:`explain_drift` with ``explain_clusters`` clusters is run and attached to the
    state (``explain_clusters=0`` turns it off). ``level`` overrides the per-look level (see
    :func:`look_level` for a look whose window replaces several scheduled ones).
    """

    name = "prompt_drift"

    def __init__(
        self,
        alpha: float = 0.01,
        horizon_looks: int = 24,
        n_permutations: int = 4999,
        seed: int = 0,
        explain_clusters: int = 8,
        stop_after: int | None = 20,
        *,
        level: float | None = None,
    ) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError("alpha must be in (0, 1)")
        if horizon_looks < 1:
            raise ValueError("horizon_looks must be >= 1")
        if level is not None and not 0.0 < level <= alpha:
            raise ValueError("level must be in (0, alpha]")
        level = alpha / horizon_looks if level is None else level
        if 1.0 / (1.0 + n_permutations) > level:
            raise ValueError(
                f"n_permutations={n_permutations} cannot reach the per-look level {level:.2g}; "
                f"use at least {math.ceil(1.0 / level) - 1}"
            )
        self.alpha = alpha
        self.horizon_looks = horizon_looks
        self.level = level
        self.n_permutations = n_permutations
        self.seed = seed
        self.explain_clusters = explain_clusters
        self.stop_after = stop_after
        self.reset()

    def reset(self) -> None:
        self._look = 0
        self._state: DriftState | None = None

    @property
    def state(self) -> DriftState | None:
        return self._state

    def update(
        self,
        reference: ArrayLike,
        recent: ArrayLike,
        reference_units: Sequence[Hashable] | None = None,
        recent_units: Sequence[Hashable] | None = None,
    ) -> DriftState:
        """Run one look: test ``recent`` against ``reference`` and return its result.

        With unit labels (user or session per row) whole units are permuted (see
        :func:`mmd_permutation_test`)."""
        x = embedding_matrix(reference, "reference")
        y = embedding_matrix(recent, "recent")
        look = self._look + 1
        # One independent, reproducible stream of permutations per look.
        seed = int(np.random.SeedSequence([self.seed, look]).generate_state(1)[0])
        result = mmd_permutation_test(
            x, y, self.n_permutations, seed=seed, stop_after=self.stop_after,
            reference_units=reference_units, recent_units=recent_units,
        )  # fmt: skip
        fired = result.p_value <= self.level
        explanation = None
        if fired and self.explain_clusters > 0:
            k = min(self.explain_clusters, len(x) + len(y))
            explanation = explain_drift(x, y, k, seed=self.seed)
        self._look = look
        self._state = DriftState(
            look=look,
            mmd2=result.mmd2,
            p_value=result.p_value,
            level=self.level,
            fired=fired,
            bandwidth=result.bandwidth,
            n_reference=len(x),
            n_recent=len(y),
            explanation=explanation,
        )
        return self._state

    def detection(self, key: str, at: datetime) -> Detection | None:
        s = self._state
        if s is None or not s.fired:
            return None
        grown = s.explanation[0] if s.explanation else None
        return Detection(
            detector=self.name,
            key=key,
            opened_at=at,
            statistic=s.p_value,
            threshold=s.level,
            p_value=s.p_value,
            effect=grown.change if grown else None,
            details={
                "mmd2": s.mmd2,
                "bandwidth": s.bandwidth,
                "look": s.look,
                "n_reference": s.n_reference,
                "n_recent": s.n_recent,
                "clusters": [
                    {
                        "cluster": c.cluster,
                        "reference_share": c.reference_share,
                        "recent_share": c.recent_share,
                        "recent_examples": list(c.recent_examples),
                    }
                    for c in s.explanation or ()
                ],
            },
        )


def seasonal_reference_spans(
    start: datetime,
    end: datetime,
    days: int,
    *,
    before: datetime | None = None,
    reach_days: int = 14,
) -> list[tuple[datetime, datetime]]:
    """The same clock hours as ``[start, end)`` on ``days`` previous days, newest first.

    This is the reference for a product whose topics follow the time of day (support questions
    by day, creative writing at night), so a daily cycle is not mistaken for drift. With
    ``before`` (when an open drift incident began) only days whose span ends by then are used,
    reaching back at most ``reach_days``: while an incident is open the window is compared with
    how prompts looked *before* it, so a sustained shift is not slowly absorbed into its own
    reference and re-opened as a second incident a day later.
    """
    if days < 1 or reach_days < days:
        raise ValueError("need 1 <= days <= reach_days")
    if end <= start:
        raise ValueError("the window must have a positive length")
    spans = []
    for d in range(1, reach_days + 1):
        span = (start - d * _DAY, end - d * _DAY)
        if before is not None and span[1] > before:
            continue
        spans.append(span)
        if len(spans) == days:
            break
    return spans


def count_window_start(
    end: datetime, pending: datetime | None, recent: timedelta, longest: timedelta
) -> datetime:
    """Start of the recent window that ends at ``end``.

    The window covers at least ``recent`` and reaches back to ``pending``, the end of the last
    window that was tested, when that is earlier: at low traffic a look with too few prompts is
    skipped and its prompts stay in the next window, so windows hold a *count* of prompts (at
    least the minimum) rather than a fixed hour. ``longest`` caps how far back a window reaches.
    """
    start = end - recent if pending is None else min(end - recent, pending)
    return max(start, end - longest)


def look_level(alpha: float, horizon_looks: int, window: timedelta, every: timedelta) -> float:
    """Significance level of one look whose recent window spans ``window``.

    Looks are scheduled every ``every`` and budgeted ``alpha`` per ``horizon_looks`` of them
    (Bonferroni). A count window that waited for prompts spans several schedule slots and
    replaces the looks that were skipped, so it gets their share too:
    ``alpha / horizon_looks * window / every`` (at most ``alpha``). Recent windows never
    overlap, so the levels of the looks within any ``horizon_looks * every`` still sum to at
    most ``alpha``, and ~10 prompts an hour are tested at a useful level.
    """
    slots = max(1.0, window / every)
    return min(alpha, alpha / horizon_looks * slots)


_LookOutcome = Literal["opened", "continuing", "resolved", "quiet"]


class DriftHysteresis:
    """Turns per-look verdicts into incidents: open on strong evidence, close on lasting calm.

    An incident opens on a look that fires (its p-value at or below the per-look level, a strong
    threshold), stays open through looks whose p-value is at most ``clean_level`` (a much
    weaker one: the shift is still visible), and resolves only after ``clean_looks`` consecutive
    looks above ``clean_level``. A sustained shift whose p-values hover around the per-look level
    is therefore one incident, not one per crossing. Its whole state is ``is_open`` and the clean
    streak, so a restarted monitor rebuilds it by feeding the stored looks of an open incident to
    :meth:`update` again (:mod:`alerts.tracks.prompt_drift`).

    >>> h = DriftHysteresis(clean_level=0.05, clean_looks=2)
    >>> [h.update(f, p) for f, p in [(True, 1e-5), (False, 0.01), (False, 0.3), (True, 1e-6),
    ...                              (False, 0.5), (False, 0.4)]]
    ['opened', 'continuing', 'continuing', 'continuing', 'continuing', 'resolved']
    """

    def __init__(self, clean_level: float = 0.05, clean_looks: int = 3, *, is_open: bool = False):
        if not 0.0 < clean_level < 1.0:
            raise ValueError("clean_level must be in (0, 1)")
        if clean_looks < 1:
            raise ValueError("clean_looks must be >= 1")
        self.clean_level = clean_level
        self.clean_looks = clean_looks
        self.is_open = is_open
        self.clean_streak = 0

    def update(self, fired: bool, p_value: float) -> _LookOutcome:
        """Consume one look's verdict and say what happened to the incident."""
        if not self.is_open:
            if fired:
                self.is_open, self.clean_streak = True, 0
                return "opened"
            return "quiet"
        if fired or p_value <= self.clean_level:
            self.clean_streak = 0
            return "continuing"
        self.clean_streak += 1
        if self.clean_streak >= self.clean_looks:
            self.is_open, self.clean_streak = False, 0
            return "resolved"
        return "continuing"
