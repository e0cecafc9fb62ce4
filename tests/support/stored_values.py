"""Everything a database stores, as text: what privacy tests search for planted values."""

from __future__ import annotations

from typing import Any


def every_stored_value(client: Any) -> str:
    """Every row of every table of the database, as text (aggregate states, which hold hashes
    of event ids, are left out: ClickHouse cannot read them back as values)."""
    columns: dict[str, list[str]] = {}
    for table, column in client.query(
        "SELECT c.table, c.name FROM system.columns AS c INNER JOIN system.tables AS t "
        "ON c.database = t.database AND c.table = t.name WHERE c.database = currentDatabase() "
        "AND t.engine NOT IN ('MaterializedView', 'View') "
        "AND c.type NOT LIKE 'AggregateFunction%'"
    ).result_rows:
        columns.setdefault(table, []).append(column)
    dumped = []
    for table, names in columns.items():
        # names come from system.columns, not from a user
        listed = ", ".join(f"`{n}`" for n in names)
        rows = client.query(f"SELECT {listed} FROM `{table}`").result_rows
        dumped.append(f"{table}: {rows!r}")
    return "\n".join(dumped)
