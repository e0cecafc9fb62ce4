"""Dead letters in ClickHouse: where and why the worker refused a payload.

The payload itself stays in the Kafka dead-letter topic; the table holds its coordinates and
reason so the dead-letter rate can sit on a dashboard and page on-call. Keyed by the source
coordinates, so a redelivered refusal is stored once.
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
    """Insert ``rows``; raise the typed :mod:`storage.errors` error if the insert fails."""
    if not rows:
        return
    data = [
        [r.topic, r.partition, r.offset, r.reason, r.payload_bytes, r.failed_at.astimezone(UTC)]
        for r in rows
    ]
    try:
        client.insert("dead_letters", data, column_names=list(DeadLetterRow.COLUMNS))
    except Exception as exc:
        raise classify(exc, f"insert of {len(rows)} dead letters") from exc
