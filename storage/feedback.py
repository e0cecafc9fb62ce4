"""Delayed user feedback in ClickHouse, and its join with events into a failure-rate series.

Feedback and events arrive in either order. Each side, once written, joins what the other side
already holds: :func:`record_feedback` after inserting feedback, :func:`join_feedback` after the
writer inserted events. The join writes one ``signal_scores`` row per event with feedback,
under the built-in pseudo-signal :data:`NEGATIVE_FEEDBACK` (score: the lowest value given,
flagged when it is negative). So the per-minute failure-rate view, ``telltale rates``, the
dashboards and the release-spike and degradation tests all see the negative-feedback rate per
model and version with no code of their own, counted once per event however often either
side is re-sent (``uniqExact`` states, ``ReplacingMergeTree``).

The rate is over events *with feedback*: an event nobody judged is in neither numerator nor
denominator (counting it as "not negative" would make the rate depend on how many users
bother to click).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from storage.errors import classify

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = [
    "NEGATIVE_FEEDBACK",
    "FeedbackRow",
    "FeedbackSummary",
    "feedback_summary",
    "join_feedback",
    "lowest_feedback",
    "negatively_rated",
    "record_feedback",
]

NEGATIVE_FEEDBACK = "feedback.negative"
"""The pseudo-signal under which negative feedback is counted (version 1, never trained)."""

_ID_CHUNK = 5_000


@dataclass(frozen=True)
class FeedbackRow:
    feedback_id: str
    event_id: str
    value: int  # -1, 0, +1
    rating: float | None
    kind: str
    user_id: str
    timestamp: datetime
    comment: str = ""

    COLUMNS = (
        "feedback_id", "event_id", "value", "rating", "kind", "user_id", "timestamp", "comment",
    )  # fmt: skip

    def values(self) -> list[object]:
        return [getattr(self, name) for name in self.COLUMNS[:-2]] + [
            self.timestamp.astimezone(UTC), self.comment
        ]  # fmt: skip


def record_feedback(client: Client, rows: Sequence[FeedbackRow]) -> int:
    """Store ``rows`` (idempotent on feedback id) and join those whose event is stored.

    Returns how many rows were given. Raises the typed error of the failure
    (:func:`storage.errors.classify`): the caller retries the same rows when storage is
    unavailable (harmless), narrows them down when the database refuses some, and stops when
    it is misconfigured (retrying either of those forever would stall the topic).
    """
    if not rows:
        return 0
    try:
        client.insert(
            "feedback", [r.values() for r in rows], column_names=list(FeedbackRow.COLUMNS)
        )
    except Exception as exc:
        raise classify(exc, f"insert of {len(rows)} feedback records") from exc
    join_feedback(client, [r.event_id for r in rows])
    return len(rows)


_JOIN = f"""
INSERT INTO signal_scores
    (event_id, signal, signal_version, timestamp, model, model_version, score, flagged)
SELECT e.event_id, '{NEGATIVE_FEEDBACK}', 1, e.at, e.m, e.mv, toFloat32(f.low), toUInt8(f.low < 0)
FROM (
    SELECT event_id, any(timestamp) AS at, any(model) AS m, any(model_version) AS mv
    FROM events WHERE event_id IN {{ids:Array(String)}}
        AND toYYYYMM(timestamp) IN {{months:Array(UInt32)}}
    GROUP BY event_id
) AS e
INNER JOIN (
    SELECT event_id, min(value) AS low
    FROM feedback FINAL WHERE event_id IN {{ids:Array(String)}} GROUP BY event_id
) AS f ON e.event_id = f.event_id
"""  # noqa: S608 - the only formatted value is a module constant; ids are bound parameters


def join_feedback(client: Client, event_ids: Sequence[str]) -> None:
    """Write the feedback series rows of ``event_ids`` that have both an event and feedback.

    The rows go to ``signal_scores``, partitioned by the events' month: they are inserted a
    group of months at a time, so one insert never touches more partitions than
    ``max_partitions_per_insert_block`` (feedback for years of events would otherwise be
    refused with a transient error, and retried forever).
    """
    ids = list(dict.fromkeys(event_ids))
    for start in range(0, len(ids), _ID_CHUNK):
        chunk = ids[start : start + _ID_CHUNK]
        try:
            months = [
                int(r[0]) for r in client.query(_MONTHS, parameters={"ids": chunk}).result_rows
            ]
            limit = _partition_limit(client) if len(months) > 1 else 1
            for first in range(0, len(months), limit):  # no months: none of the events stored
                group = months[first : first + limit]
                client.command(_JOIN, parameters={"ids": chunk, "months": group})
        except Exception as exc:
            raise classify(exc, "joining feedback") from exc


_MONTHS = "SELECT DISTINCT toYYYYMM(timestamp) FROM events WHERE event_id IN {ids:Array(String)}"


def _partition_limit(client: Client) -> int:
    """The server's ``max_partitions_per_insert_block``; 0 (no limit) reads as one block."""
    rows = client.query(
        "SELECT value FROM system.settings WHERE name = 'max_partitions_per_insert_block'"
    ).result_rows
    limit = int(rows[0][0]) if rows else 100
    return limit if limit > 0 else 1_000_000  # more months than there are


def lowest_feedback(client: Client, event_ids: Sequence[str]) -> dict[str, int]:
    """The lowest feedback value given to each of ``event_ids`` that has feedback."""
    if not event_ids:
        return {}
    rows = client.query(
        "SELECT event_id, min(value) FROM feedback FINAL "
        "WHERE event_id IN {ids:Array(String)} GROUP BY event_id",
        parameters={"ids": list(event_ids)},
    ).result_rows
    return {str(r[0]): int(r[1]) for r in rows}


def negatively_rated(
    client: Client, *, model: str | None = None, since: datetime | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Stored events with negative feedback, newest first: candidate positives for a signal."""
    where = ["f.low < 0"]
    params: dict[str, Any] = {"limit": limit}
    if model is not None:
        where.append("e.model = {model:String}")
        params["model"] = model
    if since is not None:
        where.append("e.timestamp >= {since:DateTime64(3, 'UTC')}")
        params["since"] = since.astimezone(UTC)
    rows = client.query(
        f"""
        SELECT e.event_id, e.timestamp, e.model, e.model_version, e.prompt_text, e.output_text,
               e.output_image, f.low, f.n, f.comments
        FROM (SELECT event_id, min(value) AS low, count() AS n,
                     groupArray(10)(comment) AS comments
              FROM feedback FINAL GROUP BY event_id) AS f
        INNER JOIN (SELECT * FROM events FINAL) AS e ON e.event_id = f.event_id
        WHERE {" AND ".join(where)}
        ORDER BY f.n DESC, e.timestamp DESC LIMIT {{limit:UInt32}}
        """,  # noqa: S608 - fixed fragments only; values are bound parameters
        parameters=params,
    ).result_rows
    return [
        {
            "event_id": r[0], "timestamp": r[1].astimezone(UTC).isoformat(), "model": r[2],
            "model_version": r[3], "prompt": r[4], "output": r[5], "image": r[6],
            "value": int(r[7]), "feedback_count": int(r[8]),
            "comments": [c for c in r[9] if c],
        }
        for r in rows
    ]  # fmt: skip


@dataclass(frozen=True)
class FeedbackSummary:
    app: str
    model: str
    model_version: str
    rated_events: int
    negative_events: int

    @property
    def rate(self) -> float:
        return self.negative_events / self.rated_events if self.rated_events else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "app": self.app, "model": self.model, "model_version": self.model_version,
            "rated_events": self.rated_events, "negative_events": self.negative_events,
            "rate": self.rate,
        }  # fmt: skip


def feedback_summary(
    client: Client, *, since: datetime | None = None, until: datetime | None = None
) -> list[FeedbackSummary]:
    """Negative-feedback rate per app, model and version (events with feedback; pending
    feedback, whose event has not arrived, is not counted)."""
    params: dict[str, Any] = {
        "since": (since or datetime(1970, 1, 1, tzinfo=UTC)).astimezone(UTC),
        "until": (until or datetime(2200, 1, 1, tzinfo=UTC)).astimezone(UTC),
    }
    rows = client.query(
        """
        SELECT e.app, e.model, e.model_version, uniqExact(e.event_id),
               uniqExactIf(e.event_id, f.low < 0)
        FROM (SELECT event_id, min(value) AS low FROM feedback FINAL GROUP BY event_id) AS f
        INNER JOIN (
            SELECT event_id, any(app) AS app, any(model) AS model,
                   any(model_version) AS model_version, any(timestamp) AS timestamp
            FROM events GROUP BY event_id
        ) AS e ON e.event_id = f.event_id
        WHERE e.timestamp >= {since:DateTime64(3, 'UTC')}
          AND e.timestamp < {until:DateTime64(3, 'UTC')}
        GROUP BY e.app, e.model, e.model_version
        ORDER BY e.app, e.model, e.model_version
        """,
        parameters=params,
    ).result_rows
    return [FeedbackSummary(str(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4])) for r in rows]
