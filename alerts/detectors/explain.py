"""Which kinds of prompts grew or shrank: k-means on two windows, and repeats counted once."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from alerts.detectors.mmd import embedding_matrix

__all__ = ["ClusterShift", "collapse_repeats", "explain_drift"]


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

    x = embedding_matrix(reference, "reference")
    y = embedding_matrix(recent, "recent")
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
