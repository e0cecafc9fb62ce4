"""Retention: how long each table that holds per-event data keeps its rows, as ClickHouse TTLs.

:func:`apply_retention` sets ``TTL toDateTime(<time column>) + INTERVAL n DAY`` on each table it
is given (``0`` or ``None``: ``REMOVE TTL``, rows are kept for ever). ClickHouse deletes expired
rows when it merges parts, in the background; ``OPTIMIZE TABLE t FINAL`` forces it.

A table whose TTL already says what is asked is left alone, so running ``telltale migrate``
again with the same settings issues no ``ALTER`` (on a server, modifying a TTL starts a mutation
that re-reads every part to apply it to old rows: worth it when the retention changed, not on
every start). A TTL counts from the row's own time (an event's ``timestamp``, not when it was
stored): replaying logs older than a table's retention stores them only until the next merge.

The per-minute aggregates (``failure_rates_1m``, ``failure_rates_by_slice_1m``, ``events_1m``,
``usage_1m``) get no TTL: materialized views fill them on insert, deleting an event later does
not change them, and their ``uniqExact`` states keep 128-bit hashes of event ids, not the ids.
They are the history the dashboards and detectors read after the events are gone.

On a cluster the TTL goes on the replicated ``t_local`` shards (``ON CLUSTER``), which hold the
rows; the ``Distributed`` table ``t`` stores nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from storage.cluster import render
from storage.errors import MigrationError

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["MAX_RETENTION_DAYS", "RETENTION_COLUMNS", "apply_retention", "current_retention"]

logger = logging.getLogger(__name__)

RETENTION_COLUMNS: Mapping[str, str] = {
    "events": "timestamp",
    "embeddings": "timestamp",
    "embedding_cache": "created_at",
    "signal_scores": "timestamp",
    "dead_letters": "failed_at",
    "feedback": "timestamp",
    "audit_samples": "drawn_at",
    "audit_labels": "labelled_at",
    "discovered_clusters": "run_at",
}
"""Each table that holds per-event data, and the time its rows' age is counted from."""

MAX_RETENTION_DAYS = 36_500
"""A hundred years: a longer TTL is a mistake (``0`` keeps rows for ever)."""

_OURS = re.compile(r"\bTTL toDateTime\((?P<column>\w+)\) \+ toIntervalDay\((?P<days>\d+)\)")
_ANY_TTL = re.compile(r"\bTTL\b")


def _stored_name(table: str, cluster: str | None) -> str:
    return table if cluster is None else f"{table}_local"


def current_retention(
    client: Client, tables: list[str] | None = None, cluster: str | None = None
) -> dict[str, int | None]:
    """Days each table keeps now (``None``: no TTL, or one telltale did not set), per table of
    ``tables`` (default: every table of :data:`RETENTION_COLUMNS`) that exists."""
    wanted = list(RETENTION_COLUMNS) if tables is None else tables
    names = {_stored_name(t, cluster): t for t in wanted}
    rows = client.query(
        "SELECT name, engine_full FROM system.tables "
        "WHERE database = currentDatabase() AND name IN {names:Array(String)}",
        parameters={"names": list(names)},
    ).result_rows
    found: dict[str, int | None] = {}
    for name, engine in rows:
        table = names[str(name)]
        ours = _OURS.search(str(engine))
        matches = ours is not None and ours["column"] == RETENTION_COLUMNS.get(table)
        found[table] = int(ours["days"]) if ours is not None and matches else None
    return {t: found[t] for t in wanted if t in found}


def _has_ttl(client: Client, name: str) -> bool:
    rows = client.query(
        "SELECT engine_full FROM system.tables "
        "WHERE database = currentDatabase() AND name = {name:String}",
        parameters={"name": name},
    ).result_rows
    return bool(rows) and _ANY_TTL.search(str(rows[0][0])) is not None


def _checked_days(table: str, days: int | None) -> int:
    if table not in RETENTION_COLUMNS:
        known = ", ".join(RETENTION_COLUMNS)
        raise ValueError(f"no retention for table {table!r} (tables with one: {known})")
    if days is None:
        return 0
    if isinstance(days, bool) or not isinstance(days, int):
        raise ValueError(f"retention of {table} must be a whole number of days, not {days!r}")
    if not 0 <= days <= MAX_RETENTION_DAYS:
        raise ValueError(f"retention of {table} must be 0..{MAX_RETENTION_DAYS} days, not {days}")
    return days


def apply_retention(
    client: Client, days: Mapping[str, int | None], cluster: str | None = None
) -> dict[str, int | None]:
    """Make each table of ``days`` keep rows that many days (``0``/``None``: for ever).

    Returns the tables whose TTL changed now, with their new days (``None``: removed); empty
    when every TTL already matched. Tables not named in ``days`` are not touched. Raises
    ``ValueError`` for a table without a retention or a bad number of days (before any change),
    :class:`~storage.errors.MigrationError` when a table is missing or an ``ALTER`` fails.
    """
    wanted = {table: _checked_days(table, n) for table, n in days.items()}
    current = current_retention(client, list(wanted), cluster)
    changed: dict[str, int | None] = {}
    for table, n in wanted.items():
        if table not in current:
            raise MigrationError(f"retention: table {_stored_name(table, cluster)} does not exist")
        name = _stored_name(table, cluster)
        if n == 0:
            if current[table] is None and not _has_ttl(client, name):
                continue
            action = "REMOVE TTL"
        elif current[table] == n:
            continue
        else:
            action = f"MODIFY TTL toDateTime({RETENTION_COLUMNS[table]}) + INTERVAL {n} DAY"
        try:
            for statement in render(f"ALTER TABLE {table} {action}", cluster):
                client.command(statement)
        except Exception as exc:
            raise MigrationError(f"retention of {table} ({action}) failed: {exc}") from exc
        changed[table] = n or None
        logger.info("retention of %s: %s", table, f"{n} days" if n else "kept for ever")
    return changed
