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
    StorageUnavailable,
    classify,
)
from storage.rows import EventRow, WriteBatch
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
    assert type(classify(ServerError(159), "UNKNOWN_TABLE in text")) is StorageUnavailable
    assert type(classify(ConnectionRefusedError(111, "refused"), "insert")) is StorageUnavailable
    typed = StorageMisconfigured("already typed", 60)
    assert classify(typed, "insert") is typed
