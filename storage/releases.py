"""Model releases: recorded by hand (``telltale releases add``) or when a version first appears."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["Release", "add_release", "list_releases", "unreleased_versions"]


@dataclass(frozen=True)
class Release:
    model: str
    model_version: str
    released_at: datetime
    source: str
    note: str


def add_release(
    client: Client,
    model: str,
    model_version: str,
    released_at: datetime,
    source: Literal["manual", "auto"] = "manual",
    note: str = "",
) -> None:
    """Record a release; recording the same (model, version) again keeps the newest record."""
    if released_at.tzinfo is None:
        raise ValueError("released_at must be timezone-aware")
    client.insert(
        "releases",
        [[model, model_version, released_at.astimezone(UTC), source, note]],
        column_names=["model", "model_version", "released_at", "source", "note"],
    )


def list_releases(client: Client, model: str | None = None) -> list[Release]:
    params = {"model": model or ""}
    rows = client.query(
        """
        SELECT model, model_version, released_at, source, note FROM releases FINAL
        WHERE {model:String} = '' OR model = {model:String}
        ORDER BY model, released_at
        """,
        parameters=params,
    ).result_rows
    return [Release(str(r[0]), str(r[1]), r[2].astimezone(UTC), str(r[3]), str(r[4])) for r in rows]


def unreleased_versions(client: Client) -> list[Release]:
    """Versions seen in ``events`` without a ``releases`` row, each at its first event's time.

    Candidates come from the small per-minute ``events_1m`` table; the exact first timestamp is
    then read from ``events`` inside that version's first minute only, so this stays cheap on a
    large ``events`` table. The returned records have ``source='auto'``; nothing is written.
    """
    candidates = client.query(
        """
        SELECT model, model_version, min(minute) FROM events_1m
        WHERE (model, model_version) NOT IN (SELECT model, model_version FROM releases FINAL)
        GROUP BY model, model_version
        ORDER BY model, model_version
        """
    ).result_rows
    found = []
    for model, version, minute in candidates:
        first = client.query(
            """
            SELECT min(timestamp) FROM events
            WHERE model = {model:String} AND model_version = {version:String}
              AND timestamp >= {minute:DateTime64(3, 'UTC')}
              AND timestamp < {minute:DateTime64(3, 'UTC')} + INTERVAL 1 MINUTE
            """,
            parameters={"model": model, "version": version, "minute": minute.astimezone(UTC)},
        ).result_rows[0][0]
        # min() over no rows is the epoch, not NULL: fall back to the minute itself.
        at = first if first is not None and first >= minute else minute
        at = at.astimezone(UTC)
        found.append(Release(str(model), str(version), at, "auto", "first event of the version"))
    return found
