"""Erasure: delete every per-event row that belongs to one user or one session.

A subject's events are found by ``events.user_id`` / ``events.session_id`` (the stored form:
the pseudonym when ids are pseudonymised). Everything derived from those events goes with
them: embeddings and window vectors, signal scores, feedback on them (and feedback the subject
gave), audit samples and labels, discovery clusters that show one of them as an example, and
embedding-cache entries of their content (their keys are computed by the caller, who knows the
key function). The per-minute aggregate tables keep their counts: they hold uniqExact states
of event ids, per minute, model and slice, no content and no user id, and a rate must not
change when an event's content is erased. Dead letters hold no user id nor content (topic,
offset, reason, size) and are not touched.

Deletes are ``ALTER TABLE ... DELETE`` mutations waited for (``mutations_sync = 2``). Every
erasure is logged in ``erasures`` with the counts and the caller's request reference, never
with the id. Running it again deletes nothing and logs zeros.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from storage.cluster import render

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["ERASED_TABLES", "Erasure", "SubjectEvents", "erase_subject", "subject_events"]

Subject = Literal["user_id", "session_id"]

_MINE = "event_id IN {ids:Array(String)}"
ERASED_TABLES: dict[str, str] = {
    "embeddings": _MINE,
    "signal_scores": _MINE,
    "feedback": _MINE,  # and, when erasing a user, the feedback that user gave
    "audit_samples": _MINE,
    "audit_labels": _MINE,
    "discovered_clusters": "hasAny(examples, {ids:Array(String)}) OR "
    "hasAny(positives, {ids:Array(String)}) OR hasAny(negatives, {ids:Array(String)})",
    "embedding_cache": "key IN {keys:Array(String)}",
    "events": _MINE,
}
"""Table → which of its rows belong to the subject; events last (the others are found by it)."""


@dataclass(frozen=True)
class SubjectEvents:
    """A subject's stored events: ids, and per event its stored texts and the embedders that
    embedded each field (for the caller to compute embedding-cache keys)."""

    event_ids: tuple[str, ...]
    texts: tuple[tuple[str, str, str], ...]  # (event_id, field, text)
    embedders: Mapping[str, tuple[str, ...]]  # field -> embedder ids


@dataclass(frozen=True)
class Erasure:
    """Rows deleted per table."""

    rows: Mapping[str, int]

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def subject_events(client: Client, column: Subject, subject: str) -> SubjectEvents:
    """The events of one user or session and what the cache keys of their content need."""
    if column not in ("user_id", "session_id"):
        raise ValueError(f"cannot erase by {column!r}")
    rows = client.query(
        f"SELECT DISTINCT event_id, prompt_text, output_text FROM events WHERE {column} = "  # noqa: S608 - column checked above
        "{subject:String}",
        parameters={"subject": subject},
    ).result_rows
    ids = tuple(sorted({str(r[0]) for r in rows}))
    texts = tuple(
        (str(r[0]), field, str(text))
        for r in rows
        for field, text in (("prompt.text", r[1]), ("output.text", r[2]))
        if text
    )
    embedders: dict[str, set[str]] = {}
    if ids:
        for field, embedder_id in client.query(
            "SELECT DISTINCT field, embedder_id FROM embeddings "
            "WHERE event_id IN {ids:Array(String)}",
            parameters={"ids": list(ids)},
        ).result_rows:
            embedders.setdefault(str(field), set()).add(str(embedder_id))
    return SubjectEvents(ids, texts, {k: tuple(sorted(v)) for k, v in embedders.items()})


def erase_subject(
    client: Client,
    column: Subject,
    subject: str,
    cache_keys: Callable[[SubjectEvents], Sequence[str]] | None = None,
    *,
    request: str = "",
    requested_by: str = "",
    cluster: str | None = None,
) -> Erasure:
    """Delete the subject's rows from every table of :data:`ERASED_TABLES`, log the erasure,
    and return the rows deleted per table. ``cache_keys`` gives the embedding-cache keys of the
    subject's stored content (the key function is the caller's). On a ``cluster`` the counts
    are read through the Distributed tables and the deletes run on every shard's local table
    (``ON CLUSTER``)."""
    found = subject_events(client, column, subject)
    keys = list(cache_keys(found)) if cache_keys is not None else []
    parameters = {"ids": list(found.event_ids), "subject": subject, "keys": keys}
    counts: dict[str, int] = {}
    for table, where in ERASED_TABLES.items():
        if table == "feedback" and column == "user_id":
            where = f"{where} OR user_id = {{subject:String}}"
        if (
            (table == "feedback" and column == "user_id")
            or found.event_ids
            or (table == "embedding_cache" and keys)
        ):
            # table names and conditions are constants of this module; values are bound
            [(count,)] = client.query(f"SELECT count() FROM {table} WHERE {where}",  # noqa: S608
                                      parameters=parameters).result_rows  # fmt: skip
        else:
            count = 0
        counts[table] = int(count)
        if count:
            for statement in render(f"ALTER TABLE {table} DELETE WHERE {where}", cluster):
                client.command(statement, parameters=parameters, settings={"mutations_sync": 2})
    client.insert(
        "erasures",
        [[request, column, requested_by, datetime.now(UTC), list(counts), list(counts.values())]],
        column_names=["request", "subject_kind", "requested_by", "erased_at", "tables", "rows"],
    )
    return Erasure(counts)
