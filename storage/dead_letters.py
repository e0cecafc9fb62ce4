"""Dead letters in ClickHouse: where and why the worker refused a payload.

The payload itself stays in the Kafka dead-letter topic; the table holds its coordinates and
reason so the dead-letter rate can sit on a dashboard and page on-call. Keyed by the source
coordinates, so a redelivered refusal is stored once: :func:`record_dead_letters` skips the
coordinates already stored (as the pipeline skips stored event ids). ``ReplacingMergeTree``
alone would not do: a redelivery refused in a later month lands in another partition (the table
is partitioned by ``failed_at``), and on a cluster on another shard, where no merge and no
``FINAL`` meets the first row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from storage.errors import classify

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["DeadLetterRow", "record_dead_letters"]


@dataclass(frozen=True)
class DeadLetterRow:
    topic: str
    partition: int
    offset: int
    reason: str
    payload_bytes: int
    failed_at: datetime

    COLUMNS = ("topic", "partition", "offset", "reason", "payload_bytes", "failed_at")


def record_dead_letters(client: Client, rows: Sequence[DeadLetterRow]) -> None:
    """Insert ``rows`` whose coordinates (topic, partition, offset) are not stored yet (of
    coordinates given twice, the last row); raise the typed :mod:`storage.errors` error if the
    lookup or the insert fails."""
    if not rows:
        return
    latest = {(r.topic, r.partition, r.offset): r for r in rows}
    try:
        stored = _stored_coordinates(client, list(latest))
        data = [
            [r.topic, r.partition, r.offset, r.reason, r.payload_bytes,
             r.failed_at.astimezone(UTC)]
            for key, r in latest.items()
            if key not in stored
        ]  # fmt: skip
        if data:
            client.insert("dead_letters", data, column_names=list(DeadLetterRow.COLUMNS))
    except Exception as exc:
        raise classify(exc, f"insert of {len(rows)} dead letters") from exc


def _stored_coordinates(
    client: Client, keys: list[tuple[str, int, int]]
) -> set[tuple[str, int, int]]:
    """Which of ``keys`` the table already holds (the table's sort key: a key lookup)."""
    result = client.query(
        "SELECT DISTINCT topic, partition, offset FROM dead_letters "
        "WHERE (topic, partition, offset) IN {keys:Array(Tuple(String, UInt32, UInt64))}",
        parameters={"keys": keys},
    )
    return {(str(t), int(p), int(o)) for t, p, o in result.result_rows}
