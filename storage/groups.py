"""The ``signal_groups`` table: which signal names are groups, their members and severity."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["GroupRow", "backfill_group", "load_group_rows", "save_group_rows"]


@dataclass(frozen=True)
class GroupRow:
    name: str
    members: tuple[str, ...]
    severity: str
    description: str = ""


def save_group_rows(client: Client, rows: Sequence[GroupRow]) -> None:
    """Record the current definitions (idempotent: unchanged definitions are not re-written)."""
    stored = {(g.name, g.members, g.severity, g.description) for g in load_group_rows(client)}
    fresh = [r for r in rows if (r.name, r.members, r.severity, r.description) not in stored]
    if fresh:
        client.insert(
            "signal_groups",
            [[r.name, list(r.members), r.severity, r.description] for r in fresh],
            column_names=["name", "members", "severity", "description"],
        )


def load_group_rows(client: Client) -> list[GroupRow]:
    rows = client.query(
        "SELECT name, members, severity, description FROM signal_groups FINAL ORDER BY name"
    ).result_rows
    return [GroupRow(str(r[0]), tuple(str(m) for m in r[1]), str(r[2]), str(r[3])) for r in rows]


def backfill_group(client: Client, name: str, members: Sequence[str], version: int) -> int:
    """Write the group's score rows for stored events from its members' stored scores.

    One row per event that any member scored: the largest member score, flagged if any member
    flagged, with the slice values and inclusion probability of the member rows. Idempotent
    (``ReplacingMergeTree`` on ``(signal, signal_version, event_id)``; the rate views count
    distinct events). Returns the number of events written.
    """
    params = {"name": name, "members": list(members), "version": version}
    client.command(
        """
        INSERT INTO signal_scores
            (event_id, signal, signal_version, timestamp, model, model_version, score, flagged,
             slices, inclusion_probability)
        SELECT event_id, {name:String}, {version:UInt32}, any(timestamp), any(model),
               any(model_version), max(score), max(flagged), any(slices),
               min(inclusion_probability)
        FROM signal_scores FINAL
        WHERE signal IN {members:Array(String)}
        GROUP BY event_id
        """,
        parameters=params,
    )
    rows = client.query(
        "SELECT uniqExact(event_id) FROM signal_scores "
        "WHERE signal = {name:String} AND signal_version = {version:UInt32}",
        parameters=params,
    ).result_rows
    return int(rows[0][0])
