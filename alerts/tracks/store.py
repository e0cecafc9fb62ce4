"""Where detection rows and drift looks live: ClickHouse for the monitor, memory for the
backtest (which must not write)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from storage import (
    DetectionRow,
    DriftWindowRow,
    detection_watermarks,
    drift_windows_after,
    insert_detections,
    insert_drift_windows,
    last_drift_window_ends,
    pending_detections,
)

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["ClickHouseStore", "DetectionStore", "MemoryStore", "SeriesId"]

SeriesId = tuple[str, str]  # (detector, key)


class DetectionStore(Protocol):
    """Where detection rows and drift windows live."""

    def load_pending(self) -> list[DetectionRow]:
        """Open detections and resolved ones not yet reported as resolved."""
        ...

    def load_watermarks(self) -> dict[SeriesId, datetime]: ...

    def save(self, rows: Sequence[DetectionRow]) -> None: ...

    def save_drift_windows(self, rows: Sequence[DriftWindowRow]) -> None: ...

    def drift_resume_points(self) -> dict[str, datetime]:
        """Per model, the end of the newest drift window already tested."""
        ...

    def drift_windows_after(self, model: str, after: datetime) -> list[DriftWindowRow]:
        """The model's stored drift looks ending after ``after``, oldest first."""
        ...


class ClickHouseStore:
    """The ``detections`` and ``drift_windows`` tables."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def load_pending(self) -> list[DetectionRow]:
        return pending_detections(self._client)

    def load_watermarks(self) -> dict[SeriesId, datetime]:
        return detection_watermarks(self._client)

    def save(self, rows: Sequence[DetectionRow]) -> None:
        insert_detections(self._client, rows)

    def save_drift_windows(self, rows: Sequence[DriftWindowRow]) -> None:
        insert_drift_windows(self._client, rows)

    def drift_resume_points(self) -> dict[str, datetime]:
        return last_drift_window_ends(self._client)

    def drift_windows_after(self, model: str, after: datetime) -> list[DriftWindowRow]:
        return drift_windows_after(self._client, model, after)


class MemoryStore:
    """Rows kept in memory: the backtest's store, which must leave the database untouched."""

    def __init__(self) -> None:
        self.rows: dict[str, DetectionRow] = {}
        self.drift_windows: list[DriftWindowRow] = []

    def load_pending(self) -> list[DetectionRow]:
        return [r for r in self.rows.values() if r.state == "firing" or r.notified != "resolved"]

    def load_watermarks(self) -> dict[SeriesId, datetime]:
        marks: dict[SeriesId, datetime] = {}
        for r in self.rows.values():
            covered = max(r.opened_at, r.resolved_at or r.opened_at)
            sid = (r.detector, r.key)
            marks[sid] = max(covered, marks.get(sid, covered))
        return marks

    def save(self, rows: Sequence[DetectionRow]) -> None:
        self.rows.update((r.detection_id, r) for r in rows)

    def save_drift_windows(self, rows: Sequence[DriftWindowRow]) -> None:
        self.drift_windows.extend(rows)

    def drift_resume_points(self) -> dict[str, datetime]:
        points: dict[str, datetime] = {}
        for w in self.drift_windows:
            points[w.model] = max(w.window_end, points.get(w.model, w.window_end))
        return points

    def drift_windows_after(self, model: str, after: datetime) -> list[DriftWindowRow]:
        latest = {w.window_end: w for w in self.drift_windows if w.model == model}
        return [latest[end] for end in sorted(latest) if end > after]
