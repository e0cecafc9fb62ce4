"""ClickHouse schema, migrations, client, batched idempotent writer and read queries.

Knows nothing of torch: vectors arrive as sequences of floats.
"""

from __future__ import annotations

from storage.client import connect, redact_dsn
from storage.errors import BackPressure, MigrationError, StorageError, StorageUnavailable
from storage.migrate import migrate
from storage.queries import RateRow, TableCounts, failure_rates, table_counts
from storage.rows import EmbeddingRow, EventRow, ScoreRow, WriteBatch
from storage.writer import ClickHouseWriter

__all__ = [
    "BackPressure",
    "ClickHouseWriter",
    "EmbeddingRow",
    "EventRow",
    "MigrationError",
    "RateRow",
    "ScoreRow",
    "StorageError",
    "StorageUnavailable",
    "TableCounts",
    "WriteBatch",
    "connect",
    "failure_rates",
    "migrate",
    "redact_dsn",
    "table_counts",
]
