"""Model releases: recorded by hand (``telltale releases add``) or when a version first appears."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["Release", "add_release", "list_releases"]


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
