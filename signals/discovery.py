"""Failure-mode discovery: clusters of recent outputs that stand apart or grow, ranked.

No signal names a failure mode nobody has seen yet. What a new one looks like in embedding space
is a group of recent outputs that is *far from the bulk* of outputs (a new format, a new kind of
answer) and whose *share grew* against a reference window (it was not there before). This module
clusters the recent and reference embeddings together with k-means and ranks the clusters on both
criteria:

* ``distance`` — the distance of the cluster's centroid from the bulk's centre (the mean of the
  reference vectors, or of all vectors without a reference), divided by the median distance of
  the reference points from that centre: about 1 or less for clusters inside the bulk;
* ``growth`` — ``log((recent_share + e) / (reference_share + e))`` with ``e`` one point's share,
  so a cluster absent from the reference grows by a finite, size-aware amount.

``score`` is the mean of the two percentile ranks (Borda count): neither criterion's scale
decides alone, and a cluster must stand out on both to lead. Clusters with fewer than
``min_size`` recent members are left out (a handful of odd outputs is not a failure mode).
Pure numpy and scikit-learn on vectors; the caller brings the vectors and reads the texts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["DiscoveredCluster", "discover_clusters"]

Vectors = NDArray[np.floating[Any]]


@dataclass(frozen=True)
class DiscoveredCluster:
    """One cluster. Member indices point into the ``recent`` and ``reference`` arrays, nearest
    to the centroid first."""

    rank: int
    recent_members: tuple[int, ...]
    reference_members: tuple[int, ...]
    recent_share: float
    reference_share: float
    growth: float
    distance: float
    score: float

    @property
    def size(self) -> int:
        return len(self.recent_members)


def _normalise(x: Vectors) -> NDArray[np.float64]:
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _percentile_ranks(values: NDArray[np.float64]) -> NDArray[np.float64]:
    order = values.argsort(kind="stable").argsort(kind="stable").astype(np.float64)
    return order / max(len(values) - 1, 1)


def discover_clusters(
    recent: Vectors,
    reference: Vectors | None = None,
    *,
    k: int | None = None,
    min_size: int = 5,
    seed: int = 0,
) -> tuple[list[DiscoveredCluster], tuple[int, ...]]:
    """Rank clusters of ``recent`` (module docstring); also return bulk reference indices.

    ``k`` defaults to ``clamp(sqrt(n), 8, 40)`` for ``n`` points in all: on generated logs
    (tests/support/log_generators.py) fewer clusters merged a 2-3 % new format into a bulk
    cluster, and many more split it into pieces below ``min_size``. The second value
    is the indices of reference points (or recent points, without a reference) nearest the
    bulk centre, nearest first: negatives for a signal started from a cluster.
    """
    from sklearn.cluster import KMeans

    x_new = _normalise(recent)
    x_ref = _normalise(reference) if reference is not None and len(reference) else None
    if len(x_new) == 0:
        return [], ()
    x_all = x_new if x_ref is None else np.vstack([x_new, x_ref])
    n = len(x_all)
    if k is None:
        k = int(min(40, max(8, round(math.sqrt(n)))))
    k = max(1, min(k, n))
    labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(x_all)
    new_labels, ref_labels = labels[: len(x_new)], labels[len(x_new) :]
    bulk = x_ref if x_ref is not None else x_new
    centre = bulk.mean(axis=0)
    scale = float(np.median(np.linalg.norm(bulk - centre, axis=1))) or 1.0
    n_new, n_ref = len(x_new), len(x_ref) if x_ref is not None else 0
    eps = 1.0 / (n_new + n_ref)

    rows = []
    for c in range(k):
        in_new = np.flatnonzero(new_labels == c)
        if len(in_new) < min_size:
            continue
        in_ref = np.flatnonzero(ref_labels == c)
        members = x_all[labels == c]
        centroid = members.mean(axis=0)
        distance = float(np.linalg.norm(centroid - centre)) / scale
        recent_share = len(in_new) / n_new
        reference_share = len(in_ref) / n_ref if n_ref else math.nan
        growth = math.log((recent_share + eps) / (reference_share + eps)) if n_ref else 0.0
        near_new = in_new[np.argsort(np.linalg.norm(x_new[in_new] - centroid, axis=1))]
        near_ref = (
            in_ref[np.argsort(np.linalg.norm(x_ref[in_ref] - centroid, axis=1))]
            if x_ref is not None
            else in_ref
        )
        rows.append((near_new, near_ref, recent_share, reference_share, growth, distance))
    if not rows:
        return [], ()
    distances = np.array([r[5] for r in rows])
    growths = np.array([r[4] for r in rows])
    scores = (_percentile_ranks(distances) + _percentile_ranks(growths)) / 2
    order = sorted(range(len(rows)), key=lambda i: (-scores[i], -rows[i][4], -rows[i][5]))
    clusters = [
        DiscoveredCluster(
            rank=rank + 1,
            recent_members=tuple(int(j) for j in rows[i][0]),
            reference_members=tuple(int(j) for j in rows[i][1]),
            recent_share=rows[i][2],
            reference_share=rows[i][3],
            growth=rows[i][4],
            distance=rows[i][5],
            score=float(scores[i]),
        )
        for rank, i in enumerate(order)
    ]
    bulk_order = np.argsort(np.linalg.norm(bulk - centre, axis=1))
    return clusters, tuple(int(j) for j in bulk_order)
