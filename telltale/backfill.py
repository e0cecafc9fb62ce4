"""Back-fill: score stored embeddings with a signal, without re-embedding anything.

Signals that read the text (``pattern``, ``pii``) are scored on the stored ``prompt_text`` /
``output_text`` instead (:mod:`storage.stored_texts`): they see what was stored, and events
whose text was not stored are not scored.

A new or changed signal gets its history: every stored embedding of its field (under the
embedder it was trained on) in ``[since, until)`` is scored (:func:`signals.examples.score_stored`,
as the pipeline scored it) and written to ``signal_scores`` with the signal's version, so
``telltale rates`` shows the series as if the signal had always existed. Idempotent: events
already scored with this version are skipped, and the rate view counts distinct events anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from signals import FieldScores, FittedSignal, SignalBank, score_stored
from storage import (
    ClickHouseWriter,
    ScoreRow,
    StoredEmbedding,
    StoredText,
    WriteBatch,
    count_embeddings,
    count_texts,
    event_slice_sources,
    inclusion_probabilities,
    iter_texts,
)
from streams import SliceConfig, Slicer
from telltale.signal_store import ClickHouseEmbeddings

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["BackfillResult", "backfill", "backfill_total", "stored_text_flag_share"]


@dataclass(frozen=True)
class BackfillResult:
    scored: int
    flagged: int


def stored_text_flag_share(
    client: Client, signal: FittedSignal, sample: int = 20_000
) -> tuple[float | None, int]:
    """(share flagged, events scored) of a pattern or PII signal over up to ``sample`` stored
    texts of its field (the first by event id: ids are random in practice); ``(None, 0)`` when
    none is stored. The text kinds' counterpart of :func:`signals.stored_flag_share`."""
    texts = next(iter_texts(client, signal.field, chunk=sample), [])
    if not texts:
        return None, 0
    scored = SignalBank([signal], {}).score_texts(signal.field, [t.text for t in texts])
    return float(scored.flagged[:, 0].mean()), len(texts)


def backfill_total(
    client: Client, signal: FittedSignal, since: datetime | None, until: datetime | None
) -> int:
    """Upper bound of events to score, for a progress bar."""
    if signal.reads_text:
        return count_texts(client, signal.field, since, until)
    return count_embeddings(client, signal.field, signal.embedder_id, since, until)


def backfill(
    client: Client,
    signal: FittedSignal,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    chunk: int = 5_000,
    progress: Callable[[int], None] | None = None,
    slicer: Slicer | None = None,
) -> BackfillResult:
    """Score every stored event of ``signal``'s field not yet scored by this version.

    Score rows carry the events' slice values (``slicer``; default ``app`` only), made from the
    stored events' ``app`` and ``attributes`` as the pipeline makes them, and their inclusion
    probability (a sampling worker stored it with each event), so back-filled rates are
    weighted as the worker's are.
    """
    slicer = slicer or Slicer(SliceConfig())
    writer = ClickHouseWriter(client)
    scored = flagged = 0
    for rows, result in _scored_chunks(client, signal, since, until, chunk):
        ids = [r.event_id for r in rows]
        sources = event_slice_sources(client, ids)
        probability = inclusion_probabilities(client, ids)
        batch = WriteBatch(scores=[
            ScoreRow(r.event_id, signal.name, signal.version, r.timestamp, r.model,
                     r.model_version, float(result.probabilities[i, 0]),
                     bool(result.flagged[i, 0]),
                     slicer.values_of(*sources.get(r.event_id, ("", {}))),
                     probability.get(r.event_id, 1.0))
            for i, r in enumerate(rows)
        ])  # fmt: skip
        writer.write(batch)
        scored += len(rows)
        flagged += int(result.flagged[:, 0].sum())
        if progress is not None:
            progress(len(rows))
    return BackfillResult(scored=scored, flagged=flagged)


def _scored_chunks(
    client: Client,
    signal: FittedSignal,
    since: datetime | None,
    until: datetime | None,
    chunk: int,
) -> Iterator[tuple[Sequence[StoredEmbedding | StoredText], FieldScores]]:
    """Chunks of stored events not yet scored by ``signal``'s version, with their scores:
    stored texts for the text kinds, stored embeddings for the others."""
    skip = (signal.name, signal.version)
    if signal.reads_text:
        bank = SignalBank([signal], {})
        for texts in iter_texts(client, signal.field, since=since, until=until,
                                skip_scored=skip, chunk=chunk):  # fmt: skip
            yield texts, bank.score_texts(signal.field, [t.text for t in texts])
        return
    for rows in ClickHouseEmbeddings(client).chunks(signal.field, signal.embedder_id,
                                                    since=since, until=until, skip_scored=skip,
                                                    chunk=chunk):  # fmt: skip
        yield rows, score_stored(signal, rows)
