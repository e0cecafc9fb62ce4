"""The in-process pipeline: validate → embed once → apply every signal → write.

The Kafka worker, historical replay and the demo all call :meth:`Pipeline.process`, so every
path into ClickHouse is the same code. It is synchronous and CPU-bound: the worker runs it in an
executor thread, off the event loop.

Each field is embedded by its own embedder (:class:`~signals.embedders.FieldEmbedders`): text
fields by the text model, window by window, with every window of the batch in one model call
(after the embedding cache, when one is given, has answered what it can); images by open_clip,
after the same cache (keyed by the decoded pixels). Embedding and scoring are
:func:`streams.scoring.score_fields`, the path the guardrail API shares; this module turns its
result into rows. What is stored of the windows is described in :mod:`signals.windows`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from signals import (
    TEXT_FIELDS,
    CacheCounts,
    EmbedAhead,
    FieldEmbedders,
    GroupScore,
    ImagePolicy,
    SignalGroup,
    apply_groups,
    as_field_embedders,
)
from storage import CacheStatsRow, EmbeddingRow, EventRow, ScoreRow, WriteBatch
from streams.events import GenerationEvent
from streams.privacy import ContentPolicy
from streams.pseudonyms import Pseudonyms
from streams.sampling import Sampler
from streams.scoring import load_event_image, score_fields
from streams.slices import SliceConfig, Slicer

if TYPE_CHECKING:
    import pyarrow as pa
    from PIL import Image

    from signals import Embedder, EmbeddingCache, FieldScores, SignalBank
    from storage import ClickHouseWriter
    from streams.columnar import ColumnarBatch

__all__ = ["BatchResult", "ExportScores", "Pipeline"]

ExportScores = Callable[[Sequence[GenerationEvent], Sequence[ScoreRow]], None]
"""Takes the events and score rows of a stored batch (the OpenTelemetry export); never blocks."""

log = logging.getLogger(__name__)


@dataclass
class BatchResult:
    written: int = 0
    skipped_existing: int = 0
    duplicates_in_batch: int = 0
    rejected: list[tuple[GenerationEvent, str]] = field(default_factory=list)
    scores: int = 0
    unsampled: int = 0  # stored, not embedded or scored: the sampler left them out
    cache: CacheCounts = field(default_factory=CacheCounts)  # texts and images of this batch


class Pipeline:
    """Turns validated events into stored events, embeddings and scores.

    ``bank`` is called once per batch, so a caller can swap signals between batches (hot reload)
    without the pipeline knowing where they come from. ``embedder`` is one open_clip embedder
    for every field or a :class:`FieldEmbedders`; ``cache`` (optional) answers repeated texts
    and images.
    ``slicer`` gives every score row the event's capped slice values (default: ``app`` only);
    ``groups`` adds one score row per signal group per event (see :mod:`signals.groups`).
    ``pseudonyms`` (optional) replaces user and session ids by keyed hashes before anything
    else sees them (:mod:`streams.pseudonyms`). ``content`` (optional) decides what of the
    texts and attribute values is stored (:mod:`streams.privacy`); signals always see the raw
    content. ``export`` (optional) is handed the events and score rows of each batch once they
    are stored (:meth:`streams.otel_export.EvaluationExporter.offer`); it must not block. The
    column-wise path (:meth:`process_columns`) exports nothing.
    ``sampler`` (optional; the worker's, see :mod:`streams.sampling`): every new event is
    stored, but only those it draws are embedded and scored; each event and score row carries
    its inclusion probability. Without one every event is scored (replay, the guardrail API).
    """

    def __init__(
        self,
        embedder: Embedder | FieldEmbedders,
        bank: Callable[[], SignalBank],
        writer: ClickHouseWriter,
        image_policy: ImagePolicy | None = None,
        cache: EmbeddingCache | None = None,
        *,
        slicer: Slicer | None = None,
        groups: Sequence[SignalGroup] = (),
        pseudonyms: Pseudonyms | None = None,
        content: ContentPolicy | None = None,
        export: ExportScores | None = None,
        sampler: Sampler | None = None,
    ) -> None:
        self._embedders = as_field_embedders(embedder)
        self._bank = bank
        self._writer = writer
        self._image_policy = image_policy or ImagePolicy()
        self._cache = cache
        self._slicer = slicer or Slicer(SliceConfig())
        self._groups = tuple(groups)
        self._pseudonyms = pseudonyms
        self._content = content if content is not None and not content.is_raw else None
        self._store_windows = content is None or content.store_windows
        self._export = export
        self._sampler = sampler
        self._stored_share = 0.0  # of the last batch's events, the share already stored

    @property
    def embedder_id(self) -> str:
        """One label for the embedders (the single id, or ``text=...|image=...``)."""
        return self._embedders.id

    @property
    def content(self) -> ContentPolicy | None:
        """What of the content is stored; None: everything as sent."""
        return self._content

    @property
    def embedder_ids(self) -> dict[str, str]:
        """The embedder id of each field."""
        return self._embedders.ids

    @property
    def embedders(self) -> FieldEmbedders:
        return self._embedders

    @property
    def sampler(self) -> Sampler | None:
        """The sampler deciding which events are scored (None: every event)."""
        return self._sampler

    @property
    def cache(self) -> EmbeddingCache | None:
        return self._cache

    @property
    def dim(self) -> int:
        """The vector size of the text fields (the columnar replay carries text vectors only)."""
        return self._embedders.text.dim

    @property
    def ahead(self) -> EmbedAhead | None:
        """The text embedder when it embeds ahead (:meth:`embed_ahead`), else None."""
        text = self._embedders.text
        return text if isinstance(text, EmbedAhead) else None

    def embed_ahead(
        self,
        events: Sequence[GenerationEvent],
        given: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> int:
        """Queue the texts of ``events`` for the model before :meth:`process` is called with
        them (the worker does so as it takes a batch, replay as it reads one; see
        :mod:`signals.ahead`); return the number of texts queued. Only events the sampler
        would draw now, texts the embedding cache does not remember, and fields ``given``
        (the ``precomputed`` vectors :meth:`process` will be called with, by event id, then
        field) carries no vector for; nothing while most events of the last batch were
        stored already (a redelivery, an offset reset or a replay run again: those cost a
        lookup, not the model). Does nothing unless the text embedder is an
        :class:`~signals.EmbedAhead`."""
        ahead = self.ahead
        if ahead is None or not events or self._stored_share > 0.5:
            return 0
        if self._pseudonyms is not None:  # the draw reads the ids as process() sees them
            events = [self._pseudonyms.event(e) for e in events]
        if self._sampler is not None:
            drawn = self._sampler.likely_drawn(events)
            events = [e for e, d in zip(events, drawn, strict=True) if d]
        carried = given or {}
        texts = [
            text
            for name, content in zip(TEXT_FIELDS, ("prompt", "output"), strict=True)
            for e in events
            if (text := getattr(e, content).text)
            and name not in carried.get(e.event_id, {})
            and (self._cache is None or not self._cache.remembers(ahead.id, name, text))
        ]
        return ahead.submit(texts)

    def process_columns(self, batch: ColumnarBatch) -> tuple[int, int]:
        """Store validated, pre-embedded events given as columns; return (written, skipped).

        The column-wise twin of :meth:`process` for :mod:`streams.columnar`: the same
        idempotence (ids already stored, and repeats inside the batch, are skipped), the same
        signals, the same rows (with slice values), built as Arrow tables and inserted
        column-wise. Signal-group rows are not written on this path: run
        ``telltale signals backfill GROUP`` after a columnar replay.
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
        if self._pseudonyms is not None:
            kept = _pseudonymise_columns(kept, self._pseudonyms)
        if self._content is not None:
            kept = _policy_attributes(kept, self._content)
        # Slice values per kept event, as process() makes them (the cap is shared).
        slice_type = pa.map_(pa.string(), pa.string())
        slice_col = pa.array([
            list(self._slicer.values_of(app or "", dict(attrs or [])).items())
            for app, attrs in zip(kept.column("app").to_pylist(),
                                  kept.column("attributes").to_pylist(), strict=True)
        ], slice_type)  # fmt: skip
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
                "embedder_id": _repeat(self._embedders.id_for(name), len(owners)),
                "timestamp": base["timestamp"], "model": base["model"],
                "model_version": base["model_version"],
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()),
                                                            vectors.shape[1]),
            }))  # fmt: skip
            scores.extend(_score_tables(bank.score(name, vectors), base,
                                        slice_col.take(owners)))  # fmt: skip
        for name in bank.text_fields:  # pattern and PII kinds read the text column
            texts = kept.column(name.replace(".", "_")).to_pylist()
            with_text = [i for i, text in enumerate(texts) if text]
            if with_text:
                taken = pa.array(with_text)
                base = {c: kept.column(c).take(taken)
                        for c in ("event_id", "timestamp", "model", "model_version")}  # fmt: skip
                scored = bank.score_texts(name, [texts[i] for i in with_text])
                scores.extend(_score_tables(scored, base, slice_col.take(taken)))
        if self._content is not None:
            kept = _policy_texts(kept, self._content)
        kept = kept.append_column("embedder_id", _repeat(self._embedders.id, len(kept)))
        written = self._writer.write_arrow(_concat(embeddings), _concat(scores), kept)
        return written, len(stored)

    def process(
        self,
        events: Sequence[GenerationEvent],
        precomputed: Mapping[str, Mapping[str, Sequence[Any]]] | None = None,
    ) -> BatchResult:
        """Store ``events`` exactly once; return what happened to each.

        ``precomputed`` maps an event id to vectors already computed by this pipeline's
        embedders (``{"output.text": [...]}``): those fields skip the model (the replay fast
        path for logs that carry embeddings) and count as one window. With a sampler, events
        it does not draw are stored without embeddings or scores (their images are not
        loaded, so an unreadable image of such an event is not rejected). Raises
        :class:`storage.errors.StorageUnavailable` when nothing could be written; the caller
        retries the whole batch (which is safe: stored events are skipped).
        """
        result = BatchResult()
        if self._pseudonyms is not None:
            events = [self._pseudonyms.event(e) for e in events]
        unique: dict[str, GenerationEvent] = {}
        for event in events:
            if event.event_id in unique:
                result.duplicates_in_batch += 1
            else:
                unique[event.event_id] = event
        stored = self._writer.existing_event_ids(unique)
        result.skipped_existing = len(stored)
        self._stored_share = len(stored) / len(unique) if unique else 0.0
        given = precomputed or {}
        fresh = [e for e in unique.values() if e.event_id not in stored]
        probability, unsampled = self._sample(fresh)
        images: dict[str, Image.Image] = {}
        accepted: list[GenerationEvent] = []
        for event in fresh:
            needs_image = (event.event_id not in unsampled and event.output.image
                           and "output.image" not in given.get(event.event_id, {}))  # fmt: skip
            if needs_image:
                loaded = load_event_image(event, self._image_policy)
                if isinstance(loaded, str):
                    result.rejected.append((event, loaded))
                    continue
                images[event.event_id] = loaded
            accepted.append(event)
        if not accepted:
            return result
        drawn = [e for e in accepted if e.event_id not in unsampled]
        batch = self._build(drawn, images, given, result, probability) if drawn else WriteBatch()
        batch.events.extend(
            _event_row(e, self._embedders.id, self._content, probability.get(e.event_id, 1.0))
            for e in accepted
        )
        batch.unsampled = {e.event_id for e in accepted if e.event_id in unsampled}
        result.scores = len(batch.scores)
        result.unsampled = len(batch.unsampled)
        result.written = self._writer.write(batch)
        if self._export is not None:  # only once stored: a batch that is retried exports once
            try:
                self._export(accepted, batch.scores)
            except Exception:  # the batch is stored: an export failure must not fail it
                log.exception("exporting the scores of a stored batch failed")
        return result

    def _sample(self, events: list[GenerationEvent]) -> tuple[dict[str, float], set[str]]:
        """Each event's inclusion probability (where below 1), and the ids not drawn."""
        if self._sampler is None or not events:
            return {}, set()
        sampler = self._sampler
        probability = {e.event_id: p for e, p in zip(events, sampler.probabilities(events),
                                                       strict=True) if p < 1.0}  # fmt: skip
        unsampled = {e.event_id for e in events if e.event_id in probability
                     and not sampler.in_sample(e, probability[e.event_id])}  # fmt: skip
        return probability, unsampled

    def _build(
        self,
        events: list[GenerationEvent],
        images: dict[str, Image.Image],
        given: Mapping[str, Mapping[str, Sequence[Any]]],
        result: BatchResult,
        probability: Mapping[str, float],
    ) -> WriteBatch:
        """Embeddings and score rows of ``events`` (the events' own rows are the caller's)."""
        bank = self._bank()
        batch = WriteBatch()
        slices = {e.event_id: self._slice_values(e) for e in events}
        per_event: dict[str, dict[str, GroupScore]] = {}
        pictures = {i: images[e.event_id] for i, e in enumerate(events) if e.event_id in images}
        for scoring in score_fields(self._embedders, self._cache, bank, events, pictures,
                                  given=given):  # fmt: skip
            name, owners = scoring.name, [events[i] for i in scoring.owners]
            embedder_id = self._embedders.id_for(name)
            if scoring.counts is not None:
                counts = scoring.counts
                result.cache.add(counts)
                batch.cache_stats.append(CacheStatsRow(
                    datetime.now(UTC), name, embedder_id, counts.lookups, counts.memory_hits,
                    counts.shared_hits, counts.batch_repeats, counts.model_texts,
                ))  # fmt: skip
            if scoring.windows is not None:
                documents = scoring.windows.documents()
                for i, (event, vector) in enumerate(zip(owners, documents, strict=True)):
                    group = scoring.windows.group(i)
                    batch.embeddings.append(EmbeddingRow(
                        event.event_id, name, embedder_id, event.timestamp, event.model,
                        event.model_version, vector.tolist(),
                        group.tolist() if len(group) > 1 and self._store_windows else (),
                    ))  # fmt: skip
            for scored, rows in ((scoring.embedded, scoring.owners),
                                 (scoring.texts, scoring.text_owners)):  # fmt: skip
                if scored is None:
                    continue
                for j, signal in enumerate(scored.signals):
                    for i, event in enumerate(events[r] for r in rows):
                        score = float(scored.probabilities[i, j])
                        flagged = bool(scored.flagged[i, j])
                        batch.scores.append(ScoreRow(
                            event.event_id, signal.name, signal.version, event.timestamp,
                            event.model, event.model_version, score, flagged,
                            slices[event.event_id], probability.get(event.event_id, 1.0),
                        ))  # fmt: skip
                        if self._groups:
                            per_event.setdefault(event.event_id, {})[signal.name] = (score, flagged)
        if self._groups:
            for event in events:
                applied = apply_groups(self._groups, per_event.get(event.event_id, {}))
                for sg in self._groups:
                    if sg.name in applied:
                        score, flagged = applied[sg.name]
                        batch.scores.append(ScoreRow(
                            event.event_id, sg.name, sg.version, event.timestamp,
                            event.model, event.model_version, score, flagged,
                            slices[event.event_id], probability.get(event.event_id, 1.0),
                        ))  # fmt: skip
        return batch

    def _slice_values(self, event: GenerationEvent) -> dict[str, str]:
        """Slice values as stored: from the attributes the content policy lets through."""
        if self._content is None:
            return self._slicer.values(event)
        return self._slicer.values_of(event.app, self._content.attribute_values(event.attributes))


def _score_tables(scored: FieldScores, base: dict[str, Any], slices: Any) -> list[pa.Table]:
    """One Arrow table of score rows per signal of ``scored`` (rows: ``base``'s events)."""
    import pyarrow as pa

    n = len(scored.probabilities)
    return [pa.table({
        **base, "signal": _repeat(signal.name, n),
        "signal_version": pa.array(np.full(n, signal.version, np.uint32)),
        "score": pa.array(scored.probabilities[:, j].astype(np.float32)),
        "flagged": pa.array(scored.flagged[:, j].astype(np.uint8)),
        "slices": slices,
    }) for j, signal in enumerate(scored.signals)]  # fmt: skip


def _repeat(value: str, n: int) -> pa.Array:
    import pyarrow as pa

    return pa.repeat(pa.scalar(value, pa.string()), n)


def _concat(tables: list[pa.Table]) -> pa.Table:
    import pyarrow as pa

    return pa.concat_tables(tables) if tables else pa.table({"event_id": pa.array([], pa.string())})


def _pseudonymise_columns(table: pa.Table, pseudonyms: Pseudonyms) -> pa.Table:
    """``table`` (columns of the events table) with ids and id attributes pseudonymised."""
    import pyarrow as pa

    for name in ("user_id", "session_id"):
        index = table.schema.get_field_index(name)
        values = [pseudonyms(v) if v else v for v in table.column(name).to_pylist()]
        table = table.set_column(index, name, pa.array(values, table.schema.field(name).type))
    index = table.schema.get_field_index("attributes")
    rows = [None if row is None else list(pseudonyms.attributes(dict(row)).items())
            for row in table.column("attributes").to_pylist()]  # fmt: skip
    return table.set_column(index, "attributes", pa.array(rows, table.schema.field(index).type))


def _policy_attributes(table: pa.Table, content: ContentPolicy) -> pa.Table:
    """The ``attributes`` column as the content policy stores it."""
    import pyarrow as pa

    index = table.schema.get_field_index("attributes")
    rows = [None if row is None else list(content.attribute_values(dict(row)).items())
            for row in table.column("attributes").to_pylist()]  # fmt: skip
    return table.set_column(index, "attributes", pa.array(rows, table.schema.field(index).type))


def _policy_texts(table: pa.Table, content: ContentPolicy) -> pa.Table:
    """The text columns as the content policy stores them."""
    import pyarrow as pa

    for name, store in (("prompt_text", content.prompt), ("output_text", content.output)):
        index = table.schema.get_field_index(name)
        values = [store(v) if v else v for v in table.column(name).to_pylist()]
        table = table.set_column(index, name, pa.array(values, table.schema.field(index).type))
    return table


def _event_row(
    event: GenerationEvent,
    embedder_id: str,
    content: ContentPolicy | None = None,
    inclusion_probability: float = 1.0,
) -> EventRow:
    prompt, output = event.prompt.text or "", event.output.text or ""
    attributes = dict(event.attributes)
    if content is not None:
        prompt, output = content.prompt(prompt), content.output(output)
        attributes = content.attribute_values(attributes)
    image = event.output.image or ""
    if len(image) > 2048:  # inline base64 is kept in the log, not in the table
        image = f"inline:{len(image)}b"
    elif content is not None:
        image = content.image_reference(image)
    return EventRow(
        event_id=event.event_id,
        timestamp=event.timestamp,
        model=event.model,
        model_version=event.model_version,
        app=event.app,
        release=event.release,
        prompt_text=prompt,
        output_text=output,
        output_image=image,
        latency_ms=event.latency_ms,
        feedback=event.feedback,
        attributes=attributes,
        embedder_id=embedder_id,
        user_id=event.user_id or "",
        session_id=event.session_id or "",
        input_tokens=event.usage.input_tokens,
        output_tokens=event.usage.output_tokens,
        inclusion_probability=inclusion_probability,
    )
