"""The in-process pipeline: validate → embed once → apply every signal → write.

The Kafka worker, historical replay and the demo all call :meth:`Pipeline.process`, so every
path into ClickHouse is the same code. It is synchronous and CPU-bound: the worker runs it in an
executor thread, off the event loop.

Each field is embedded by its own embedder (:class:`~signals.embedders.FieldEmbedders`): text
fields by the text model, window by window, with every window of the batch in one model call
(after the embedding cache, when one is given, has answered what it can); images by open_clip.
What is stored of the windows is described in :mod:`signals.windows`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from signals.cache import CacheCounts
from signals.embedders import FieldEmbedders, as_field_embedders
from signals.errors import ImageError
from signals.images import ImagePolicy, load_image
from signals.windows import Windows
from storage.rows import CacheStatsRow, EmbeddingRow, EventRow, ScoreRow, WriteBatch
from streams.events import GenerationEvent

if TYPE_CHECKING:
    from numpy.typing import NDArray
    from PIL import Image

    from signals.bank import SignalBank
    from signals.base import Embedder
    from signals.cache import EmbeddingCache
    from storage.writer import ClickHouseWriter

__all__ = ["BatchResult", "Pipeline"]

log = logging.getLogger(__name__)


@dataclass
class BatchResult:
    written: int = 0
    skipped_existing: int = 0
    duplicates_in_batch: int = 0
    rejected: list[tuple[GenerationEvent, str]] = field(default_factory=list)
    scores: int = 0
    cache: CacheCounts = field(default_factory=CacheCounts)  # texts of this batch


class Pipeline:
    """Turns validated events into stored events, embeddings and scores.

    ``bank`` is called once per batch, so a caller can swap signals between batches (hot reload)
    without the pipeline knowing where they come from. ``embedder`` is one open_clip embedder
    for every field or a :class:`FieldEmbedders`; ``cache`` (optional) answers repeated texts.
    """

    def __init__(
        self,
        embedder: Embedder | FieldEmbedders,
        bank: Callable[[], SignalBank],
        writer: ClickHouseWriter,
        image_policy: ImagePolicy | None = None,
        cache: EmbeddingCache | None = None,
    ) -> None:
        self._embedders = as_field_embedders(embedder)
        self._bank = bank
        self._writer = writer
        self._image_policy = image_policy or ImagePolicy()
        self._cache = cache

    @property
    def embedder_id(self) -> str:
        """One label for the embedders (the single id, or ``text=...|image=...``)."""
        return self._embedders.id

    @property
    def embedder_ids(self) -> dict[str, str]:
        """The embedder id of each field."""
        return self._embedders.ids

    @property
    def embedders(self) -> FieldEmbedders:
        return self._embedders

    @property
    def cache(self) -> EmbeddingCache | None:
        return self._cache

    def process(
        self,
        events: Sequence[GenerationEvent],
        precomputed: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
    ) -> BatchResult:
        """Store ``events`` exactly once; return what happened to each.

        ``precomputed`` maps an event id to vectors already computed by this pipeline's
        embedders (``{"output.text": [...]}``): those fields skip the model (the replay fast
        path for logs that carry embeddings) and count as one window. Raises
        :class:`storage.errors.StorageUnavailable` when nothing could be written; the caller
        retries the whole batch (which is safe: stored events are skipped).
        """
        result = BatchResult()
        unique: dict[str, GenerationEvent] = {}
        for event in events:
            if event.event_id in unique:
                result.duplicates_in_batch += 1
            else:
                unique[event.event_id] = event
        stored = self._writer.existing_event_ids(unique)
        result.skipped_existing = len(stored)
        given = precomputed or {}
        images: dict[str, Image.Image] = {}
        accepted: list[GenerationEvent] = []
        for event in unique.values():
            if event.event_id in stored:
                continue
            needs_image = event.output.image and "output.image" not in given.get(event.event_id, {})
            if needs_image:
                try:
                    images[event.event_id] = load_image(event.output.image or "",
                                                        self._image_policy)  # fmt: skip
                except ImageError as exc:
                    result.rejected.append((event, f"output.image: {exc}"))
                    continue
            accepted.append(event)
        if not accepted:
            return result
        batch = self._build(accepted, images, given, result)
        result.scores = len(batch.scores)
        result.written = self._writer.write(batch)
        return result

    def _embed_field(
        self,
        name: str,
        owners: list[GenerationEvent],
        images: dict[str, Image.Image],
        given: Mapping[str, Mapping[str, Sequence[float]]],
    ) -> tuple[Windows, CacheCounts | None]:
        """Window vectors of one field: precomputed where given (one window), else embedded."""
        dim = self._embedders.for_field(name).dim
        groups: list[NDArray[np.float32]] = [np.zeros((1, dim), dtype=np.float32)] * len(owners)
        missing = []
        for i, event in enumerate(owners):
            vector = given.get(event.event_id, {}).get(name)
            if vector is None:
                missing.append(i)
            else:
                groups[i] = np.asarray(vector, dtype=np.float32).reshape(1, dim)
        counts: CacheCounts | None = None
        if missing:
            if name == "output.image":
                vectors = self._embedders.image.embed_images(
                    [images[owners[i].event_id] for i in missing]
                )
                computed = Windows.single(vectors)
            else:
                texts = [_CONTENT[name](owners[i]) or "" for i in missing]
                if self._cache is not None:
                    computed, counts = self._cache.embed_windows(self._embedders.text, name, texts)
                else:
                    computed = self._embedders.text.embed_windows(texts)
            for i, group in zip(missing, computed.groups(), strict=True):
                groups[i] = group
        return Windows.of(groups, dim), counts

    def _build(
        self,
        events: list[GenerationEvent],
        images: dict[str, Image.Image],
        given: Mapping[str, Mapping[str, Sequence[float]]],
        result: BatchResult,
    ) -> WriteBatch:
        bank = self._bank()
        batch = WriteBatch()
        for name, content in _CONTENT.items():
            owners = [e for e in events if content(e)]
            if not owners:
                continue
            embedder_id = self._embedders.id_for(name)
            windows, counts = self._embed_field(name, owners, images, given)
            if counts is not None:
                result.cache.add(counts)
                batch.cache_stats.append(CacheStatsRow(
                    datetime.now(UTC), name, embedder_id, counts.lookups, counts.memory_hits,
                    counts.shared_hits, counts.batch_repeats, counts.model_texts,
                ))  # fmt: skip
            documents = windows.documents()
            for i, (event, vector) in enumerate(zip(owners, documents, strict=True)):
                group = windows.group(i)
                batch.embeddings.append(EmbeddingRow(
                    event.event_id, name, embedder_id, event.timestamp, event.model,
                    event.model_version, vector.tolist(),
                    group.tolist() if len(group) > 1 else (),
                ))  # fmt: skip
            scored = bank.score_windows(name, windows)
            for j, signal in enumerate(scored.signals):
                for i, event in enumerate(owners):
                    batch.scores.append(ScoreRow(
                        event.event_id, signal.name, signal.version, event.timestamp,
                        event.model, event.model_version, float(scored.probabilities[i, j]),
                        bool(scored.flagged[i, j]),
                    ))  # fmt: skip
        batch.events.extend(_event_row(e, self._embedders.id) for e in events)
        return batch


_CONTENT: dict[str, Callable[[GenerationEvent], str | None]] = {
    "prompt.text": lambda e: e.prompt.text,
    "output.text": lambda e: e.output.text,
    "output.image": lambda e: e.output.image,
}
"""The embedding fields and where each one's content is in an event."""


def _event_row(event: GenerationEvent, embedder_id: str) -> EventRow:
    image = event.output.image or ""
    if len(image) > 2048:  # inline base64 is kept in the log, not in the table
        image = f"inline:{len(image)}b"
    return EventRow(
        event_id=event.event_id,
        timestamp=event.timestamp,
        model=event.model,
        model_version=event.model_version,
        app=event.app,
        release=event.release,
        prompt_text=event.prompt.text or "",
        output_text=event.output.text or "",
        output_image=image,
        latency_ms=event.latency_ms,
        feedback=event.feedback,
        attributes=dict(event.attributes),
        embedder_id=embedder_id,
        user_id=event.user_id or "",
        session_id=event.session_id or "",
    )
