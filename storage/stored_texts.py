"""Reading stored texts in chunks: the back-fill of signals that read the text itself.

A ``pattern`` or ``pii`` signal scores ``prompt_text`` / ``output_text`` of ``events``, not an
embedding; its back-fill pages through them here as an embedding signal's pages through
:mod:`storage.embeddings`. It sees what was stored: a text that was not stored (empty) is not
scored, and neither is an event the worker's sampler left out (``inclusion_probability`` below
1 and no embedding): scoring it would count it as drawn, and weight it as if it stood for others.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from storage.rows import TEXT_COLUMNS

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["StoredText", "count_texts", "iter_texts"]


@dataclass(frozen=True)
class StoredText:
    event_id: str
    timestamp: datetime
    model: str
    model_version: str
    text: str


def _conditions(
    client: Client, field: str, since: datetime | None, until: datetime | None
) -> tuple[str, list[str], dict[str, Any]]:
    column = TEXT_COLUMNS.get(field)
    if column is None:
        raise ValueError(f"{field!r} is not a stored text field; known: {sorted(TEXT_COLUMNS)}")
    where = [f"{column} != ''"]
    params: dict[str, Any] = {}
    if since is not None:
        where.append("timestamp >= {since:DateTime64(3, 'UTC')}")
        params["since"] = since.astimezone(UTC)
    if until is not None:
        where.append("timestamp < {until:DateTime64(3, 'UTC')}")
        params["until"] = until.astimezone(UTC)
    # Only fixed fragments are formatted; values are bound parameters. The embeddings are
    # looked up only when the span holds events a sampler left out (none without sampling).
    span = " AND ".join(where[1:]) or "1"
    sampled = client.query(
        f"SELECT count() FROM (SELECT 1 FROM events WHERE inclusion_probability < 1 "  # noqa: S608
        f"AND {span} LIMIT 1)",
        parameters=params,
    ).result_rows[0][0]
    if sampled:
        where.append(
            f"(inclusion_probability >= 1 OR event_id IN (SELECT event_id FROM embeddings "  # noqa: S608
            f"WHERE {span}))"
        )
    return column, where, params


def count_texts(
    client: Client, field: str, since: datetime | None = None, until: datetime | None = None
) -> int:
    """How many stored events have a non-empty ``field`` text (for progress bars)."""
    _, where, params = _conditions(client, field, since, until)
    sql = f"SELECT uniqExact(event_id) FROM events FINAL WHERE {' AND '.join(where)}"  # noqa: S608
    return int(client.query(sql, parameters=params).result_rows[0][0])


def iter_texts(
    client: Client,
    field: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    skip_scored: tuple[str, int] | None = None,
    chunk: int = 5_000,
) -> Iterator[list[StoredText]]:
    """Stored texts of ``field`` in chunks, paged by event id (bounded memory).

    ``skip_scored=(signal, version)`` leaves out events that already have that score.
    """
    column, where, params = _conditions(client, field, since, until)
    where.append("event_id > {after:String}")
    params["chunk"] = chunk
    if skip_scored is not None:
        where.append(
            "event_id NOT IN (SELECT event_id FROM signal_scores "
            "WHERE signal = {signal:String} AND signal_version = {version:UInt32})"
        )
        params["signal"], params["version"] = skip_scored
    # Only fixed fragments (and a column name from TEXT_COLUMNS) are joined in; every value is
    # a bound parameter.
    sql = f"""
        SELECT event_id, timestamp, model, model_version, {column}
        FROM events FINAL WHERE {" AND ".join(where)}
        ORDER BY event_id LIMIT {{chunk:UInt32}}
    """  # noqa: S608
    after = ""
    while True:
        rows = client.query(sql, parameters={**params, "after": after}).result_rows
        if not rows:
            return
        yield [StoredText(str(r[0]), r[1].astimezone(UTC), str(r[2]), str(r[3]), str(r[4]))
               for r in rows]  # fmt: skip
        after = str(rows[-1][0])
