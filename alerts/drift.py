"""Prompt drift: have the prompts users send moved away from what the model saw before?

The test compares a *reference* window of prompt embeddings (e.g. a sample from the weeks before a
release) with a *recent* window (e.g. a sample from the last hour) by the maximum mean discrepancy
with a Gaussian kernel (Gretton et al., "A kernel two-sample test", JMLR 2012): ``MMD^2`` is zero
exactly when the two distributions are equal, and it sees any change in the mix of topics, not only
a shift of the mean. The bandwidth is the median pairwise distance of the pooled sample (the median
heuristic), and the p-value comes from a permutation test, which is exact in finite samples because
the bandwidth is a symmetric function of the pooled sample.

Drift is monitored indefinitely, so the false-alarm budget is per *horizon*:
:class:`PromptDriftDetector` tests each look at ``alpha / horizon_looks`` (Bonferroni), so the
chance of any false alarm among ``horizon_looks`` consecutive looks is at most ``alpha`` whatever
the dependence between looks. When it fires, :func:`explain_drift` says which kinds of prompts grew
or shrank, with examples an on-call engineer can read.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from alerts.base import Detection

__all__ = [
    "ClusterShift",
    "DriftHysteresis",
    "DriftState",
    "MMDTestResult",
    "PromptDriftDetector",
    "collapse_repeats",
    "count_window_start",
    "explain_drift",
    "look_level",
    "median_heuristic_bandwidth",
    "mmd2_unbiased",
    "mmd_permutation_test",
    "seasonal_reference_spans",
]

_DAY = timedelta(days=1)
_PERMUTATION_CHUNK = 1000  # bounds the memory of the (n, chunk) indicator matrix


@dataclass(frozen=True)
class MMDTestResult:
    """Unbiased ``MMD^2``, its permutation p-value, the kernel bandwidth and how many
    permutations were drawn."""

    mmd2: float
    p_value: float
    bandwidth: float
    n_permutations: int


@dataclass(frozen=True)
class ClusterShift:
    """One cluster of the pooled embeddings and how its share moved.

    ``change`` is ``recent_share - reference_share``; the example indices point into the
    reference and recent arrays respectively, members nearest the centroid first.
    """

    cluster: int
    reference_share: float
    recent_share: float
    change: float
    reference_examples: tuple[int, ...]
    recent_examples: tuple[int, ...]


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


def median_heuristic_bandwidth(x: ArrayLike) -> float:
    """Median Euclidean distance between distinct rows of ``x`` (the kernel's length scale)."""
    points = _as_matrix(x, "x")
    return _median_bandwidth(_squared_distances(points))


def mmd2_unbiased(reference: ArrayLike, recent: ArrayLike, bandwidth: float | None = None) -> float:
    """Unbiased estimate of ``MMD^2`` with the kernel ``exp(-|x - y|^2 / (2 bandwidth^2))``.

    Without a ``bandwidth`` the median heuristic on the pooled sample is used. The estimate can be
    slightly negative when the distributions are equal.
    """
    x = _as_matrix(reference, "reference")
    y = _as_matrix(recent, "recent")
    kernel, _ = _pooled_kernel(x, y, bandwidth)
    in_x = np.zeros(len(kernel))
    in_x[: len(x)] = 1.0
    return float(_mmd2_from_indicators(kernel, in_x[:, None], len(x), len(y))[0])


def mmd_permutation_test(
    reference: ArrayLike,
    recent: ArrayLike,
    n_permutations: int = 1000,
    seed: int = 0,
    bandwidth: float | None = None,
    stop_after: int | None = None,
    *,
    reference_units: Sequence[Hashable] | None = None,
    recent_units: Sequence[Hashable] | None = None,
) -> MMDTestResult:
    """Permutation test of "reference and recent come from the same distribution".

    With ``reference_units`` / ``recent_units`` (one label per row, e.g. the user or session
    that sent the prompt) whole *units* are permuted instead of single prompts: all rows of one
    unit in one window move together. The null hypothesis is then that the windows' units are
    exchangeable, which stays true when one user sends thirty near-identical retries: the
    permutation distribution moves that block around too, so a single user cannot make a window
    look drifted. A unit seen in both windows forms one block per window. Rows without a label
    of their own should be given a unique one (each is then its own unit).

    The p-value ``(1 + #{permuted MMD^2 >= observed}) / (1 + n_permutations)`` is exactly valid
    (never anti-conservative); its smallest possible value is ``1 / (1 + n_permutations)``.

    With ``stop_after = h`` the test stops as soon as ``h`` permutations reach the observed value,
    after ``l`` permutations, and returns ``h / l`` (Besag and Clifford's sequential Monte Carlo
    p-value, also exactly valid). Samples that look alike then cost a few dozen permutations
    instead of thousands, while small p-values are computed in full.

    >>> rng = np.random.default_rng(0)
    >>> same = mmd_permutation_test(rng.normal(size=(100, 8)), rng.normal(size=(100, 8)), seed=1)
    >>> moved = mmd_permutation_test(rng.normal(size=(100, 8)), rng.normal(1, 1, (100, 8)), seed=1)
    >>> same.p_value > 0.01, moved.p_value < 0.01
    (True, True)
    """
    if n_permutations < 1:
        raise ValueError("n_permutations must be >= 1")
    if stop_after is not None and stop_after < 1:
        raise ValueError("stop_after must be >= 1")
    x = _as_matrix(reference, "reference")
    y = _as_matrix(recent, "recent")
    kernel, used_bandwidth = _pooled_kernel(x, y, bandwidth)
    n, m = len(x), len(y)
    blocks = _unit_blocks(n, m, reference_units, recent_units)
    observed_in_x = np.zeros(n + m)
    observed_in_x[:n] = 1.0
    row_sums = kernel.sum(axis=1)
    observed = float(_mmd2_from_indicators(kernel, observed_in_x[:, None], n, m, row_sums)[0])
    # A tiny tolerance keeps exact ties (e.g. the identity permutation) from being lost to rounding.
    bar = observed - 1e-12 * max(1.0, abs(observed))
    rng = np.random.default_rng(seed)
    # Under stop_after, chunks start small and grow: similar samples settle in the first one.
    chunk = _PERMUTATION_CHUNK if stop_after is None else min(_PERMUTATION_CHUNK, 3 * stop_after)
    done = exceed = 0
    while done < n_permutations:
        size = min(chunk, n_permutations - done)
        if blocks is None:
            indicators = rng.permuted(np.tile(observed_in_x, (size, 1)), axis=1).T
            hits = _mmd2_from_indicators(kernel, indicators, n, m, row_sums) >= bar
        else:
            block_of_row, x_blocks = blocks
            block_in_x = np.zeros(int(block_of_row.max()) + 1)
            block_in_x[:x_blocks] = 1.0
            drawn = rng.permuted(np.tile(block_in_x, (size, 1)), axis=1)
            indicators = drawn[:, block_of_row].T
            sizes_x = indicators.sum(axis=0)
            hits = (
                _mmd2_from_indicators(kernel, indicators, sizes_x, n + m - sizes_x, row_sums) >= bar
            )
        if stop_after is not None and exceed + int(hits.sum()) >= stop_after:
            used = done + int(np.flatnonzero(hits)[stop_after - exceed - 1]) + 1
            return MMDTestResult(observed, stop_after / used, used_bandwidth, used)
        exceed += int(hits.sum())
        done += size
        chunk = min(4 * chunk, _PERMUTATION_CHUNK)
    return MMDTestResult(
        mmd2=observed,
        p_value=(1.0 + exceed) / (1.0 + n_permutations),
        bandwidth=used_bandwidth,
        n_permutations=n_permutations,
    )


def explain_drift(
    reference: ArrayLike, recent: ArrayLike, k: int, seed: int = 0, n_examples: int = 3
) -> tuple[ClusterShift, ...]:
    """Cluster the pooled embeddings and report each cluster's share in both windows.

    k-means (scikit-learn, seeded) runs on reference and recent together, so the clusters are
    the same for both; a cluster whose share grew is a kind of prompt that is new or more common.
    Clusters are returned by ``change``, largest growth first, each with the members nearest its
    centroid as examples. Examples are distinct prompts: rows with the same embedding (the same
    prompt sent again, a retry) are shown once.
    """
    from sklearn.cluster import KMeans  # heavy import, needed only when an alarm is explained

    x = _as_matrix(reference, "reference")
    y = _as_matrix(recent, "recent")
    pooled = np.vstack([x, y])
    if not 1 <= k <= len(pooled):
        raise ValueError("k must be between 1 and the number of pooled points")
    model = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(pooled)
    labels = np.asarray(model.labels_)
    centers = np.asarray(model.cluster_centers_)
    distances = np.linalg.norm(pooled - centers[labels], axis=1)
    shifts = []
    for cluster in range(k):
        examples = []
        for offset, size in ((0, len(x)), (len(x), len(y))):
            members = np.flatnonzero(labels[offset : offset + size] == cluster)
            nearest = members[np.argsort(distances[offset + members], kind="stable")]
            examples.append(_distinct(pooled, offset, nearest, n_examples))
        reference_share = float(np.mean(labels[: len(x)] == cluster))
        recent_share = float(np.mean(labels[len(x) :] == cluster))
        shifts.append(
            ClusterShift(
                cluster=cluster,
                reference_share=reference_share,
                recent_share=recent_share,
                change=recent_share - reference_share,
                reference_examples=examples[0],
                recent_examples=examples[1],
            )
        )
    return tuple(sorted(shifts, key=lambda s: (-s.change, s.cluster)))


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
        x = _as_matrix(reference, "reference")
        y = _as_matrix(recent, "recent")
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


def _distinct(
    pooled: NDArray[np.float64], offset: int, ordered: NDArray[np.intp], limit: int
) -> tuple[int, ...]:
    """The first ``limit`` indices of ``ordered`` whose rows (at ``offset + i``) differ."""
    seen: set[bytes] = set()
    chosen: list[int] = []
    for i in ordered:
        key = np.round(pooled[offset + int(i)], 6).tobytes()
        if key in seen:
            continue
        seen.add(key)
        chosen.append(int(i))
        if len(chosen) == limit:
            break
    return tuple(chosen)


def collapse_repeats(vectors: ArrayLike, units: Sequence[Hashable]) -> list[int]:
    """Indices of the rows to keep when repeats of one prompt by one unit count once.

    A row is a repeat when an earlier row of the same unit has the same embedding (rounded to six
    decimals): a client retrying the same request. Different units sending the same prompt are
    all kept (that *is* a shift in what users ask).
    """
    matrix = np.asarray(vectors, dtype=np.float64)
    if len(matrix) != len(units):
        raise ValueError("one unit label per row is needed")
    rounded = np.round(matrix, 6)
    seen: set[tuple[Hashable, bytes]] = set()
    keep = []
    for i, unit in enumerate(units):
        key = (unit, rounded[i].tobytes())
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return keep


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
    :meth:`update` again (:mod:`alerts.tracks.drift`).

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


def _as_matrix(data: ArrayLike, name: str) -> NDArray[np.float64]:
    matrix = np.asarray(data, dtype=np.float64)
    if matrix.ndim != 2 or len(matrix) < 2:
        raise ValueError(f"{name} must be a 2-d array with at least two rows")
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return matrix


def _squared_distances(points: NDArray[np.float64]) -> NDArray[np.float64]:
    norms = np.einsum("ij,ij->i", points, points)
    # In place: these matrices are (n, n) with n in the thousands, and temporaries dominate.
    sq: NDArray[np.float64] = points @ points.T
    sq *= -2.0
    sq += norms[:, None]
    sq += norms[None, :]
    np.maximum(sq, 0.0, out=sq)
    np.fill_diagonal(sq, 0.0)  # exact zeros, which the median's order statistics rely on
    return sq


def _median_bandwidth(sq: NDArray[np.float64]) -> float:
    """Median distance over pairs ``i < j``, from a squared-distance matrix with a zero diagonal.

    The full matrix holds every pair twice plus ``n`` zeros, the smallest values, so the pairs'
    median is the mean of its two middle order statistics after those zeros: one partial sort of
    the flat matrix, without materialising the upper triangle.
    """
    n = len(sq)
    pairs = n * (n - 1) // 2
    # One kth value is several times faster than two in np.partition; the other middle order
    # statistic is then the largest value left of it.
    ordered = np.partition(sq.ravel(), n + pairs)
    middle = 0.5 * (float(ordered[n + pairs]) + float(ordered[: n + pairs].max()))
    bandwidth = math.sqrt(middle)
    # All-identical samples would give zero; any positive scale then yields a constant kernel.
    return bandwidth if bandwidth > 0.0 else 1.0


def _pooled_kernel(
    x: NDArray[np.float64], y: NDArray[np.float64], bandwidth: float | None
) -> tuple[NDArray[np.float64], float]:
    """Gaussian kernel matrix of the pooled sample with a zeroed diagonal, and its bandwidth."""
    if x.shape[1] != y.shape[1]:
        raise ValueError("reference and recent must have the same embedding dimension")
    pooled = np.vstack([x, y])
    sq = _squared_distances(pooled)
    if bandwidth is None:
        bandwidth = _median_bandwidth(sq)
    elif not bandwidth > 0.0:
        raise ValueError("bandwidth must be positive")
    sq *= -1.0 / (2.0 * bandwidth**2)
    kernel = np.exp(sq, out=sq)
    np.fill_diagonal(kernel, 0.0)  # the unbiased estimator leaves out the i == j terms
    return kernel, bandwidth


def _mmd2_from_indicators(
    kernel: NDArray[np.float64],
    in_x: NDArray[np.float64],
    n: int | NDArray[np.float64],
    m: int | NDArray[np.float64],
    row_sums: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """Unbiased ``MMD^2`` for each column of ``in_x`` (1 marks the rows assigned to ``x``).

    With ``K`` the zero-diagonal kernel, ``a`` an indicator and ``r = K 1``: the within-x sum is
    ``a'Ka``, the cross sum ``a'r - a'Ka`` and the within-y sum ``1'r - 2a'r + a'Ka``, so all
    permutations cost one matrix product. Pass ``row_sums`` (``r``) when calling repeatedly.
    ``n`` and ``m`` may be per-column arrays (unit permutations move blocks of unequal size);
    a column that leaves fewer than two rows on a side gets ``+inf`` (counted as exceeding the
    observed value, which keeps the p-value conservative).
    """
    n = np.asarray(n, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    degenerate = (n < 2) | (m < 2)
    if np.any(degenerate):
        n = np.where(degenerate, 2.0, n)
        m = np.where(degenerate, 2.0, m)
    if row_sums is None:
        row_sums = kernel.sum(axis=1)
    total = float(row_sums.sum())
    within_x = np.einsum("ip,ip->p", in_x, kernel @ in_x)
    to_rest = row_sums @ in_x
    cross = to_rest - within_x
    within_y = total - 2.0 * to_rest + within_x
    result: NDArray[np.float64] = np.where(
        degenerate,
        np.inf,
        within_x / (n * (n - 1)) + within_y / (m * (m - 1)) - 2.0 * cross / (n * m),
    )
    return result


def _unit_blocks(
    n: int,
    m: int,
    reference_units: Sequence[Hashable] | None,
    recent_units: Sequence[Hashable] | None,
) -> tuple[NDArray[np.int64], int] | None:
    """Block number of every pooled row (reference blocks first) and the number of reference
    blocks, or ``None`` when no units were given (every row its own unit)."""
    if reference_units is None and recent_units is None:
        return None
    if reference_units is None or recent_units is None:
        raise ValueError("give units for both windows or for neither")
    if len(reference_units) != n or len(recent_units) != m:
        raise ValueError("one unit label per row is needed in each window")
    codes: dict[tuple[int, Hashable], int] = {}
    block = np.empty(n + m, dtype=np.int64)
    for side, labels, offset in ((0, reference_units, 0), (1, recent_units, n)):
        for i, label in enumerate(labels):
            block[offset + i] = codes.setdefault((side, label), len(codes))
    x_blocks = sum(1 for side, _ in codes if side == 0)
    return block, x_blocks
