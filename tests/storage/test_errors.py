"""Storage errors are typed by what they concern, from real ClickHouse (chDB) failures."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from storage.client import connect
from storage.dead_letters import DeadLetterRow, record_dead_letters
from storage.errors import (
    RowsRejected,
    StorageError,
    StorageMisconfigured,
    StorageOverloaded,
    StorageUnavailable,
    classify,
)
from storage.feedback import NEGATIVE_FEEDBACK, FeedbackRow, record_feedback
from storage.rows import EmbeddingRow, EventRow, ScoreRow, WriteBatch
from storage.writer import ClickHouseWriter

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def failure(call: Any) -> StorageError:
    with pytest.raises(StorageError) as info:
        call()
    return info.value


def test_a_violated_constraint_is_a_row_error_with_the_server_code(ch: Any) -> None:
    ch.command("ALTER TABLE events ADD CONSTRAINT app_set CHECK app != ''")
    writer = ClickHouseWriter(ch)
    error = failure(lambda: writer.write(WriteBatch(events=[EventRow("e1", NOW, "m", "v1")])))
    assert type(error) is RowsRejected and error.code == 469
    assert writer.pending == 0  # the failed rows are not kept for the next write


def test_a_value_the_client_cannot_serialise_is_a_row_error(ch: Any) -> None:
    ch.command("ALTER TABLE events MODIFY COLUMN latency_ms Nullable(UInt16)")
    row = EventRow("e1", NOW, "m", "v1", latency_ms=1e9)
    error = failure(lambda: ClickHouseWriter(ch).write(WriteBatch(events=[row])))
    assert type(error) is RowsRejected and error.code is None


def test_missing_tables_and_columns_mean_the_system_is_misconfigured(tmp_path: Path) -> None:
    client = connect(f"chdb://{tmp_path / 'bare'}")  # never migrated
    try:
        writer = ClickHouseWriter(client)
        error = failure(lambda: writer.existing_event_ids(["e1"]))
        assert type(error) is StorageMisconfigured and error.code == 60  # UNKNOWN_TABLE
        row = DeadLetterRow("t", 0, 1, "bad", 3, NOW)
        error = failure(lambda: record_dead_letters(client, [row]))
        assert type(error) is StorageMisconfigured
        client.command("CREATE TABLE events (event_id String) ENGINE = MergeTree ORDER BY event_id")
        batch = WriteBatch(events=[EventRow("e1", NOW, "m", "v1")])
        error = failure(lambda: writer.write(batch))
        assert type(error) is StorageMisconfigured  # columns the table lacks
    finally:
        client.close()


def test_codes_decide_and_unknown_failures_are_transient() -> None:
    class ServerError(Exception):
        def __init__(self, code: int) -> None:
            super().__init__(f"Code: {code}. DB::Exception: ...")
            self.code = code

    assert type(classify(ServerError(252), "insert")) is StorageUnavailable  # TOO_MANY_PARTS
    assert type(classify(ServerError(209), "insert")) is StorageUnavailable  # SOCKET_TIMEOUT
    assert type(classify(ServerError(516), "insert")) is StorageMisconfigured  # AUTHENTICATION
    assert type(classify(ServerError(53), "insert")) is RowsRejected  # TYPE_MISMATCH
    assert type(classify(ServerError(123456), "insert")) is StorageUnavailable
    # the message does not decide: a transient code whose text mentions a missing table
    assert type(classify(ServerError(210), "UNKNOWN_TABLE in text")) is StorageUnavailable
    # the write's size or cost: still transient, but the worker splits the batch if it persists
    for code in (241, 159, 173, 396):  # MEMORY_LIMIT, TIMEOUT_EXCEEDED, CANNOT_ALLOCATE, TOO_MANY
        overloaded = classify(ServerError(code), "insert")
        assert type(overloaded) is StorageOverloaded and isinstance(overloaded, StorageUnavailable)
    assert type(classify(ConnectionRefusedError(111, "refused"), "insert")) is StorageUnavailable
    typed = StorageMisconfigured("already typed", 60)
    assert classify(typed, "insert") is typed


def _rows(ch: Any, table: str) -> int:
    return int(ch.query(f"SELECT count() FROM {table}").result_rows[0][0])


def _months(n: int) -> list[datetime]:
    return [datetime(2012 + i // 12, i % 12 + 1, 3, 4, 5, tzinfo=UTC) for i in range(n)]


def test_a_write_spanning_more_partitions_than_one_insert_may_touch_is_split(ch: Any) -> None:
    """130 months in one batch: ClickHouse refuses one INSERT block over 100 partitions (code
    252, transient, so it was retried forever); the writer inserts month groups instead."""
    stamps = _months(130)
    batch = WriteBatch(
        events=[EventRow(f"e{i}", t, "m", "v1") for i, t in enumerate(stamps)],
        embeddings=[
            EmbeddingRow(f"e{i}", "output.text", "emb", t, "m", "v1", [0.5, 0.25])
            for i, t in enumerate(stamps)
        ],
        scores=[ScoreRow(f"e{i}", "sig", 1, t, "m", "v1", 0.7, True) for i, t in enumerate(stamps)],
    )
    assert ClickHouseWriter(ch).write(batch) == 130
    for table in ("events", "embeddings", "signal_scores"):
        assert _rows(ch, table) == 130
        months = ch.query(f"SELECT uniqExact(toYYYYMM(timestamp)) FROM {table}").result_rows
        assert months[0][0] == 130


def test_a_lower_partition_limit_of_the_server_is_honoured(ch: Any) -> None:
    """An operator may lower ``max_partitions_per_insert_block``; the writer reads it."""
    stamps = _months(30)
    rows = [EventRow(f"e{i}", t, "m", "v1") for i, t in enumerate(stamps)]
    ch.command("SET max_partitions_per_insert_block = 7")
    try:
        assert ClickHouseWriter(ch).write(WriteBatch(events=rows)) == 30
    finally:
        ch.command("SET max_partitions_per_insert_block = 100")
    assert _rows(ch, "events") == 30


def test_a_refused_event_row_writes_nothing_in_any_table(ch: Any) -> None:
    """The rows are checked against every table before any is written: a refused ``events``
    row (written last) leaves no embeddings or scores behind, nor counts in the views."""
    ch.command("ALTER TABLE events ADD CONSTRAINT app_set CHECK app != ''")
    batch = WriteBatch(
        events=[EventRow("good", NOW, "m", "v1", app="chat"), EventRow("bad", NOW, "m", "v1")],
        embeddings=[
            EmbeddingRow(e, "output.text", "emb", NOW, "m", "v1", [1.0, 0.0])
            for e in ("good", "bad")
        ],
        scores=[ScoreRow(e, "sig", 1, NOW, "m", "v1", 0.9, True) for e in ("good", "bad")],
    )
    error = failure(lambda: ClickHouseWriter(ch).write(batch))
    assert type(error) is RowsRejected and error.code == 469
    for table in ("events", "embeddings", "signal_scores", "failure_rates_1m"):
        assert _rows(ch, table) == 0, table
    # the same writer stores the good rows once the refused one is left out
    good = WriteBatch(events=batch.events[:1], embeddings=batch.embeddings[:1],
                      scores=batch.scores[:1])  # fmt: skip
    assert ClickHouseWriter(ch).write(good) == 1
    assert [_rows(ch, t) for t in ("events", "embeddings", "signal_scores")] == [1, 1, 1]


@pytest.mark.parametrize("months", [1, 130])
def test_refused_embeddings_write_nothing_in_any_table(ch: Any, months: int) -> None:
    """``embeddings`` is written first: in one block its refusal leaves nothing behind; over
    more months than one block may touch it is checked first like the other tables."""
    ch.command("ALTER TABLE embeddings ADD CONSTRAINT known CHECK model != 'POISON'")
    stamps = _months(months) if months > 1 else [NOW] * 3
    models = ["m"] * (len(stamps) - 1) + ["POISON"]  # the refused row is in the last block
    batch = WriteBatch(
        events=[EventRow(f"e{i}", t, m, "v1") for i, (t, m) in enumerate(zip(stamps, models))],
        embeddings=[
            EmbeddingRow(f"e{i}", "output.text", "emb", t, m, "v1", [1.0, 0.0])
            for i, (t, m) in enumerate(zip(stamps, models))
        ],
        scores=[
            ScoreRow(f"e{i}", "s", 1, t, m, "v1", 0.5, False)
            for i, (t, m) in enumerate(zip(stamps, models))
        ],
    )
    error = failure(lambda: ClickHouseWriter(ch).write(batch))
    assert type(error) is RowsRejected and error.code == 469
    for table in ("events", "embeddings", "signal_scores", "failure_rates_1m"):
        assert _rows(ch, table) == 0, table


def test_a_constraint_added_after_the_writer_started_is_checked_too(ch: Any) -> None:
    writer = ClickHouseWriter(ch)
    assert writer.write(WriteBatch(events=[EventRow("e0", NOW, "m", "v1")])) == 1
    ch.command("ALTER TABLE signal_scores ADD CONSTRAINT positive CHECK score >= 0")
    batch = WriteBatch(
        events=[EventRow("e1", NOW, "m", "v1")],
        embeddings=[EmbeddingRow("e1", "output.text", "emb", NOW, "m", "v1", [1.0, 0.0])],
        scores=[ScoreRow("e1", "sig", 1, NOW, "m", "v1", -1.0, False)],
    )
    error = failure(lambda: writer.write(batch))
    assert type(error) is RowsRejected
    # the first refusal may come from the table itself; no row of e1 stays anywhere
    for table in ("embeddings", "signal_scores"):
        assert _rows(ch, table) == 0, table
    assert _rows(ch, "events") == 1


def test_a_check_copy_that_vanished_with_its_session_is_made_again(ch: Any) -> None:
    """Temporary tables end with their session (an HTTP session expires when idle)."""
    writer = ClickHouseWriter(ch)
    assert writer.write(WriteBatch(events=[EventRow("e0", NOW, "m", "v1")])) == 1
    (copy,) = [  # the writer's own copy of ``events``, dropped behind its back
        str(r[0])
        for r in ch.query(
            "SELECT name FROM system.tables WHERE is_temporary AND name LIKE '%check%events'"
        ).result_rows
    ]
    ch.command(f"DROP TEMPORARY TABLE {copy}")
    assert writer.write(WriteBatch(events=[EventRow("e1", NOW, "m", "v1")])) == 1
    assert _rows(ch, "events") == 2


def _feedback_row(i: int, value: int = -1) -> FeedbackRow:
    return FeedbackRow(f"f{i}", f"e{i}", value, None, "thumbs", "u1", NOW)


def test_feedback_errors_are_typed_not_all_transient(ch: Any) -> None:
    """A feedback row the database refuses was StorageUnavailable, so the feedback agent
    retried it forever; now it is a row error (bisected and dead-lettered by the worker)."""
    ch.command("ALTER TABLE feedback ADD CONSTRAINT known_kind CHECK kind != 'bogus'")
    bad = FeedbackRow("f9", "e9", -1, None, "bogus", "u1", NOW)
    error = failure(lambda: record_feedback(ch, [_feedback_row(1), bad]))
    assert type(error) is RowsRejected and error.code == 469
    ch.command("DROP TABLE feedback")
    error = failure(lambda: record_feedback(ch, [_feedback_row(1)]))
    assert type(error) is StorageMisconfigured  # `telltale migrate` has not run


def test_feedback_joined_with_events_of_many_months_is_stored(ch: Any) -> None:
    """Feedback arriving for events of 130 months joins into ``signal_scores`` in month
    groups: one INSERT ... SELECT over them all is refused (code 252, transient: forever)."""
    events = [EventRow(f"e{i}", t, "m", "v1") for i, t in enumerate(_months(130))]
    assert ClickHouseWriter(ch).write(WriteBatch(events=events)) == 130
    assert record_feedback(ch, [_feedback_row(i) for i in range(130)]) == 130
    joined = ch.query(
        "SELECT count(), uniqExact(toYYYYMM(timestamp)) FROM signal_scores "
        "WHERE signal = {s:String}",
        parameters={"s": NEGATIVE_FEEDBACK},
    ).result_rows[0]
    assert tuple(joined) == (130, 130)


def test_the_column_wise_write_is_split_by_month_too(ch: Any) -> None:
    """The replay fast path (Arrow tables) of logs that span 130 months."""
    import pyarrow as pa

    stamps = _months(130)
    ids = [f"e{i}" for i in range(130)]
    base = {
        "event_id": pa.array(ids),
        "timestamp": pa.array(stamps, pa.timestamp("ms", "UTC")),
        "model": pa.array(["m"] * 130),
        "model_version": pa.array(["v1"] * 130),
    }
    scores = pa.table({**base, "signal": pa.array(["sig"] * 130),
                       "signal_version": pa.array([1] * 130, pa.uint32()),
                       "score": pa.array([0.25] * 130, pa.float32()),
                       "flagged": pa.array([0] * 130, pa.uint8())})  # fmt: skip
    written = ClickHouseWriter(ch).write_arrow(pa.table({}), scores, pa.table(base))
    assert written == 130
    for table in ("events", "signal_scores"):
        assert _rows(ch, table) == 130


class _EventsOverloadedOnce:
    """The client, except that one insert into ``events`` (the one after ``events_before``
    blocks of it went in) runs under a memory limit too small for it: a real
    ``MEMORY_LIMIT_EXCEEDED`` of the engine."""

    def __init__(self, client: Any, events_before: int = 0) -> None:
        self._client = client
        self.events_before = events_before

    def insert(self, table: str, *args: Any, settings: dict[str, Any] | None = None,
               **kwargs: Any) -> Any:  # fmt: skip
        if table == "events":
            if self.events_before == 0:
                settings = {**(settings or {}), "max_memory_usage": 1, "max_untracked_memory": 0}
            self.events_before -= 1
        return self._client.insert(table, *args, settings=settings, **kwargs)

    def insert_arrow(self, table: str, *args: Any, settings: dict[str, Any] | None = None,
                     **kwargs: Any) -> Any:  # fmt: skip
        if table == "events":
            if self.events_before == 0:
                settings = {**(settings or {}), "max_memory_usage": 1, "max_untracked_memory": 0}
            self.events_before -= 1
        return self._client.insert_arrow(table, *args, settings=settings, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _event_batch(stamps: list[datetime]) -> WriteBatch:
    return WriteBatch(
        events=[EventRow(f"e{i}", t, "m", "v1", output_text="x") for i, t in enumerate(stamps)],
        embeddings=[
            EmbeddingRow(f"e{i}", field, "emb", t, "m", "v1", [0.5, 0.25])
            for i, t in enumerate(stamps) for field in ("prompt.text", "output.text")
        ],
        scores=[ScoreRow(f"e{i}", "sig", 1, t, "m", "v1", 0.7, True) for i, t in enumerate(stamps)],
    )  # fmt: skip


def _rows_by_table(ch: Any) -> dict[str, int]:
    """Rows as stored (no FINAL, before any merge) and distinct events, per event table."""
    return {
        table: tuple(ch.query(f"SELECT count(), uniqExact(event_id) FROM {table}").result_rows[0])
        for table in ("events", "embeddings", "signal_scores")
    }


def test_an_events_insert_over_the_memory_limit_leaves_no_rows_of_its_events(ch: Any) -> None:
    """``events`` is written last; when its insert fails (here: over ``max_memory_usage``),
    the embeddings and scores already written for the batch's unstored events are deleted,
    and the retry stores exactly one row per event and field in every table."""
    batch = _event_batch([NOW] * 6)
    writer = ClickHouseWriter(_EventsOverloadedOnce(ch))  # type: ignore[arg-type]
    error = failure(lambda: writer.write(batch))
    assert type(error) is StorageOverloaded
    assert _rows_by_table(ch) == {t: (0, 0) for t in ("events", "embeddings", "signal_scores")}
    assert writer.write(batch) == 6
    assert _rows_by_table(ch) == {"events": (6, 6), "embeddings": (12, 6),
                                  "signal_scores": (6, 6)}  # fmt: skip


def test_events_stored_before_a_failed_events_block_keep_their_rows(ch: Any) -> None:
    """Split by month, the first block of ``events`` is stored and the second fails: the
    stored events keep their embeddings and scores, the others leave none."""
    ch.command("SET max_partitions_per_insert_block = 1")
    try:
        stamps = _months(2)
        writer = ClickHouseWriter(_EventsOverloadedOnce(ch, events_before=1))  # type: ignore[arg-type]
        error = failure(lambda: writer.write(_event_batch(stamps)))
        assert type(error) is StorageOverloaded
        assert _rows_by_table(ch) == {"events": (1, 1), "embeddings": (2, 1),
                                      "signal_scores": (1, 1)}  # fmt: skip
        assert writer.write(_event_batch(stamps)) == 2
    finally:
        ch.command("SET max_partitions_per_insert_block = 100")
    # e0 was stored by the first attempt and again by the retry: merged by its key (FINAL)
    finals = [ch.query(f"SELECT count() FROM {t} FINAL").result_rows[0][0]
              for t in ("events", "embeddings", "signal_scores")]  # fmt: skip
    assert finals == [2, 4, 2]


def test_a_failed_column_wise_events_insert_leaves_no_scores_of_its_events(ch: Any) -> None:
    import pyarrow as pa

    base = {"event_id": pa.array(["a", "b"]),
            "timestamp": pa.array([NOW, NOW], pa.timestamp("ms", "UTC")),
            "model": pa.array(["m", "m"]), "model_version": pa.array(["v1", "v1"])}  # fmt: skip
    scores = pa.table({**base, "signal": pa.array(["sig"] * 2),
                       "signal_version": pa.array([1] * 2, pa.uint32()),
                       "score": pa.array([0.25] * 2, pa.float32()),
                       "flagged": pa.array([0] * 2, pa.uint8())})  # fmt: skip
    writer = ClickHouseWriter(_EventsOverloadedOnce(ch))  # type: ignore[arg-type]
    error = failure(lambda: writer.write_arrow(pa.table({}), scores, pa.table(base)))
    assert type(error) is StorageOverloaded
    assert (_rows(ch, "events"), _rows(ch, "signal_scores")) == (0, 0)
    assert writer.write_arrow(pa.table({}), scores, pa.table(base)) == 2
    assert (_rows(ch, "events"), _rows(ch, "signal_scores")) == (2, 2)


def test_column_types_are_read_once_and_again_after_the_table_changed(
    ch: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No schema read per batch (the driver DESCRIBEs a table before every insert it is
    given no types for); a changed column type is seen before the next insert."""
    reads: list[str] = []
    create = ch.create_insert_context

    def counted(table: str, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("column_types") is None and (len(args) < 3 or args[2] is None):
            reads.append(table)
        return create(table, *args, **kwargs)

    monkeypatch.setattr(ch, "create_insert_context", counted)
    writer = ClickHouseWriter(ch)

    def batch(event_id: str, latency_ms: float | None = None) -> WriteBatch:
        return WriteBatch(
            events=[EventRow(event_id, NOW, "m", "v1", latency_ms=latency_ms)],
            embeddings=[EmbeddingRow(event_id, "output.text", "emb", NOW, "m", "v1", [1.0])],
            scores=[ScoreRow(event_id, "sig", 1, NOW, "m", "v1", 0.5, False)],
        )

    assert writer.write(batch("e0")) == 1
    first = len(reads)
    assert first and "events" in reads  # the tables and their check copies, once each
    assert writer.write(batch("e1", 1e6)) == 1
    assert len(reads) == first  # the second batch read no types
    ch.command("ALTER TABLE events MODIFY COLUMN latency_ms Nullable(UInt16)")
    error = failure(lambda: writer.write(batch("e2", 1e9)))  # 1e9 no longer fits
    assert type(error) is RowsRejected
    assert _rows(ch, "events") == 2
