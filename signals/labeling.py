"""Labeling help: which stored events are worth a human look for a signal.

* *uncertain*: events whose score is closest to the signal's threshold (uncertainty sampling),
  the labels that move the decision boundary most;
* *similar to positives*: nearest neighbours (centred cosine) of the positive examples that are not
  examples yet, likely misses or duplicates of a known failure;
* *labellers disagree* (a spec with ``labelling_functions``): the events the label model is
  least sure of, where the functions disagree most (:func:`signals.weak_fit.least_certain`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from signals.errors import TrainingError
from signals.examples import EmbeddingSource, StoredVectors, score_stored
from signals.fitted import FittedSignal
from signals.spec import EventRef
from signals.training import ExampleLookup, embed_examples
from signals.weak_fit import LabelledPool, WeakPool, least_certain

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from signals.base import Embedder
    from signals.embedders import FieldEmbedders

__all__ = ["Suggestion", "suggest"]


@dataclass(frozen=True)
class Suggestion:
    reason: str  # "uncertain", "similar_to_positive" or "labellers_disagree"
    event_id: str
    score: float
    similarity: float | None
    content: str


def suggest(
    source: EmbeddingSource,
    signal: FittedSignal,
    embedder: Embedder | FieldEmbedders,
    lookup: ExampleLookup,
    *,
    limit: int = 10,
    since: datetime | None = None,
    pool: int = 20_000,
    weak: tuple[WeakPool, LabelledPool] | None = None,
) -> list[Suggestion]:
    """Up to ``limit`` uncertain events and ``limit`` neighbours of positives, among the first
    ``pool`` stored events of the signal's field (and embedder) since ``since``.

    A pattern or PII signal has no decision boundary in an embedding space to suggest labels
    near: it is refused (:class:`TrainingError`); ``signals audit`` measures it instead."""
    if signal.reads_text:
        raise TrainingError(f"signal {signal.name!r} of kind {signal.kind!r} reads the text: "
                            "there is nothing to suggest; 'signals audit' measures it")  # fmt: skip
    rows: list[StoredVectors] = []
    for chunk in source.chunks(signal.field, signal.embedder_id, since=since):
        rows += chunk
        if len(rows) >= pool:
            break
    if not rows:
        return []
    ids = [r.event_id for r in rows]
    vectors = np.array([r.vector for r in rows], dtype=np.float32)
    # Scores as the pipeline scores (max over a long text's windows); neighbours on documents.
    scores = score_stored(signal, rows).probabilities
    examples = (*signal.spec.examples.positive, *signal.spec.examples.negative)
    known = {e.event_id for e in examples if isinstance(e, EventRef)}
    candidates = np.array([i not in known for i in ids])
    margin = np.where(candidates, np.abs(scores[:, 0] - signal.threshold), np.inf)
    uncertain = [int(i) for i in np.argsort(margin, kind="stable")[:limit] if candidates[i]]
    positives, _ = embed_examples(signal.spec, embedder, lookup=lookup)
    similar: list[tuple[int, float]] = []
    if len(positives):
        # Cosine after removing the pool's mean: embeddings of one model share a large common
        # component that would otherwise make every event look alike.
        centre = vectors.mean(axis=0)
        pool_dirs = _unit(vectors - centre)
        similarity = (pool_dirs @ _unit(positives - centre).T).max(axis=1)
        similarity = np.where(candidates, similarity, -np.inf)
        order = np.argsort(-similarity, kind="stable")
        similar = [(int(i), float(similarity[i])) for i in order[:limit] if candidates[i]]
    disputed = (
        least_certain(weak[0], weak[1], limit, known | {ids[i] for i in uncertain})
        if weak is not None else []
    )  # fmt: skip
    wanted = [ids[i] for i in uncertain] + [ids[i] for i, _ in similar] + [d[0] for d in disputed]
    contents = source.contents(wanted, signal.field) if wanted else {}
    result = [
        Suggestion("uncertain", ids[i], float(scores[i, 0]), None, contents.get(ids[i], ""))
        for i in uncertain
    ]
    result += [
        Suggestion("similar_to_positive", ids[i], float(scores[i, 0]), sim,
                   contents.get(ids[i], ""))
        for i, sim in similar
    ]  # fmt: skip
    result += [
        Suggestion("labellers_disagree", event_id, p, None, contents.get(event_id, ""))
        for event_id, p, _ in disputed
    ]
    return result


def _unit(x: NDArray[np.float32]) -> NDArray[np.float32]:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit: NDArray[np.float32] = (x / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit
