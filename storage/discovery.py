"""The ``discovered_clusters`` table: clusters of the latest ``telltale discover`` run per model."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["ClusterRow", "cluster_signal_scores", "load_cluster", "save_clusters"]


@dataclass(frozen=True)
class ClusterRow:
    cluster_id: str
    run_at: datetime
    model: str
    field: str
    embedder_id: str
    rank: int
    size: int
    recent_share: float
    reference_share: float
    growth: float
    distance: float
    score: float
    examples: tuple[str, ...]
    example_texts: tuple[str, ...]
    positives: tuple[str, ...]
    negatives: tuple[str, ...]
    signal_scores: dict[str, dict[str, float]]
    window_start: datetime
    window_end: datetime

    COLUMNS = (
        "cluster_id", "run_at", "model", "field", "embedder_id", "rank", "size", "recent_share",
        "reference_share", "growth", "distance", "score", "examples", "example_texts",
        "positives", "negatives", "signal_scores", "window_start", "window_end",
    )  # fmt: skip

    def values(self) -> list[object]:
        out: list[object] = []
        for name in self.COLUMNS:
            value = getattr(self, name)
            if name == "signal_scores":
                value = json.dumps(value, sort_keys=True)
            elif isinstance(value, tuple):
                value = list(value)
            out.append(value)
        return out


def save_clusters(client: Client, rows: Sequence[ClusterRow]) -> None:
    if rows:
        client.insert(
            "discovered_clusters",
            [r.values() for r in rows],
            column_names=list(ClusterRow.COLUMNS),
        )


def load_cluster(client: Client, cluster_id: str) -> ClusterRow | None:
    """One stored cluster by id, or ``None``."""
    rows = client.query(
        f"SELECT {', '.join(ClusterRow.COLUMNS)} FROM discovered_clusters FINAL "  # noqa: S608
        "WHERE cluster_id = {id:String} LIMIT 1",
        parameters={"id": cluster_id},
    ).result_rows
    if not rows:
        return None
    values: dict[str, Any] = dict(zip(ClusterRow.COLUMNS, rows[0], strict=True))
    for name in ("examples", "example_texts", "positives", "negatives"):
        values[name] = tuple(str(v) for v in values[name])
    values["signal_scores"] = json.loads(values["signal_scores"] or "{}")
    for name in ("run_at", "window_start", "window_end"):
        values[name] = values[name].astimezone(UTC)
    return ClusterRow(**values)


def cluster_signal_scores(client: Client, event_ids: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per signal, the mean score and flagged share over ``event_ids`` (newest versions)."""
    rows = client.query(
        """
        SELECT signal, avg(score), avg(flagged), count() FROM (
            SELECT signal, event_id, argMax(score, signal_version) AS score,
                   argMax(flagged, signal_version) AS flagged
            FROM signal_scores FINAL
            WHERE event_id IN {ids:Array(String)}
            GROUP BY signal, event_id
        ) GROUP BY signal ORDER BY signal
        """,
        parameters={"ids": list(event_ids)},
    ).result_rows
    return {
        str(r[0]): {"mean_score": float(r[1]), "flagged_share": float(r[2]), "events": int(r[3])}
        for r in rows
    }
