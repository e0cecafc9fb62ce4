"""The detection engine: a loop over one track per detector on stored per-minute series.

One engine serves both the live monitor and the backtest: :meth:`DetectionEngine.advance` moves
a time cursor forward over ``[position, until)``, reads what that span needs once (independent
units per minute of every series, the releases, the degenerate signals to skip) and hands it to
each :class:`~alerts.base.Track` in turn, which feeds its detectors minute by minute and records
alarms and resolutions in a :class:`~alerts.state.DetectionBook`. The live monitor advances a few
minutes per cycle; the backtest advances once over all of history. Both see the same minutes in
the same order, so the backtest says what the monitor would have done.

The tracks, and what each monitors and when it clears, are documented in their modules:
:mod:`alerts.tracks.spike` (one incident per release, a test per signal at ``alpha / S``; its
details name the slices each regressed signal's excess failures concentrate in,
:mod:`alerts.localize`),
:mod:`alerts.tracks.cusum` (slow degradation within a version), :mod:`alerts.tracks.drift`
(prompt drift per model).

Degenerate signals (the latest version of the signal marked ``degenerate`` in the ``signals``
table) are removed from the counts before any track sees them; the report names them with the
reason.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from alerts.base import Track
from alerts.instrument import InstrumentCheck, InstrumentDetails
from alerts.localize import ReleaseLocalizer
from alerts.settings import MonitorSettings
from alerts.state import DetectionBook, DetectionStore
from alerts.tracks import (
    DEGRADATION,
    DRIFT,
    SPIKE,
    CusumTrack,
    DriftTrack,
    EngineReport,
    ReleaseLink,
    ReleaseSpikeTrack,
    Span,
    floor_minute,
    link_releases,
)
from storage import Release, degenerate_signals, unit_counts

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = [
    "DEGRADATION",
    "DRIFT",
    "SPIKE",
    "DetectionEngine",
    "EngineReport",
    "ReleaseLink",
    "floor_minute",
    "link_releases",
]

log = logging.getLogger(__name__)


class DetectionEngine:
    """Runs every track over stored data from a start time onwards (module docstring)."""

    def __init__(
        self,
        client: Client,
        settings: MonitorSettings,
        book: DetectionBook,
        store: DetectionStore,
        *,
        start: datetime,
        drift_catchup_looks: int | None = None,
        instrument: InstrumentCheck | None = None,
    ) -> None:
        self._client = client
        self._s = settings
        self._book = book
        self._store = store
        self.position = floor_minute(start)
        self._spike = ReleaseSpikeTrack(
            settings.spike, ReleaseLocalizer(client),
            InstrumentDetails(instrument) if instrument is not None else None,
        )  # fmt: skip
        self._cusum = CusumTrack(settings.cusum)
        drift = DriftTrack(settings.drift, store.drift_resume_points(), drift_catchup_looks)
        self.tracks: tuple[Track, ...] = (self._spike, self._cusum, drift)

    def advance(
        self, until: datetime, releases: Sequence[Release], *, read_at: datetime | None = None
    ) -> EngineReport:
        """Process every minute in ``[position, until)`` and move the cursor to ``until``.

        ``read_at`` is when the live monitor reads (lagged baselines are read as of the same
        lateness); a backtest leaves it ``None`` and reads everything stored.
        """
        until = floor_minute(until)
        report = EngineReport(since=self.position, until=until)
        if until <= self.position:
            return report
        skipped = degenerate_signals(self._client)
        counts = unit_counts(
            self._client, self.position, until,
            repeat_window_minutes=self._s.unit_repeat_window_minutes,
        )  # fmt: skip
        report.skipped_signals = {
            sig: reason for sig, reason in skipped.items() if any(k[2] == sig for k in counts)
        }
        counts = {key: minutes for key, minutes in counts.items() if key[2] not in skipped}
        span = Span(
            client=self._client, start=self.position, until=until, counts=counts,
            links=link_releases(releases), book=self._book, store=self._store, report=report,
            skipped=skipped, read_at=read_at,
            repeat_window_minutes=self._s.unit_repeat_window_minutes,
            backfill_after_s=self._s.backfill_after_s,
            resolve_after=timedelta(minutes=self._s.resolve_after_minutes),
        )  # fmt: skip
        for track in self.tracks:
            track.advance(span)
        self.position = until
        report.spike_series, report.cusum_series = self._spike.series, self._cusum.series
        return report
