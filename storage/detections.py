"""The monitor's state in ClickHouse: detection rows and drift-test windows.

``detections`` is a ``ReplacingMergeTree(updated_at)`` keyed on ``(detector, key, detection_id)``:
a detection is *changed* by inserting a newer row for the same id (new statistics, a
``resolved_at``, a new ``notified`` mark), and every read uses ``FINAL`` so it sees the newest row.
``state`` is ``'firing'`` or ``'resolved'``; ``notified`` records what the webhook notifier has
already sent for it (``''`` nothing, ``'firing'``, ``'resolved'``), which is what keeps a restarted
monitor from paging twice.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from storage._time import require_utc

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = [
    "DetectionRow",
    "DriftWindowRow",
    "StateFilter",
    "detection_watermarks",
    "detections_by_id",
    "drift_windows_after",
    "insert_detections",
    "insert_drift_windows",
    "json_safe",
    "last_drift_window_ends",
    "list_detections",
    "open_detection_counts",
    "pending_detections",
]

StateFilter = Literal["open", "resolved", "all"]

_COLUMNS = (
    "detection_id", "detector", "key", "model", "model_version", "signal", "state", "opened_at",
    "resolved_at", "statistic", "threshold", "p_value", "e_value", "effect", "effect_low",
    "effect_high", "details", "notified", "updated_at",
)  # fmt: skip
_DRIFT_COLUMNS = (
    "model", "window_start", "window_end", "statistic", "threshold", "p_value",
    "reference_size", "recent_size", "clusters",
)  # fmt: skip


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats replaced by ``None``: ClickHouse's JSON functions reject
    ``NaN``/``Infinity``, which ``json.dumps`` would otherwise write."""
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value


@dataclass(frozen=True)
class DetectionRow:
    """One version of one detection (see the module docstring for the column semantics)."""

    detection_id: str
    detector: str
    key: str
    model: str
    model_version: str
    signal: str
    state: Literal["firing", "resolved"]
    opened_at: datetime
    resolved_at: datetime | None
    statistic: float
    threshold: float
    p_value: float | None = None
    e_value: float | None = None
    effect: float | None = None
    effect_low: float | None = None
    effect_high: float | None = None
    details: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    notified: Literal["", "firing", "resolved"] = ""
    updated_at: datetime | None = None

    def values(self) -> list[object]:
        return [
            self.detection_id, self.detector, self.key, self.model, self.model_version,
            self.signal, self.state, require_utc(self.opened_at),
            None if self.resolved_at is None else require_utc(self.resolved_at),
            _finite(self.statistic) or 0.0, _finite(self.threshold) or 0.0,
            _finite(self.p_value), _finite(self.e_value), _finite(self.effect),
            _finite(self.effect_low), _finite(self.effect_high),
            json.dumps(json_safe(self.details), sort_keys=True), self.notified,
            require_utc(self.updated_at or datetime.now(UTC)),
        ]  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (timestamps in RFC 3339)."""
        return {
            "detection_id": self.detection_id,
            "detector": self.detector,
            "key": self.key,
            "model": self.model,
            "model_version": self.model_version,
            "signal": self.signal,
            "state": self.state,
            "opened_at": require_utc(self.opened_at).isoformat(),
            "resolved_at": None
            if self.resolved_at is None
            else require_utc(self.resolved_at).isoformat(),
            "statistic": _finite(self.statistic),
            "threshold": _finite(self.threshold),
            "p_value": _finite(self.p_value),
            "e_value": _finite(self.e_value),
            "effect": _finite(self.effect),
            "effect_low": _finite(self.effect_low),
            "effect_high": _finite(self.effect_high),
            "details": json_safe(self.details),
            "notified": self.notified,
        }


@dataclass(frozen=True)
class DriftWindowRow:
    """One prompt-drift look: the recent window ``[window_start, window_end)`` tested against its
    reference. ``statistic`` is the look's p-value and ``threshold`` the per-look level (the look
    fires when ``statistic <= threshold``); ``clusters`` is a JSON-ready list of cluster shares."""

    model: str
    window_start: datetime
    window_end: datetime
    statistic: float
    threshold: float
    p_value: float
    reference_size: int
    recent_size: int
    clusters: list[dict[str, Any]]

    def values(self) -> list[object]:
        return [
            self.model, require_utc(self.window_start), require_utc(self.window_end),
            self.statistic, self.threshold, self.p_value, self.reference_size, self.recent_size,
            json.dumps(json_safe(self.clusters)),
        ]  # fmt: skip


def insert_detections(client: Client, rows: Sequence[DetectionRow]) -> None:
    if rows:
        client.insert("detections", [r.values() for r in rows], column_names=list(_COLUMNS))


def insert_drift_windows(client: Client, rows: Sequence[DriftWindowRow]) -> None:
    if rows:
        client.insert(
            "drift_windows", [r.values() for r in rows], column_names=list(_DRIFT_COLUMNS)
        )


def _from_row(r: Sequence[Any]) -> DetectionRow:
    details = json.loads(r[16]) if r[16] else {}
    return DetectionRow(
        detection_id=str(r[0]), detector=str(r[1]), key=str(r[2]), model=str(r[3]),
        model_version=str(r[4]), signal=str(r[5]), state="resolved" if r[6] == "resolved"
        else "firing", opened_at=r[7].astimezone(UTC),
        resolved_at=None if r[8] is None else r[8].astimezone(UTC), statistic=float(r[9]),
        threshold=float(r[10]), p_value=r[11], e_value=r[12], effect=r[13], effect_low=r[14],
        effect_high=r[15], details=details if isinstance(details, dict) else {},
        notified=r[17] if r[17] in ("firing", "resolved") else "",
        updated_at=r[18].astimezone(UTC),
    )  # fmt: skip


def list_detections(
    client: Client,
    *,
    state: StateFilter = "all",
    detector: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1000,
) -> list[DetectionRow]:
    """Detections (newest row of each), most recently opened first.

    ``state='open'`` keeps those without ``resolved_at``; ``since``/``until`` filter ``opened_at``.
    """
    where = ["1"]
    params: dict[str, Any] = {"limit": limit}
    if state == "open":
        where.append("resolved_at IS NULL")
    elif state == "resolved":
        where.append("resolved_at IS NOT NULL")
    if detector is not None:
        where.append("detector = {detector:String}")
        params["detector"] = detector
    if since is not None:
        where.append("opened_at >= {since:DateTime64(3, 'UTC')}")
        params["since"] = require_utc(since)
    if until is not None:
        where.append("opened_at < {until:DateTime64(3, 'UTC')}")
        params["until"] = require_utc(until)
    sql = f"""
        SELECT {", ".join(_COLUMNS)} FROM detections FINAL
        WHERE {" AND ".join(where)}
        ORDER BY opened_at DESC, detector, key LIMIT {{limit:UInt32}}
    """  # noqa: S608 - only fixed fragments are formatted; values are bound parameters
    return [_from_row(r) for r in client.query(sql, parameters=params).result_rows]


def detections_by_id(client: Client, ids: Sequence[str]) -> dict[str, DetectionRow]:
    """The newest row of each detection in ``ids`` that is stored."""
    if not ids:
        return {}
    sql = f"""
        SELECT {", ".join(_COLUMNS)} FROM detections FINAL
        WHERE detection_id IN {{ids:Array(String)}}
    """  # noqa: S608 - fixed column list; the ids are a bound parameter
    rows = client.query(sql, parameters={"ids": list(ids)}).result_rows
    return {row.detection_id: row for row in map(_from_row, rows)}


def open_detection_counts(client: Client) -> dict[str, int]:
    """Per detector that ever wrote a detection: how many of its detections are open now."""
    rows = client.query(
        "SELECT detector, countIf(resolved_at IS NULL) FROM detections FINAL "
        "GROUP BY detector ORDER BY detector"
    ).result_rows
    return {str(detector): int(n) for detector, n in rows}


def pending_detections(client: Client) -> list[DetectionRow]:
    """Open detections, and resolved ones whose resolve message has not been sent yet."""
    sql = f"""
        SELECT {", ".join(_COLUMNS)} FROM detections FINAL
        WHERE state = 'firing' OR notified != 'resolved'
        ORDER BY opened_at, detector, key
    """  # noqa: S608 - fixed column list
    return [_from_row(r) for r in client.query(sql).result_rows]


def detection_watermarks(client: Client) -> dict[tuple[str, str], datetime]:
    """Per ``(detector, key)``: the latest time any stored detection covers (opened or resolved).

    An alarm at or before this time is history already recorded, not a new detection.
    """
    rows = client.query(
        """
        SELECT detector, key, max(greatest(opened_at, ifNull(resolved_at, opened_at)))
        FROM detections FINAL GROUP BY detector, key
        """
    ).result_rows
    return {(str(r[0]), str(r[1])): r[2].astimezone(UTC) for r in rows}


def last_drift_window_ends(client: Client) -> dict[str, datetime]:
    """The end of the newest stored drift window per model (where a restarted monitor resumes)."""
    rows = client.query("SELECT model, max(window_end) FROM drift_windows GROUP BY model")
    return {str(r[0]): r[1].astimezone(UTC) for r in rows.result_rows}


def drift_windows_after(client: Client, model: str, after: datetime) -> list[DriftWindowRow]:
    """The stored drift looks of ``model`` whose window ends after ``after``, oldest first.

    A restarted monitor replays these through the drift hysteresis of an incident still open
    (opened at ``after``), so the clean looks it had already counted are not forgotten.
    """
    sql = f"""
        SELECT {", ".join(_DRIFT_COLUMNS)} FROM drift_windows FINAL
        WHERE model = {{model:String}} AND window_end > {{after:DateTime64(3, 'UTC')}}
        ORDER BY window_end
    """  # noqa: S608 - fixed column list; values are bound parameters
    rows = client.query(sql, parameters={"model": model, "after": require_utc(after)}).result_rows
    return [_window_from_row(r) for r in rows]


def _window_from_row(r: Sequence[Any]) -> DriftWindowRow:
    return DriftWindowRow(
        model=str(r[0]), window_start=r[1].astimezone(UTC), window_end=r[2].astimezone(UTC),
        statistic=float(r[3]), threshold=float(r[4]), p_value=float(r[5]),
        reference_size=int(r[6]), recent_size=int(r[7]),
        clusters=json.loads(r[8]) if r[8] else [],
    )  # fmt: skip
