"""The degradation track: one :class:`~alerts.detectors.degradation.SeasonalCusum` per series.

Per (model, version, signal), a CUSUM against the series' own seasonal profile; a detection
clears after ``resolve_after`` without a new alarm (the CUSUM restarts after each alarm, so a
persisting shift keeps re-alarming). Degenerate signals are not followed. The CUSUMs are not
stored: a restarted monitor rebuilds them by replaying stored minutes (from
``degradation_history_minutes`` before the change point of an open incident), and the detection
book keeps the replay's alarms from opening or paging again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from alerts.detectors.base import Detector
from alerts.detectors.degradation import SeasonalCusum, SeasonalCusumState
from alerts.tracks.base import TrackSetup
from alerts.tracks.span import MINUTE, Span, series_key
from storage import MinuteCounts

__all__ = ["DEGRADATION", "DegradationTrack"]

DEGRADATION = "degradation"


@dataclass
class _Series:
    model: str
    version: str
    signal: str
    detector: Detector[[int, int, datetime], SeasonalCusumState]
    start: datetime  # the minute of update number 1
    next_minute: datetime
    last_traffic: datetime

    @property
    def key(self) -> str:
        return series_key(self.model, self.version, self.signal)


class DegradationTrack:
    """Feeds every series' minutes to its CUSUM (through the detector protocol only)."""

    name = DEGRADATION

    def __init__(self, setup: TrackSetup) -> None:
        self._s = setup.settings.degradation
        self._resolve_after = setup.resolve_after
        self._series: dict[str, _Series] = {}

    @property
    def series(self) -> int:
        return len(self._series)

    def advance(self, span: Span) -> None:
        for (model, version, signal), minutes in span.counts.items():
            key = series_key(model, version, signal)
            if key not in self._series and any(n > 0 for n, _ in minutes.values()):
                first = min(m for m, (n, _) in minutes.items() if n > 0)
                self._series[key] = self._new(model, version, signal, first)
        for row in span.book.open_rows():
            if row.detector == DEGRADATION and row.key not in self._series:
                self._series[row.key] = self._new(row.model, row.model_version, row.signal,
                                                  span.start)  # fmt: skip
        idle = timedelta(minutes=self._s.idle_drop_minutes)
        for key, series in list(self._series.items()):
            if series.signal in span.skipped:
                # A signal marked degenerate after its series started: forget it.
                if span.book.episode(DEGRADATION, key) is None:
                    del self._series[key]
                continue
            own = span.counts.get((series.model, series.version, series.signal), {})
            self._feed(series, own, span)
            quiet = series.next_minute - (series.last_traffic + MINUTE)
            if quiet >= idle and span.book.episode(DEGRADATION, key) is None:
                del self._series[key]

    def _new(self, model: str, version: str, signal: str, first: datetime) -> _Series:
        detector = SeasonalCusum(
            delta=self._s.delta,
            arl0_minutes=self._s.arl0_minutes,
            min_history_minutes=self._s.min_history_minutes,
            min_failures=self._s.min_failures,
            history_minutes=self._s.history_minutes,
        )
        return _Series(model, version, signal, detector, first, first, last_traffic=first - MINUTE)

    def _feed(self, series: _Series, own: MinuteCounts, span: Span) -> None:
        key, book, report = series.key, span.book, span.report
        minute = series.next_minute
        while minute < span.until:
            n, k = own.get(minute, (0, 0))
            if n > 0:
                series.last_traffic = minute
            state = series.detector.update(n, k, minute)
            detection = series.detector.detection(key, minute + MINUTE)
            if detection is not None:
                change_at = state.change_at
                outcome = book.alarm(
                    detection, model=series.model, model_version=series.version,
                    signal=series.signal,
                    details={"change_at": change_at.isoformat() if change_at else None},
                )  # fmt: skip
                if outcome == "opened":
                    report.opened.append(f"{DEGRADATION} {key} at {detection.opened_at}")
            episode = book.episode(DEGRADATION, key)
            if episode is not None and minute + MINUTE - episode.last_alarm >= self._resolve_after:
                row = book.resolve(
                    DEGRADATION, key, episode.last_alarm + self._resolve_after,
                    f"no new alarm for {int(self._resolve_after.total_seconds() // 60)} minutes",
                )  # fmt: skip
                if row is not None:
                    report.resolved.append(f"{DEGRADATION} {key} at {row.resolved_at}")
            minute += MINUTE
        series.next_minute = minute
