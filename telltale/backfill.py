"""Back-fill: score stored embeddings with a signal, without re-embedding anything.

A new or changed signal gets its history: every stored embedding of its field (under the
embedder it was trained on) in ``[since, until)`` is scored (:func:`signals.examples.score_stored`,
as the pipeline scored it) and written to ``signal_scores`` with the signal's version, so
``telltale rates`` shows the series as if the signal had always existed. Idempotent: events
already scored with this version are skipped, and the rate view counts distinct events anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from signals import FittedSignal, score_stored
from storage import ClickHouseWriter, ScoreRow, WriteBatch, count_embeddings, event_slice_sources
from streams import SliceConfig, Slicer
from telltale.signal_store import ClickHouseEmbeddings

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["BackfillResult", "backfill", "backfill_total"]


@dataclass(frozen=True)
class BackfillResult:
    scored: int
    flagged: int


def backfill_total(
    client: Client, signal: FittedSignal, since: datetime | None, until: datetime | None
) -> int:
    """Upper bound of events to score, for a progress bar."""
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
    """Score every stored embedding of ``signal``'s field not yet scored by this version.

    Score rows carry the events' slice values (``slicer``; default ``app`` only), made from the
    stored events' ``app`` and ``attributes`` as the pipeline makes them.
    """
    slicer = slicer or Slicer(SliceConfig())
    writer = ClickHouseWriter(client)
    scored = flagged = 0
    for rows in ClickHouseEmbeddings(client).chunks(
        signal.field, signal.embedder_id, since=since, until=until,
        skip_scored=(signal.name, signal.version), chunk=chunk,
    ):  # fmt: skip
        result = score_stored(signal, rows)
        sources = event_slice_sources(client, [r.event_id for r in rows])
        batch = WriteBatch(scores=[
            ScoreRow(r.event_id, signal.name, signal.version, r.timestamp, r.model,
                     r.model_version, float(result.probabilities[i, 0]),
                     bool(result.flagged[i, 0]),
                     slicer.values_of(*sources.get(r.event_id, ("", {}))))
            for i, r in enumerate(rows)
        ])  # fmt: skip
        writer.write(batch)
        scored += len(rows)
        flagged += int(result.flagged[:, 0].sum())
        if progress is not None:
            progress(len(rows))
    return BackfillResult(scored=scored, flagged=flagged)
