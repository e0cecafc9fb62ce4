"""The in-process pipeline: validate → embed once → apply every signal → write.

The Kafka worker, historical replay and the demo all call :meth:`Pipeline.process`, so every
path into ClickHouse is the same code. It is synchronous and CPU-bound: the worker runs it in an
executor thread, off the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from signals.errors import ImageError
from signals.images import ImagePolicy, load_image
from storage.rows import EmbeddingRow, EventRow, ScoreRow, WriteBatch
from streams.events import GenerationEvent

if TYPE_CHECKING:
    from numpy.typing import NDArray
    from PIL import Image

    from signals.bank import SignalBank
    from signals.base import Embedder
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


class Pipeline:
    """Turns validated events into stored events, embeddings and scores.

    ``bank`` is called once per batch, so a caller can swap signals between batches (hot reload)
    without the pipeline knowing where they come from.
    """

    def __init__(
        self,
        embedder: Embedder,
        bank: Callable[[], SignalBank],
        writer: ClickHouseWriter,
        image_policy: ImagePolicy | None = None,
    ) -> None:
        self._embedder = embedder
        self._bank = bank
        self._writer = writer
        self._image_policy = image_policy or ImagePolicy()

    def process(self, events: Sequence[GenerationEvent]) -> BatchResult:
        """Store ``events`` exactly once; return what happened to each.

        Raises :class:`storage.errors.StorageUnavailable` when nothing could be written; the
        caller retries the whole batch (which is safe: stored events are skipped).
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
        fresh = [e for e in unique.values() if e.event_id not in stored]
        images: dict[str, Image.Image] = {}
        accepted: list[GenerationEvent] = []
        for event in fresh:
            if event.output.image:
                try:
                    images[event.event_id] = load_image(event.output.image, self._image_policy)
                except ImageError as exc:
                    result.rejected.append((event, f"output.image: {exc}"))
                    continue
            accepted.append(event)
        if not accepted:
            return result
        batch = self._build(accepted, images)
        result.scores = len(batch.scores)
        result.written = self._writer.write(batch)
        return result

    def _build(self, events: list[GenerationEvent], images: dict[str, Image.Image]) -> WriteBatch:
        bank = self._bank()
        embedder_id = self._embedder.id
        fields: dict[str, tuple[list[GenerationEvent], NDArray[np.float32]]] = {}
        with_prompt = [e for e in events if e.prompt.text]
        with_text = [e for e in events if e.output.text]
        with_image = [e for e in events if e.event_id in images]
        if with_prompt:
            fields["prompt.text"] = (
                with_prompt,
                self._embedder.embed_texts([e.prompt.text or "" for e in with_prompt]),
            )
        if with_text:
            fields["output.text"] = (
                with_text,
                self._embedder.embed_texts([e.output.text or "" for e in with_text]),
            )
        if with_image:
            fields["output.image"] = (
                with_image,
                self._embedder.embed_images([images[e.event_id] for e in with_image]),
            )
        batch = WriteBatch()
        for name, (owners, vectors) in fields.items():
            for event, vector in zip(owners, vectors, strict=True):
                batch.embeddings.append(EmbeddingRow(
                    event.event_id, name, embedder_id, event.timestamp, event.model,
                    event.model_version, vector.tolist(),
                ))  # fmt: skip
            scored = bank.score(name, vectors)
            for j, signal in enumerate(scored.signals):
                for i, event in enumerate(owners):
                    batch.scores.append(ScoreRow(
                        event.event_id, signal.name, signal.version, event.timestamp,
                        event.model, event.model_version, float(scored.probabilities[i, j]),
                        bool(scored.flagged[i, j]),
                    ))  # fmt: skip
        batch.events.extend(_event_row(e, embedder_id) for e in events)
        return batch


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
    )
