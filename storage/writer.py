"""The batching ClickHouse sink: buffer rows, insert them on ``flush()``, idempotent on event_id.

Order of inserts matters. Embeddings and scores go first and ``events`` last, so a stored
``events`` row means the whole event is stored: :meth:`ClickHouseWriter.existing_event_ids`
lets the pipeline skip those on redelivery, and anything written before a crash is re-written
harmlessly (see ``storage.schema`` for why duplicates never change counts).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from storage.errors import BackPressure, StorageUnavailable
from storage.feedback import NEGATIVE_FEEDBACK
from storage.rows import EmbeddingRow, EventRow, ScoreRow, WriteBatch

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["ClickHouseWriter"]

log = logging.getLogger(__name__)

_ID_CHUNK = 5_000


class ClickHouseWriter:
    """Buffer rows and insert them in large blocks.

    ``add`` raises :class:`BackPressure` once ``max_rows`` are buffered; ``flush`` raises
    :class:`StorageUnavailable` when the insert fails and keeps the buffer, so the caller can
    retry the same rows (and must not commit its Kafka offsets meanwhile).
    """

    def __init__(self, client: Client, max_rows: int = 200_000) -> None:
        self._client = client
        self._max_rows = max_rows
        self._buffer = WriteBatch()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def add(self, batch: WriteBatch) -> None:
        if self.pending + len(batch) > self._max_rows:
            raise BackPressure(
                f"writer holds {self.pending} rows; adding {len(batch)} exceeds {self._max_rows}"
            )
        self._buffer.extend(batch)

    def flush(self) -> int:
        """Insert everything buffered; return the number of events written."""
        batch = self._buffer
        if not len(batch):
            return 0
        try:
            self._insert("embeddings", EmbeddingRow.COLUMNS, (r.values() for r in batch.embeddings))
            feedback_scores = self._feedback(batch.events)
            self._insert("signal_scores", ScoreRow.COLUMNS,
                         (r.values() for r in [*batch.scores, *feedback_scores]))  # fmt: skip
            self._insert("events", EventRow.COLUMNS, (r.values() for r in batch.events))
        except Exception as exc:
            raise StorageUnavailable(
                f"insert of {len(batch.events)} events failed: {type(exc).__name__}: {exc}"
            ) from exc
        self._buffer = WriteBatch()
        return len(batch.events)

    def write(self, batch: WriteBatch) -> int:
        """``add`` then ``flush``: the common case for a pipeline batch.

        If the flush fails, ``batch`` is taken out of the buffer again: the caller retries by
        calling ``write`` with the same rows, and keeping them would buffer them once per retry
        until a long outage turned :class:`StorageUnavailable` into :class:`BackPressure`.
        """
        before = WriteBatch()
        before.extend(self._buffer)
        self.add(batch)
        try:
            return self.flush()
        except StorageUnavailable:
            self._buffer = before
            raise

    def _feedback(self, events: list[EventRow]) -> list[ScoreRow]:
        """Feedback series rows for ``events`` from delayed feedback that arrived before them.

        Written with the scores, before the events, so a retried batch never loses the join.
        An event's own inline ``feedback`` field keeps its path (``events_1m.feedback_neg``)
        and is not part of this series.
        """
        ids = [e.event_id for e in events]
        low: dict[str, int] = {}
        for start in range(0, len(ids), _ID_CHUNK):
            rows = self._client.query(
                "SELECT event_id, min(value) FROM feedback FINAL "
                "WHERE event_id IN {ids:Array(String)} GROUP BY event_id",
                parameters={"ids": ids[start : start + _ID_CHUNK]},
            ).result_rows
            low.update((str(r[0]), int(r[1])) for r in rows)
        return [
            ScoreRow(e.event_id, NEGATIVE_FEEDBACK, 1, e.timestamp, e.model, e.model_version,
                     float(low[e.event_id]), low[e.event_id] < 0)
            for e in events if e.event_id in low
        ]  # fmt: skip

    def existing_event_ids(self, event_ids: Iterable[str]) -> set[str]:
        """Which of ``event_ids`` are already stored (fully: their ``events`` row exists)."""
        ids = list(dict.fromkeys(event_ids))
        found: set[str] = set()
        for start in range(0, len(ids), _ID_CHUNK):
            chunk = ids[start : start + _ID_CHUNK]
            try:
                rows = self._client.query(
                    "SELECT DISTINCT event_id FROM events WHERE event_id IN {ids:Array(String)}",
                    parameters={"ids": chunk},
                ).result_rows
            except Exception as exc:
                raise StorageUnavailable(f"lookup of stored events failed: {exc}") from exc
            found.update(str(row[0]) for row in rows)
        return found

    def _insert(self, table: str, columns: tuple[str, ...], rows: Iterable[list[object]]) -> None:
        data = list(rows)
        if data:
            self._client.insert(table, data, column_names=list(columns))
            log.debug("inserted %d rows into %s", len(data), table)
