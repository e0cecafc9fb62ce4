"""The batching ClickHouse sink: buffer rows, insert them on ``flush()``, idempotent on event_id.

Order of inserts matters. Embeddings and scores go first and ``events`` last, so a stored
``events`` row means the whole event is stored: :meth:`ClickHouseWriter.existing_event_ids`
lets the pipeline skip those on redelivery, and anything written before a crash is re-written
harmlessly (see ``storage.schema`` for why duplicates never change counts).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from storage.errors import BackPressure, StorageError, classify
from storage.feedback import NEGATIVE_FEEDBACK
from storage.rows import CacheStatsRow, EmbeddingRow, EventRow, ScoreRow, WriteBatch

if TYPE_CHECKING:
    import pyarrow as pa
    from clickhouse_connect.driver.client import Client

__all__ = ["ClickHouseWriter"]

log = logging.getLogger(__name__)

_ID_CHUNK = 5_000


class ClickHouseWriter:
    """Buffer rows and insert them in large blocks.

    ``add`` raises :class:`BackPressure` once ``max_rows`` are buffered; ``flush`` raises the
    typed error of a failed insert (:func:`storage.errors.classify`: transient, rows rejected,
    or misconfigured) and keeps the buffer, so the caller can retry the same rows (and must not
    commit its Kafka offsets meanwhile).
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
            self._insert(
                "embedding_cache_stats",
                CacheStatsRow.COLUMNS,
                (r.values() for r in batch.cache_stats),
            )
            self._insert("events", EventRow.COLUMNS, (r.values() for r in batch.events))
        except Exception as exc:
            raise classify(exc, f"insert of {len(batch.events)} events") from exc
        self._buffer = WriteBatch()
        return len(batch.events)

    def write(self, batch: WriteBatch) -> int:
        """``add`` then ``flush``: the common case for a pipeline batch.

        If the flush fails, ``batch`` is taken out of the buffer again: the caller retries by
        calling ``write`` with the same rows (or a part of them, when rows were rejected), and
        keeping them would buffer them once per retry until a long outage turned
        :class:`~storage.errors.StorageUnavailable` into :class:`BackPressure`.
        """
        before = WriteBatch()
        before.extend(self._buffer)
        self.add(batch)
        try:
            return self.flush()
        except StorageError:
            self._buffer = before
            raise

    def write_arrow(self, embeddings: pa.Table, scores: pa.Table, events: pa.Table) -> int:
        """Insert whole Arrow tables, column-wise (the replay fast path); return the events.

        Same order as :meth:`flush` (``events`` last) and the same typed errors. The tables
        must name columns of their ClickHouse tables; missing ones take their defaults. Nothing
        is buffered: the rows go in with this call or not at all.
        """
        if self.pending:
            raise BackPressure("write_arrow needs an empty buffer; flush() first")
        try:
            for table, data in (("embeddings", embeddings), ("signal_scores", scores),
                                ("events", events)):  # fmt: skip
                if data.num_rows:
                    self._client.insert_arrow(table, data)
                    log.debug("inserted %d rows into %s (arrow)", data.num_rows, table)
        except Exception as exc:
            raise classify(exc, f"insert of {events.num_rows} events") from exc
        return int(events.num_rows)

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
                # One JSON document instead of an Array(String) parameter: the driver binds an
                # array element by element in Python (a third of a pre-embedded replay's time)
                rows = self._client.query(
                    "SELECT DISTINCT event_id FROM events WHERE event_id IN "
                    "JSONExtract({ids:String}, 'Array(String)')",
                    parameters={"ids": json.dumps(chunk, ensure_ascii=False)},
                ).result_rows
            except Exception as exc:
                raise classify(exc, "lookup of stored events") from exc
            found.update(str(row[0]) for row in rows)
        return found

    def _insert(self, table: str, columns: tuple[str, ...], rows: Iterable[list[object]]) -> None:
        data = list(rows)
        if data:
            self._client.insert(table, data, column_names=list(columns))
            log.debug("inserted %d rows into %s", len(data), table)
