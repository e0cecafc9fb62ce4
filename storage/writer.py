"""The batching ClickHouse sink: buffer rows, insert them on ``flush()``, idempotent on event_id.

Order of inserts matters. Embeddings and scores go first and ``events`` last, so a stored
``events`` row means the whole event is stored: :meth:`ClickHouseWriter.existing_event_ids`
lets the pipeline skip those on redelivery, and anything written before a crash is re-written
harmlessly (see ``storage.schema`` for why duplicates never change counts). When a later insert
fails (``events`` over a memory limit, say), the embeddings and scores already written for the
batch's events that have no ``events`` row are deleted before the error is raised, so a retry
stores one row per event and a dead-lettered event leaves none (the per-minute views keep what
they counted from those scores: a view holds states, not rows).

Two things keep a write from half-succeeding or failing for good:

* **Checked before written.** The blocks are first inserted into an empty ``Null``-engine
  temporary copy of its table (same columns, types and constraints, no data, no views), so a
  value the database refuses raises :class:`~storage.errors.RowsRejected` before any table is
  touched: a refused event leaves no embeddings or scores behind (the per-minute views would
  count those as an event that was never stored). The copies are remade when a table's
  definition changes (an operator adds a constraint while the worker runs).
* **Split by partition.** ClickHouse refuses one INSERT block that touches more than
  ``max_partitions_per_insert_block`` partitions (code 252, which is transient for a busy
  table): the rows of each table are inserted in groups of at most that many months, so a
  replay of years of history is stored instead of retried forever.

No schema is read per batch: the column types of each table are read at its first insert (the
driver would ``DESCRIBE`` it before every insert) and again once the table's definition has
changed (seen by the check above) or an insert into it failed.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from storage.errors import BackPressure, StorageError, classify
from storage.feedback import NEGATIVE_FEEDBACK
from storage.rows import CacheStatsRow, EmbeddingRow, EventRow, ScoreRow, WriteBatch

if TYPE_CHECKING:
    import pyarrow as pa
    from clickhouse_connect.datatypes.base import ClickHouseType
    from clickhouse_connect.driver.client import Client

__all__ = ["ClickHouseWriter"]

log = logging.getLogger(__name__)

_ID_CHUNK = 5_000
_UNKNOWN_TABLE = 60
_PARTITION_LIMIT_DEFAULT = 100  # ClickHouse's default max_partitions_per_insert_block
_MONTH_COLUMN = {"events": "timestamp", "embeddings": "timestamp", "signal_scores": "timestamp",
                 "embedding_cache_stats": "at"}  # fmt: skip
"""The column each table is partitioned by (``toYYYYMM`` of it; see ``storage.schema``)."""
_WRITTEN_BEFORE_EVENTS = ("embeddings", "signal_scores")
"""Tables with rows per event written before ``events``: what a failed write may leave."""


class ClickHouseWriter:
    """Buffer rows and insert them in large blocks.

    ``add`` raises :class:`BackPressure` once ``max_rows`` are buffered; ``flush`` raises the
    typed error of a failed insert (:func:`storage.errors.classify`: transient, rows rejected,
    or misconfigured) and keeps the buffer, so the caller can retry the same rows (and must not
    commit its Kafka offsets meanwhile).

    ``insert_settings`` are ClickHouse settings for every insert (e.g. ``max_memory_usage``,
    ``max_execution_time``): a write that exceeds them raises
    :class:`~storage.errors.StorageOverloaded`, which the worker splits instead of retrying.
    """

    def __init__(
        self,
        client: Client,
        max_rows: int = 200_000,
        insert_settings: Mapping[str, object] | None = None,
    ) -> None:
        self._client = client
        self._settings = dict(insert_settings or {})
        self._max_rows = max_rows
        self._buffer = WriteBatch()
        self._limit: int | None = None
        self._probe_suffix = uuid.uuid4().hex[:12]
        self._probed: dict[str, str | None] = {}  # table -> definition its check copy was made of
        # column types per (table, columns), read once (the driver would DESCRIBE the table
        # before every insert); forgotten when the table's definition changes or an insert fails
        self._types: dict[tuple[str, tuple[str, ...]], Sequence[ClickHouseType]] = {}

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
        """Insert everything buffered; return the number of events written.

        The rows are checked against their tables first (:meth:`_check`; the first table
        written only when it takes several blocks): a refused row raises
        :class:`~storage.errors.RowsRejected` with nothing written to any table.
        """
        batch = self._buffer
        if not len(batch):
            return 0
        try:
            feedback_scores = self._feedback(batch.events)
            blocks = [  # written in this order: ``events`` last
                ("embeddings", EmbeddingRow.COLUMNS, [r.values() for r in batch.embeddings]),
                ("signal_scores", ScoreRow.COLUMNS,
                 [r.values() for r in [*batch.scores, *feedback_scores]]),
                ("embedding_cache_stats", CacheStatsRow.COLUMNS,
                 [r.values() for r in batch.cache_stats]),
                ("events", EventRow.COLUMNS, [r.values() for r in batch.events]),
            ]  # fmt: skip
            # ``embeddings`` goes first, so a refusal of its only block leaves nothing written:
            # it is checked only when it takes several blocks (its vectors are the bulk of a
            # batch's bytes; checking them too cost 1.7x the write time instead of 1.2x)
            first = blocks[0]
            several = len(_by_month(first[2], first[1].index("timestamp"),
                                    self._partition_limit())) > 1  # fmt: skip
            self._check([b for b in blocks[0 if several else 1 :] if b[2]])
            written: list[str] = []  # tables that took at least one block
            try:
                for table, columns, rows in blocks:
                    self._insert(table, columns, rows, written)
            except Exception:
                self._discard_unstored([e.event_id for e in batch.events], written)
                raise
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

        Same order as :meth:`flush` (``events`` last), the same split by month and the same
        typed errors; the blocks are not checked first (replayed logs are validated before
        they get here, and this is the fast path). The tables
        must name columns of their ClickHouse tables; missing ones take their defaults. Nothing
        is buffered: the rows go in with this call or not at all.
        """
        if self.pending:
            raise BackPressure("write_arrow needs an empty buffer; flush() first")
        written: list[str] = []
        try:
            for table, data in (("embeddings", embeddings), ("signal_scores", scores),
                                ("events", events)):  # fmt: skip
                for part in _arrow_by_month(data, _MONTH_COLUMN[table], self._partition_limit()):
                    self._client.insert_arrow(table, part, settings=self._settings)
                    written.append(table)
                    log.debug("inserted %d rows into %s (arrow)", part.num_rows, table)
        except Exception as exc:
            if events.num_rows:
                self._discard_unstored(events.column("event_id").to_pylist(), written)
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

    def _discard_unstored(self, event_ids: list[str], tables: Sequence[str]) -> None:
        """After a failed write: delete the rows ``tables`` hold for those of ``event_ids``
        that have no ``events`` row (embeddings and scores written before ``events``). Best
        effort: if the database refuses this too, the rows stay until the retry rewrites them
        (``ReplacingMergeTree`` merges the copies)."""
        tables = [t for t in _WRITTEN_BEFORE_EVENTS if t in tables]
        if not tables or not event_ids:
            return
        try:
            unstored = sorted(set(event_ids) - self.existing_event_ids(event_ids))
            for table in tables:
                for start in range(0, len(unstored), _ID_CHUNK):
                    self._client.command(
                        f"DELETE FROM {table} WHERE event_id IN {{ids:Array(String)}}",  # noqa: S608 - table from code
                        parameters={"ids": unstored[start : start + _ID_CHUNK]},
                    )
        except Exception as exc:
            log.warning("a failed write left rows in %s for events not stored (the retry "
                        "writes them again): %s", ", ".join(tables), exc)  # fmt: skip
        else:
            log.info("deleted the rows of %d events not stored from %s", len(unstored),
                     ", ".join(tables))  # fmt: skip

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

    def _insert(
        self, table: str, columns: tuple[str, ...], rows: list[list[object]], written: list[str]
    ) -> None:
        """Insert ``rows`` into ``table`` in blocks of at most the partitions one may touch;
        append ``table`` to ``written`` once a block of it went in."""
        limit = self._partition_limit()
        for block in _by_month(rows, columns.index(_MONTH_COLUMN[table]), limit):
            self._insert_block(table, columns, block)
            written.append(table)
            log.debug("inserted %d rows into %s", len(block), table)

    def _check(self, blocks: Sequence[tuple[str, tuple[str, ...], list[list[object]]]]) -> None:
        """Insert every block into the ``Null`` copy of its table: raises what the table would,
        stores nothing. The copies are (re)made when a table's definition is new or changed."""
        tables = [table for table, _, _ in blocks]
        current = {
            str(name): str(create)
            for name, create in self._client.query(
                "SELECT name, create_table_query FROM system.tables "
                "WHERE database = currentDatabase() AND name IN {names:Array(String)}",
                parameters={"names": tables},
            ).result_rows
        }
        for table, columns, rows in blocks:
            probe = f"_telltale_check_{self._probe_suffix}_{table}"
            if table not in self._probed or self._probed[table] != current.get(table):
                self._copy(table, probe, current.get(table))
            try:
                self._insert_block(probe, columns, rows)
            except Exception as exc:
                if getattr(exc, "code", None) != _UNKNOWN_TABLE:
                    raise
                # A temporary table lives as long as its session, and an HTTP session ends
                # after a while idle: make the copy again (a missing table itself still fails).
                self._copy(table, probe, current.get(table))
                self._insert_block(probe, columns, rows)

    def _copy(self, table: str, probe: str, definition: str | None) -> None:
        self._client.command(f"DROP TEMPORARY TABLE IF EXISTS {probe}")
        self._client.command(f"CREATE TEMPORARY TABLE {probe} AS {table} ENGINE = Null")
        self._probed[table] = definition
        # the table changed (or is new to this writer): its types and its copy's are read again
        self._types = {key: t for key, t in self._types.items() if key[0] not in (table, probe)}

    def _insert_block(self, table: str, columns: tuple[str, ...], rows: list[list[object]]) -> None:
        """One INSERT of ``rows``, with the column types read at the first insert into
        ``table`` (read again after a failure: the table may have changed under us)."""
        key = (table, columns)
        types = self._types.get(key)
        if types is None:
            context = self._client.create_insert_context(table, list(columns),
                                                         settings=self._settings)  # fmt: skip
            types = self._types[key] = tuple(context.column_types)
        try:
            self._client.insert(table, rows, column_names=list(columns), column_types=types,
                                settings=self._settings)  # fmt: skip
        except Exception:
            self._types.pop(key, None)
            raise

    def _partition_limit(self) -> int:
        """The server's ``max_partitions_per_insert_block`` (0: no limit), read once."""
        if self._limit is None:
            rows = self._client.query(
                "SELECT value FROM system.settings WHERE name = 'max_partitions_per_insert_block'"
            ).result_rows
            self._limit = int(rows[0][0]) if rows else _PARTITION_LIMIT_DEFAULT
        return self._limit


def _month(value: object) -> tuple[int, int]:
    if not isinstance(value, datetime):
        raise TypeError(f"a partition column holds {type(value).__name__}, not a datetime")
    at = value.astimezone(UTC) if value.tzinfo else value  # naive values are UTC already
    return at.year, at.month


def _by_month(rows: list[list[object]], column: int, limit: int) -> list[list[list[object]]]:
    """``rows`` in blocks that each touch at most ``limit`` months (all at once when the
    limit is 0 or not reached), months in order of first appearance."""
    if not rows:
        return []
    groups: dict[tuple[int, int], list[list[object]]] = {}
    for row in rows:
        groups.setdefault(_month(row[column]), []).append(row)
    if limit <= 0 or len(groups) <= limit:
        return [rows]
    months = list(groups.values())
    return [[r for g in months[i : i + limit] for r in g] for i in range(0, len(months), limit)]


def _arrow_by_month(data: pa.Table, column: str, limit: int) -> list[pa.Table]:
    """The Arrow twin of :func:`_by_month` (no blocks for an empty table)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not data.num_rows:
        return []
    stamps = pc.cast(data.column(column), pa.timestamp("ms", "UTC"))
    key = pc.add(pc.multiply(pc.year(stamps), 100), pc.month(stamps))
    months = pc.unique(key)
    if limit <= 0 or len(months) <= limit:
        return [data]
    chunks = [months[i : i + limit] for i in range(0, len(months), limit)]
    return [data.filter(pc.is_in(key, value_set=chunk)) for chunk in chunks]
