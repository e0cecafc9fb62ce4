"""The slow-degradation track: one :class:`~alerts.degradation.SeasonalCusum` per series.

Per (model, version, signal), a quasi-likelihood CUSUM against an hour-of-day × weekday/weekend
profile and a dispersion learned from the series' own history (``min_history_minutes`` and
``min_failures`` before it tests; the monitor's lookback replays that history on start). A
detection clears after ``resolve_after`` without a new alarm (the CUSUM restarts after each
alarm, so a persisting shift keeps re-alarming). Degenerate signals are not followed.

Restarts. The CUSUMs are not stored: a restarted monitor rebuilds them by replaying
``lookback_minutes`` of stored minutes, and the detection book keeps the replay's alarms from
opening or paging anything already recorded (an alarm inside an open incident continues it; one
at or before the series' watermark is ignored). The rebuilt chart equals the first monitor's only
when the lookback reaches back to the series' first minute; otherwise its profile is learned from
less history and its trajectory can differ, which is harmless for an alarm inside an open
incident (tested: ``tests/test_cusum_restart.py``) but could, in principle, open a second
detection for minutes the first monitor had already passed quietly. A replay shorter than
``min_history_minutes`` before the shift would leave the rebuilt CUSUM unable to alarm in time
(an open incident would resolve although the shift persists, and page again once the chart
tests), so the monitor's replay starts ``history_minutes`` before the change point of every open
degradation incident, whatever its ``lookback_minutes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from alerts.degradation import SeasonalCusum
from alerts.settings import CusumSettings
from alerts.tracks.span import MINUTE, Span, series_key
from storage import MinuteCounts

__all__ = ["DEGRADATION", "CusumTrack"]

DEGRADATION = "degradation"


@dataclass
class _Series:
    model: str
    version: str
    signal: str
    detector: SeasonalCusum
    start: datetime  # the minute of update number 1
    next_minute: datetime
    last_traffic: datetime

    @property
    def key(self) -> str:
        return series_key(self.model, self.version, self.signal)


class CusumTrack:
    """Feeds every series' minutes to its CUSUM (wraps the detector's public interface)."""

    name = DEGRADATION

    def __init__(self, settings: CusumSettings) -> None:
        self._s = settings
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
            if episode is not None and minute + MINUTE - episode.last_alarm >= span.resolve_after:
                row = book.resolve(
                    DEGRADATION, key, episode.last_alarm + span.resolve_after,
                    f"no new alarm for {int(span.resolve_after.total_seconds() // 60)} minutes",
                )  # fmt: skip
                if row is not None:
                    report.resolved.append(f"{DEGRADATION} {key} at {row.resolved_at}")
            minute += MINUTE
        series.next_minute = minute
