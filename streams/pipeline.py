"""The in-process pipeline: validate → embed once → apply every signal → write.

The Kafka worker, historical replay and the demo all call :meth:`Pipeline.process`, so every
path into ClickHouse is the same code. It is synchronous and CPU-bound: the worker runs it in an
executor thread, off the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from signals.errors import ImageError
from signals.images import ImagePolicy, load_image
from storage.rows import EmbeddingRow, EventRow, ScoreRow, WriteBatch
from streams.events import GenerationEvent

if TYPE_CHECKING:
    import pyarrow as pa
    from numpy.typing import NDArray
    from PIL import Image

    from signals.bank import SignalBank
    from signals.base import Embedder
    from storage.writer import ClickHouseWriter
    from streams.columnar import ColumnarBatch

__all__ = ["FIELD_CONTENT", "BatchResult", "Pipeline"]

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

    @property
    def embedder_id(self) -> str:
        return self._embedder.id

    @property
    def dim(self) -> int:
        return self._embedder.dim

    def process_columns(self, batch: ColumnarBatch) -> tuple[int, int]:
        """Store validated, pre-embedded events given as columns; return (written, skipped).

        The column-wise twin of :meth:`process` for :mod:`streams.columnar`: the same
        idempotence (ids already stored, and repeats inside the batch, are skipped), the same
        signals, the same rows, built as Arrow tables and inserted column-wise.
        """
        import pyarrow as pa

        events = batch.events
        first: dict[str, int] = {}
        for i, event_id in enumerate(events.column("event_id").to_pylist()):
            first.setdefault(event_id, i)
        stored = self._writer.existing_event_ids(first)
        keep = np.fromiter((i for e, i in first.items() if e not in stored), dtype=np.int64)
        if not len(keep):
            return 0, len(stored)
        position = np.full(len(events), -1, dtype=np.int64)
        position[keep] = np.arange(len(keep))
        kept = events.take(pa.array(keep))
        bank = self._bank()
        embeddings: list[pa.Table] = []
        scores: list[pa.Table] = []
        for name, (rows, matrix) in batch.vectors.items():
            mine = position[rows] >= 0
            if not mine.any():
                continue
            owners = pa.array(position[rows[mine]])
            vectors = np.ascontiguousarray(matrix[mine], dtype=np.float32)
            base = {c: kept.column(c).take(owners)
                    for c in ("event_id", "timestamp", "model", "model_version")}  # fmt: skip
            embeddings.append(pa.table({
                "event_id": base["event_id"], "field": _repeat(name, len(owners)),
                "embedder_id": _repeat(self._embedder.id, len(owners)),
                "timestamp": base["timestamp"], "model": base["model"],
                "model_version": base["model_version"],
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()),
                                                            vectors.shape[1]),
            }))  # fmt: skip
            scored = bank.score(name, vectors)
            for j, signal in enumerate(scored.signals):
                scores.append(pa.table({
                    **base, "signal": _repeat(signal.name, len(owners)),
                    "signal_version": pa.array(np.full(len(owners), signal.version, np.uint32)),
                    "score": pa.array(scored.probabilities[:, j].astype(np.float32)),
                    "flagged": pa.array(scored.flagged[:, j].astype(np.uint8)),
                }))  # fmt: skip
        kept = kept.append_column("embedder_id", _repeat(self._embedder.id, len(kept)))
        written = self._writer.write_arrow(_concat(embeddings), _concat(scores), kept)
        return written, len(stored)

    def process(
        self,
        events: Sequence[GenerationEvent],
        precomputed: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
    ) -> BatchResult:
        """Store ``events`` exactly once; return what happened to each.

        ``precomputed`` maps an event id to vectors already computed by this pipeline's
        embedder (``{"output.text": [...]}``): those fields skip the model (the replay fast
        path for logs that carry embeddings). Raises :class:`storage.errors.StorageUnavailable`
        when nothing could be written; the caller retries the whole batch (which is safe:
        stored events are skipped).
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
        batch = self._build(accepted, images, given)
        result.scores = len(batch.scores)
        result.written = self._writer.write(batch)
        return result

    def _embed_field(
        self,
        name: str,
        owners: list[GenerationEvent],
        images: dict[str, Image.Image],
        given: Mapping[str, Mapping[str, Sequence[float]]],
    ) -> NDArray[np.float32]:
        """Vectors of one field: precomputed where given, the model for the rest."""
        vectors = np.zeros((len(owners), self._embedder.dim), dtype=np.float32)
        missing = []
        for i, event in enumerate(owners):
            vector = given.get(event.event_id, {}).get(name)
            if vector is None or len(vector) != self._embedder.dim:
                missing.append(i)  # absent, or not this embedder's shape: the model embeds it
            else:
                vectors[i] = np.asarray(vector, dtype=np.float32)
        if missing:
            if name == "output.image":
                computed = self._embedder.embed_images([images[owners[i].event_id]
                                                        for i in missing])  # fmt: skip
            else:
                computed = self._embedder.embed_texts([_CONTENT[name](owners[i]) or ""
                                                       for i in missing])  # fmt: skip
            vectors[missing] = computed
        return vectors

    def _build(
        self,
        events: list[GenerationEvent],
        images: dict[str, Image.Image],
        given: Mapping[str, Mapping[str, Sequence[float]]],
    ) -> WriteBatch:
        bank = self._bank()
        embedder_id = self._embedder.id
        batch = WriteBatch()
        for name, content in _CONTENT.items():
            owners = [e for e in events if content(e)]
            if not owners:
                continue
            vectors = self._embed_field(name, owners, images, given)
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


_CONTENT: dict[str, Callable[[GenerationEvent], str | None]] = {
    "prompt.text": lambda e: e.prompt.text,
    "output.text": lambda e: e.output.text,
    "output.image": lambda e: e.output.image,
}
"""The embedding fields and where each one's content is in an event."""

FIELD_CONTENT = _CONTENT
"""Public name of :data:`_CONTENT`, for other paths that embed events (the guardrail API)."""


def _repeat(value: str, n: int) -> pa.Array:
    import pyarrow as pa

    return pa.repeat(pa.scalar(value, pa.string()), n)


def _concat(tables: list[pa.Table]) -> pa.Table:
    import pyarrow as pa

    return pa.concat_tables(tables) if tables else pa.table({"event_id": pa.array([], pa.string())})


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
