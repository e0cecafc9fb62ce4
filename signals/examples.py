"""Stored embeddings as signals see them: example lookup, and scoring stored events.

:class:`EmbeddingSource` is what a signal workflow needs from storage (stored window vectors
by event, the raw content to re-embed, and chunks or a sample of a field's embeddings); the
ClickHouse implementation lives in the composition root (``telltale.signal_store``).

* :class:`StoredExamples` resolves examples given as stored event ids (``{event_id: ...}``)
  to vectors in an embedder's space: the stored windows when that embedder made them, else the
  stored content re-embedded (a signal retrained on a new model needs no old vectors).
* :func:`score_stored` scores stored embeddings as the pipeline scored them when they arrived
  (max over a long text's windows), for back-fill, labelling help and the verdict.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import numpy as np

from signals.bank import FieldScores, SignalBank
from signals.base import Embedder, TextEmbedder
from signals.errors import ImageError
from signals.fitted import FittedSignal
from signals.images import ImagePolicy, load_image
from signals.windows import Windows

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "EmbeddingSource",
    "StoredExamples",
    "StoredVectors",
    "score_stored",
    "stored_flag_share",
]


class StoredVectors(Protocol):
    """One stored embedding of an event's field."""

    @property
    def event_id(self) -> str: ...

    @property
    def vector(self) -> list[float]: ...

    @property
    def window_vectors(self) -> list[list[float]]:
        """The windows of a long text, else the vector alone."""
        ...


class EmbeddingSource(Protocol):
    """Stored embeddings and the content they were made from."""

    def windows_by_event(
        self, event_ids: Sequence[str], field: str, embedder_id: str
    ) -> dict[str, list[list[float]]]:
        """The stored window vectors of ``field`` under one embedder, for the known ids."""
        ...

    def contents(self, event_ids: Sequence[str], field: str) -> dict[str, str]:
        """The raw content of ``field`` (text or image reference) of the known ids."""
        ...

    def chunks(
        self,
        field: str,
        embedder_id: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        skip_scored: tuple[str, int] | None = None,
        chunk: int = 5_000,
    ) -> Iterator[Sequence[StoredVectors]]:
        """Every stored embedding of ``field`` in ``[since, until)``, in chunks, by event id;
        ``skip_scored=(signal, version)`` leaves out events already scored by that version."""
        ...

    def sample(self, field: str, embedder_id: str, limit: int) -> Sequence[StoredVectors]:
        """Up to ``limit`` stored embeddings of ``field``, a pseudo-random sample."""
        ...


class StoredExamples:
    """Examples given as stored event ids: their stored window vectors, or their content
    re-embedded when they were embedded by another model (a
    :class:`~signals.training.ExampleLookup`), and a sample of stored traffic as background
    negatives (a :class:`~signals.training.TrafficSample`)."""

    def __init__(self, source: EmbeddingSource, policy: ImagePolicy | None = None) -> None:
        self._source = source
        self._policy = policy

    def vectors(
        self, event_ids: Sequence[str], field: str, embedder: Embedder | TextEmbedder
    ) -> dict[str, NDArray[np.float32]]:
        """``(windows, dim)`` per known event id, in ``embedder``'s space."""
        found = {
            k: np.asarray(v, dtype=np.float32)
            for k, v in self._source.windows_by_event(event_ids, field, embedder.id).items()
        }
        missing = [e for e in event_ids if e not in found]
        if not missing:
            return found
        contents = self._source.contents(missing, field)
        ids = list(contents)
        groups: list[NDArray[np.float32]] = []
        if field.endswith(".image") and isinstance(embedder, Embedder):
            images, kept = [], []
            for event_id in ids:
                try:
                    images.append(load_image(contents[event_id], self._policy))
                    kept.append(event_id)
                except ImageError:
                    continue  # reported as unknown by the caller
            groups = [v[None, :] for v in embedder.embed_images(images)] if images else []
            ids = kept
        elif isinstance(embedder, TextEmbedder) and ids:
            groups = embedder.embed_windows([contents[e] for e in ids]).groups()
        elif ids:
            groups = [v[None, :] for v in embedder.embed_texts([contents[e] for e in ids])]
        found.update(zip(ids, groups, strict=True))
        return found

    def background(
        self, field: str, embedder: Embedder | TextEmbedder, windows: int, exclude: Collection[str]
    ) -> NDArray[np.float32]:
        """Up to ``windows`` stored window vectors of ``field`` under ``embedder``'s id (a
        :class:`~signals.training.TrafficSample`): the windows of a pseudo-random sample of
        stored events (the store's own sample order, so the same store gives the same rows),
        the events in ``exclude`` (the signal's own examples) left out, thinned to ``windows``
        evenly spaced rows when there are more. ``(0, dim)`` when nothing is stored under that
        embedder."""
        rows = [r for r in self._source.sample(field, embedder.id, windows + len(exclude))
                if r.event_id not in exclude]  # fmt: skip
        if not rows:
            return np.zeros((0, embedder.dim), dtype=np.float32)
        vectors = np.concatenate(
            [np.asarray(r.window_vectors, dtype=np.float32).reshape(-1, embedder.dim)
             for r in rows]
        )  # fmt: skip
        if len(vectors) > windows:
            vectors = vectors[np.linspace(0, len(vectors) - 1, windows).round().astype(int)]
        return vectors


def score_stored(signal: FittedSignal, rows: Sequence[StoredVectors]) -> FieldScores:
    """``signal``'s scores of stored embeddings (of its field and embedder), max over windows."""
    windows = Windows.of(
        [np.asarray(r.window_vectors, dtype=np.float32) for r in rows], len(rows[0].vector)
    )
    return SignalBank([signal], signal.embedder_id).score_windows(signal.field, windows)


def stored_flag_share(
    source: EmbeddingSource, fitted: FittedSignal, sample: int = 20_000
) -> tuple[float | None, int]:
    """(share flagged, events scored) over a sample of stored events of ``fitted``'s field and
    embedder; ``(None, 0)`` when nothing is stored yet. Feeds :func:`signals.verdict.judge`."""
    rows = source.sample(fitted.field, fitted.embedder_id, sample)
    if not rows:
        return None, 0
    return float(score_stored(fitted, rows).flagged[:, 0].mean()), len(rows)
