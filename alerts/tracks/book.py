"""Detection state: which alarms are open, what was already recorded, what still has to be sent.

The detectors are in-memory state machines; the *detections table* is the monitor's memory across
restarts (with ``drift_windows``, from which an open drift incident's hysteresis is rebuilt).
:class:`DetectionBook` sits between the two and turns each alarm into exactly one detection row,
whoever raises it:

* an alarm on a series with an **open** detection continues that detection (no new detection,
  no page; its ``last_alarm_at`` moves, which is what "quiet for N minutes" rules look at);
* an alarm at or before the series' **watermark** — the latest time any stored detection of that
  ``(detector, key)`` covers, opened or resolved — is history already recorded and is ignored.
  A restarted monitor replays recent history to rebuild its detectors and raises the old alarms
  again; this rule is what keeps them from becoming new detections and new pages;
* any other alarm opens a detection with a deterministic id, ``sha1(detector|key|opened_at)``.

Rows are written through a :class:`~alerts.tracks.store.DetectionStore`. Every write is a new
version of the row, stamped with a strictly increasing ``updated_at`` so
``ReplacingMergeTree``'s ``FINAL`` keeps the latest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from alerts.detectors.base import Detection
from alerts.tracks.store import DetectionStore, SeriesId
from storage import DetectionRow, DriftWindowRow

__all__ = ["AlarmOutcome", "DetectionBook", "Episode", "detection_id"]

AlarmOutcome = Literal["opened", "continued", "ignored"]


def detection_id(detector: str, key: str, opened_at: datetime) -> str:
    """Stable id of the detection that ``detector`` opened on ``key`` at ``opened_at``."""
    stamp = opened_at.astimezone(UTC).isoformat(timespec="milliseconds")
    return hashlib.sha1(f"{detector}|{key}|{stamp}".encode(), usedforsecurity=False).hexdigest()[
        :16
    ]


@dataclass
class Episode:
    """An open detection and the time of its latest alarm (for "quiet for N minutes" rules)."""

    row: DetectionRow
    last_alarm: datetime


class DetectionBook:
    """The open detections and per-series watermarks, loaded from a store and written back.

    Changes are buffered until :meth:`flush`; the monitor flushes once per cycle, before it
    notifies, so a page is only ever sent for a row that is stored.
    """

    def __init__(
        self, store: DetectionStore, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._store = store
        self._clock = clock
        self._open: dict[SeriesId, Episode] = {}
        self._unsent: dict[str, DetectionRow] = {}  # resolved, resolve message not sent yet
        self._dirty: dict[str, DetectionRow] = {}
        self._drift_windows: list[DriftWindowRow] = []
        self._last_stamp = datetime.min.replace(tzinfo=UTC)
        self._watermarks = store.load_watermarks()
        for row in store.load_pending():
            if row.state == "firing":
                last = _parse_time(row.details.get("last_alarm_at")) or row.opened_at
                self._open[(row.detector, row.key)] = Episode(row, max(last, row.opened_at))
            else:
                self._unsent[row.detection_id] = row
            if row.updated_at is not None:
                self._last_stamp = max(self._last_stamp, row.updated_at)

    # -- queries -------------------------------------------------------------------------------

    def episode(self, detector: str, key: str) -> Episode | None:
        return self._open.get((detector, key))

    def open_rows(self) -> list[DetectionRow]:
        return [e.row for e in self._open.values()]

    def pending_notifications(self) -> list[DetectionRow]:
        """Rows the notifier still owes a message: unsent firings, unsent resolves; oldest first."""
        rows = [e.row for e in self._open.values() if e.row.notified == ""]
        rows += self._unsent.values()
        return sorted(rows, key=lambda r: (r.opened_at, r.detector, r.key))

    # -- changes -------------------------------------------------------------------------------

    def alarm(
        self,
        detection: Detection,
        *,
        model: str,
        model_version: str = "",
        signal: str = "",
        details: dict[str, Any] | None = None,
    ) -> AlarmOutcome:
        """Record an alarm; see the module docstring for the three outcomes."""
        sid = (detection.detector, detection.key)
        at = detection.opened_at
        merged = {**detection.details, **(details or {})}
        episode = self._open.get(sid)
        if episode is not None:
            # The row keeps describing the alarm that opened it; only the bookkeeping moves.
            if at > episode.last_alarm:
                episode.last_alarm = at
                alarms = int(episode.row.details.get("alarms_in_episode", 1)) + 1
                details = {**episode.row.details, "last_alarm_at": at.isoformat(),
                           "alarms_in_episode": alarms}  # fmt: skip
                self._put(sid, replace(episode.row, details=details))
            return "continued"
        mark = self._watermarks.get(sid)
        if mark is not None and at <= mark:
            return "ignored"
        row = DetectionRow(
            detection_id=detection_id(detection.detector, detection.key, at),
            detector=detection.detector,
            key=detection.key,
            model=model,
            model_version=model_version,
            signal=signal,
            state="firing",
            opened_at=at,
            resolved_at=None,
            statistic=detection.statistic,
            threshold=detection.threshold,
            p_value=detection.p_value,
            e_value=detection.e_value,
            effect=detection.effect,
            effect_low=detection.effect_low,
            effect_high=detection.effect_high,
            details={**merged, "last_alarm_at": at.isoformat(), "alarms_in_episode": 1},
        )
        self._open[sid] = Episode(row, at)
        self._watermarks[sid] = at
        self._dirty[row.detection_id] = row
        return "opened"

    def refresh(
        self,
        detection: Detection,
        details: dict[str, Any] | None = None,
        *,
        signal: str | None = None,
    ) -> None:
        """Update an open detection's statistics (e.g. the effect estimate as data accrues) and,
        with ``signal``, the signals it names (a release's incident gains the signals that
        regress after it opened)."""
        sid = (detection.detector, detection.key)
        episode = self._open.get(sid)
        if episode is None:
            return
        updated = _with_stats(episode.row, detection, {**detection.details, **(details or {})})
        if signal is not None:
            updated = replace(updated, signal=signal)
        if updated.values()[:-1] != episode.row.values()[:-1]:  # all but updated_at
            self._put(sid, updated)

    def resolve(self, detector: str, key: str, at: datetime, reason: str) -> DetectionRow | None:
        """Close the open detection of ``(detector, key)`` at ``at`` (never before it opened)."""
        episode = self._open.pop((detector, key), None)
        if episode is None:
            return None
        row = episode.row
        resolved_at = max(at, row.opened_at)
        row = replace(
            row,
            state="resolved",
            resolved_at=resolved_at,
            details={**row.details, "resolve_reason": reason},
        )
        sid = (detector, key)
        self._watermarks[sid] = max(resolved_at, self._watermarks.get(sid, resolved_at))
        self._dirty[row.detection_id] = row
        if row.notified != "resolved":
            self._unsent[row.detection_id] = row
        return row

    def mark_notified(self, row: DetectionRow, notified: Literal["firing", "resolved"]) -> None:
        """Record what has been sent for ``row`` (takes effect on the next :meth:`flush`)."""
        updated = replace(row, notified=notified)
        sid = (row.detector, row.key)
        episode = self._open.get(sid)
        if episode is not None and episode.row.detection_id == row.detection_id:
            episode.row = replace(episode.row, notified=notified)
            updated = episode.row
        if row.detection_id in self._unsent:
            if notified == "resolved":
                del self._unsent[row.detection_id]
            else:
                self._unsent[row.detection_id] = updated
        self._dirty[row.detection_id] = updated

    def record_drift_windows(self, rows: Sequence[DriftWindowRow]) -> None:
        """Buffer drift looks; :meth:`flush` stores them *after* the detections they changed.

        A stored look is never tested again (the drift track resumes after the newest one, and a
        restart replays the stored looks into an open incident's hysteresis), so a look must
        not be stored while the alarm or resolution it caused is not: were the cycle to fail in
        between, the alarm would be lost for good. Written last, a look whose detections were
        written but which itself was not is simply tested again, with the same result (its
        permutations are seeded by model and window), and the book ignores the repeated alarm.
        """
        self._drift_windows.extend(rows)

    def flush(self) -> list[DetectionRow]:
        """Write every changed row (one insert), then the buffered drift looks; return the rows
        written."""
        if not self._dirty:
            self._flush_drift_windows()
            return []
        stamp = self._clock().astimezone(UTC)
        stamp = stamp.replace(microsecond=stamp.microsecond // 1000 * 1000)  # DateTime64(3)
        if stamp <= self._last_stamp:
            stamp = self._last_stamp + timedelta(milliseconds=1)
        self._last_stamp = stamp
        rows = [replace(r, updated_at=stamp) for r in self._dirty.values()]
        self._store.save(rows)
        self._dirty.clear()
        self._flush_drift_windows()
        return rows

    def _flush_drift_windows(self) -> None:
        if self._drift_windows:
            self._store.save_drift_windows(self._drift_windows)
            self._drift_windows = []

    def _put(self, sid: SeriesId, row: DetectionRow) -> None:
        self._open[sid].row = row
        self._dirty[row.detection_id] = row


def _with_stats(row: DetectionRow, d: Detection, details: dict[str, Any]) -> DetectionRow:
    return replace(
        row,
        statistic=d.statistic,
        threshold=d.threshold,
        p_value=d.p_value,
        e_value=d.e_value,
        effect=d.effect,
        effect_low=d.effect_low,
        effect_high=d.effect_high,
        details={**row.details, **details},
    )


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
