"""Apply the schema migrations that a database has not seen yet (``telltale migrate``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from storage.cluster import render
from storage.errors import MigrationError
from storage.retention import apply_retention
from storage.schema import MIGRATIONS, Migration

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["applied_versions", "migrate"]

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    UInt32,
    name       String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')
) ENGINE = ReplacingMergeTree(applied_at)
ORDER BY version
"""


def applied_versions(client: Client, cluster: str | None = None) -> set[int]:
    for statement in render(_LEDGER, cluster):
        client.command(statement)
    rows = client.query("SELECT version FROM schema_migrations FINAL").result_rows
    return {int(row[0]) for row in rows}


def migrate(
    client: Client,
    migrations: tuple[Migration, ...] = MIGRATIONS,
    cluster: str | None = None,
    retention: Mapping[str, int | None] | None = None,
) -> list[Migration]:
    """Bring the schema up to date; return the migrations applied now (empty when current).

    Every statement is ``IF NOT EXISTS``, so a migration interrupted half-way is re-run safely.
    With ``cluster``, tables are created as replicated shards behind Distributed tables.
    With ``retention`` (table -> days, ``0``/``None`` for ever), each named table's TTL is then
    set to it (:func:`storage.retention.apply_retention`: a TTL that already matches is left
    alone); without it no TTL is touched.
    """
    done = applied_versions(client, cluster)
    applied = []
    for migration in sorted(migrations, key=lambda m: m.version):
        if migration.version in done:
            continue
        try:
            for statement in migration.statements:
                for rendered in render(statement, cluster):
                    client.command(rendered)
        except Exception as exc:
            raise MigrationError(
                f"migration {migration.version} ({migration.name}) failed: {exc}"
            ) from exc
        client.insert(
            "schema_migrations",
            [[migration.version, migration.name]],
            column_names=["version", "name"],
        )
        applied.append(migration)
    if retention is not None:
        apply_retention(client, retention, cluster)
    return applied
