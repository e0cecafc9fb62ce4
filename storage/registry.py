"""Signal records in ClickHouse: immutable versions of a signal's definition and fitted model.

Storage keeps them as JSON documents; the ``signals`` package owns their meaning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = [
    "SignalRecord",
    "delete_signal",
    "insert_signal",
    "latest_signals",
    "next_version",
    "save_signal",
    "signal_version",
]


@dataclass(frozen=True)
class SignalRecord:
    name: str
    version: int
    kind: str
    embedder_id: str
    definition: str
    fitted: str
    author: str
    created_at: datetime
    degenerate: bool = False
    degenerate_reason: str = ""


_COLUMNS = (
    "name", "version", "kind", "embedder_id", "definition", "fitted", "author", "deleted",
    "degenerate", "degenerate_reason",
)  # fmt: skip


def next_version(client: Client, name: str) -> int:
    rows = client.query(
        "SELECT max(version) FROM signals WHERE name = {name:String}", parameters={"name": name}
    ).result_rows
    return int(rows[0][0] or 0) + 1


def save_signal(client: Client, record: SignalRecord) -> None:
    """Store a new version. Versions are immutable: saving an existing one is refused."""
    exists = client.query(
        "SELECT count() FROM signals WHERE name = {name:String} AND version = {version:UInt32}",
        parameters={"name": record.name, "version": record.version},
    ).result_rows[0][0]
    if exists:
        raise ValueError(f"signal {record.name!r} version {record.version} already exists")
    insert_signal(client, record)


def insert_signal(client: Client, record: SignalRecord) -> None:
    """Insert ``record`` unchecked. For versions whose identity is deterministic (a retrain of
    a given version), where concurrent writers store the same (name, version) and the
    ReplacingMergeTree keeps it once; :func:`save_signal` for anything else."""
    client.insert(
        "signals",
        [[
            record.name, record.version, record.kind, record.embedder_id,
            record.definition, record.fitted, record.author, 0, int(record.degenerate),
            record.degenerate_reason,
        ]],
        column_names=list(_COLUMNS),
    )  # fmt: skip


def delete_signal(client: Client, name: str, author: str = "") -> bool:
    """Mark a signal deleted by storing a tombstone version; history stays queryable."""
    current = [r for r in latest_signals(client) if r.name == name]
    if not current:
        return False
    last = current[0]
    client.insert(
        "signals",
        [
            [
                name,
                last.version + 1,
                last.kind,
                last.embedder_id,
                last.definition,
                "",
                author,
                1,
                0,
                "",
            ]
        ],
        column_names=list(_COLUMNS),
    )
    return True


def signal_version(client: Client, name: str, version: int) -> SignalRecord | None:
    """One stored version of a signal (a tombstone has an empty ``fitted``); None if absent."""
    rows = client.query(
        f"SELECT {_SELECTED} FROM signals FINAL "  # noqa: S608 - fixed column list
        "WHERE name = {name:String} AND version = {version:UInt32}",
        parameters={"name": name, "version": version},
    ).result_rows
    return _record(rows[0]) if rows else None


def latest_signals(client: Client) -> list[SignalRecord]:
    """The newest version of every signal that is not deleted, by name."""
    rows = client.query(
        f"""
        SELECT {_SELECTED}
        FROM signals FINAL
        WHERE (name, version) IN (SELECT name, max(version) FROM signals GROUP BY name)
          AND deleted = 0
        ORDER BY name
        """  # noqa: S608 - fixed column list
    ).result_rows
    return [_record(r) for r in rows]


_SELECTED = (
    "name, version, kind, embedder_id, definition, fitted, author, created_at, degenerate, "
    "degenerate_reason"
)


def _record(r: Sequence[Any]) -> SignalRecord:
    return SignalRecord(
        name=str(r[0]),
        version=int(r[1]),
        kind=str(r[2]),
        embedder_id=str(r[3]),
        definition=str(r[4]),
        fitted=str(r[5]),
        author=str(r[6]),
        created_at=r[7] if r[7].tzinfo else r[7].replace(tzinfo=UTC),
        degenerate=bool(r[8]),
        degenerate_reason=str(r[9]),
    )
