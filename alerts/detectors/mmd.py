"""Maximum mean discrepancy with a Gaussian kernel, and its permutation test (by units).

``MMD^2`` (Gretton et al., JMLR 2012) is zero exactly when two distributions are equal; the
bandwidth is the pooled sample's median pairwise distance, so the permutation p-value is exact.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "MMDTestResult",
    "embedding_matrix",
    "median_heuristic_bandwidth",
    "mmd2_unbiased",
    "mmd_permutation_test",
]

_PERMUTATION_CHUNK = 1000  # bounds the memory of the (n, chunk) indicator matrix


@dataclass(frozen=True)
class MMDTestResult:
    """Unbiased ``MMD^2``, its permutation p-value, the kernel bandwidth and how many
    permutations were drawn."""

    mmd2: float
    p_value: float
    bandwidth: float
    n_permutations: int


def median_heuristic_bandwidth(x: ArrayLike) -> float:
    """Median Euclidean distance between distinct rows of ``x`` (the kernel's length scale)."""
    points = embedding_matrix(x, "x")
    return _median_bandwidth(_squared_distances(points))


def mmd2_unbiased(reference: ArrayLike, recent: ArrayLike, bandwidth: float | None = None) -> float:
    """Unbiased estimate of ``MMD^2`` with the kernel ``exp(-|x - y|^2 / (2 bandwidth^2))``.

    Without a ``bandwidth`` the median heuristic on the pooled sample is used. The estimate can be
    slightly negative when the distributions are equal.
    """
    x = embedding_matrix(reference, "reference")
    y = embedding_matrix(recent, "recent")
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
    x = embedding_matrix(reference, "reference")
    y = embedding_matrix(recent, "recent")
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


def embedding_matrix(data: ArrayLike, name: str) -> NDArray[np.float64]:
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
