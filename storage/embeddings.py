"""Reading stored embeddings: by event id (examples, labeling) and in chunks (back-fill)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from storage.rows import FIELD_COLUMNS

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = [
    "StoredEmbedding",
    "count_embeddings",
    "event_contents",
    "iter_embeddings",
    "sample_embeddings",
    "vectors_by_event",
    "windows_by_event",
]


@dataclass(frozen=True)
class StoredEmbedding:
    event_id: str
    timestamp: datetime
    model: str
    model_version: str
    vector: list[float]
    windows: list[list[float]] = dataclass_field(
        default_factory=list
    )  # empty: one window, the vector

    @property
    def window_vectors(self) -> list[list[float]]:
        """The vectors a signal scores: the windows of a long text, else the vector."""
        return self.windows or [self.vector]


def vectors_by_event(
    client: Client, event_ids: Sequence[str], field: str, embedder_id: str
) -> dict[str, list[float]]:
    """The stored vectors of ``field`` for the given events under one embedder."""
    rows = client.query(
        """
        SELECT event_id, any(vector) FROM embeddings
        WHERE event_id IN {ids:Array(String)} AND field = {field:String}
          AND embedder_id = {embedder:String}
        GROUP BY event_id
        """,
        parameters={"ids": list(event_ids), "field": field, "embedder": embedder_id},
    ).result_rows
    return {str(r[0]): list(r[1]) for r in rows}


def windows_by_event(
    client: Client, event_ids: Sequence[str], field: str, embedder_id: str
) -> dict[str, list[list[float]]]:
    """The stored window vectors of ``field`` (the vector alone for a text of one window)."""
    rows = client.query(
        """
        SELECT event_id, any(vector), any(windows) FROM embeddings
        WHERE event_id IN {ids:Array(String)} AND field = {field:String}
          AND embedder_id = {embedder:String}
        GROUP BY event_id
        """,
        parameters={"ids": list(event_ids), "field": field, "embedder": embedder_id},
    ).result_rows
    return {str(r[0]): [list(w) for w in r[2]] or [list(r[1])] for r in rows}


def event_contents(client: Client, event_ids: Sequence[str], field: str) -> dict[str, str]:
    """The raw content of ``field`` (text or image reference) for the given events, non-empty."""
    column = FIELD_COLUMNS[field]  # a fixed column name, never user input
    rows = client.query(
        f"SELECT event_id, any({column}) FROM events "  # noqa: S608 - fixed column name
        "WHERE event_id IN {ids:Array(String)} GROUP BY event_id",
        parameters={"ids": list(event_ids)},
    ).result_rows
    return {str(r[0]): str(r[1]) for r in rows if r[1]}


def iter_embeddings(
    client: Client,
    field: str,
    embedder_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    skip_scored: tuple[str, int] | None = None,
    chunk: int = 5_000,
) -> Iterator[list[StoredEmbedding]]:
    """Stored embeddings in chunks, paged by event id (keyset pagination: bounded memory).

    ``skip_scored=(signal, version)`` leaves out events that already have that score.
    """
    where = ["field = {field:String}", "embedder_id = {embedder:String}",
             "event_id > {after:String}"]  # fmt: skip
    params: dict[str, Any] = {"field": field, "embedder": embedder_id, "chunk": chunk}
    if since is not None:
        where.append("timestamp >= {since:DateTime64(3, 'UTC')}")
        params["since"] = since.astimezone(UTC)
    if until is not None:
        where.append("timestamp < {until:DateTime64(3, 'UTC')}")
        params["until"] = until.astimezone(UTC)
    if skip_scored is not None:
        where.append(
            "event_id NOT IN (SELECT event_id FROM signal_scores "
            "WHERE signal = {signal:String} AND signal_version = {version:UInt32})"
        )
        params["signal"], params["version"] = skip_scored
    # Only the fixed fragments above are joined in; every value is a bound parameter.
    conditions = " AND ".join(where)
    sql = f"""
        SELECT event_id, any(timestamp), any(model), any(model_version), any(vector),
               any(windows)
        FROM embeddings WHERE {conditions}
        GROUP BY event_id ORDER BY event_id LIMIT {{chunk:UInt32}}
    """  # noqa: S608
    after = ""
    while True:
        rows = client.query(sql, parameters={**params, "after": after}).result_rows
        if not rows:
            return
        yield [
            StoredEmbedding(
                str(r[0]),
                r[1].astimezone(UTC),
                str(r[2]),
                str(r[3]),
                list(r[4]),
                [list(w) for w in r[5]],
            )
            for r in rows
        ]
        after = str(rows[-1][0])


def sample_embeddings(
    client: Client, field: str, embedder_id: str, limit: int
) -> list[StoredEmbedding]:
    """Up to ``limit`` stored embeddings of ``field``, a pseudo-random sample (by id hash)."""
    rows = client.query(
        """
        SELECT event_id, any(timestamp), any(model), any(model_version), any(vector),
               any(windows)
        FROM embeddings WHERE field = {field:String} AND embedder_id = {embedder:String}
        GROUP BY event_id ORDER BY cityHash64(event_id) LIMIT {limit:UInt32}
        """,
        parameters={"field": field, "embedder": embedder_id, "limit": limit},
    ).result_rows
    return [
        StoredEmbedding(
            str(r[0]),
            r[1].astimezone(UTC),
            str(r[2]),
            str(r[3]),
            list(r[4]),
            [list(w) for w in r[5]],
        )
        for r in rows
    ]


def count_embeddings(
    client: Client, field: str, embedder_id: str, since: datetime | None = None,
    until: datetime | None = None,
) -> int:  # fmt: skip
    """How many events have an embedding of ``field`` (for progress bars)."""
    rows = client.query(
        """
        SELECT uniqExact(event_id) FROM embeddings
        WHERE field = {field:String} AND embedder_id = {embedder:String}
          AND timestamp >= {since:DateTime64(3, 'UTC')} AND timestamp < {until:DateTime64(3, 'UTC')}
        """,
        parameters={
            "field": field, "embedder": embedder_id,
            "since": (since or datetime(1970, 1, 1, tzinfo=UTC)).astimezone(UTC),
            "until": (until or datetime(2200, 1, 1, tzinfo=UTC)).astimezone(UTC),
        },
    ).result_rows  # fmt: skip
    return int(rows[0][0])
