"""The detection engine: a loop over the registered tracks on stored per-minute series.

One engine serves both the live monitor and the backtest: :meth:`DetectionEngine.advance` moves
a time cursor over ``[position, until)``, reads what that span needs once (independent units per
minute of every series, the releases, the degenerate signals to skip) and hands it to each track
of :data:`~alerts.tracks.registry.TRACKS` in turn. The monitor advances a few minutes per cycle,
the backtest once over all of history; both see the same minutes in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from alerts.settings import MonitorConfig
from alerts.tracks.base import Track, TrackFactory, TrackSetup
from alerts.tracks.book import DetectionBook
from alerts.tracks.instrument import InstrumentCheck
from alerts.tracks.registry import TRACKS
from alerts.tracks.report import EngineReport
from alerts.tracks.span import Span, floor_minute, link_releases
from alerts.tracks.store import DetectionStore
from storage import Release, degenerate_signals, unit_counts

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from storage import PriceTable

__all__ = ["DetectionEngine"]


class DetectionEngine:
    """Runs every registered track over stored data from a start time onwards.

    ``tracks`` replaces the registered table (:data:`~alerts.tracks.registry.TRACKS`);
    ``prices`` price the release test's cost watch (:mod:`alerts.tracks.release_watches`)."""

    def __init__(
        self,
        client: Client,
        settings: MonitorConfig,
        book: DetectionBook,
        store: DetectionStore,
        *,
        start: datetime,
        drift_catchup_looks: int | None = None,
        instrument: InstrumentCheck | None = None,
        tracks: Sequence[TrackFactory] = TRACKS,
        prices: PriceTable | None = None,
    ) -> None:
        self._client = client
        self._s = settings
        self._book = book
        self.position = floor_minute(start)
        setup = TrackSetup(client, settings, store, instrument, drift_catchup_looks, prices)
        self.tracks: tuple[Track, ...] = tuple(build(setup) for build in tracks)

    def advance(
        self, until: datetime, releases: Sequence[Release], *, read_at: datetime | None = None
    ) -> EngineReport:
        """Process every minute in ``[position, until)`` and move the cursor to ``until``.

        ``read_at`` is when the live monitor reads (lagged baselines are read as of the same
        lateness); a backtest leaves it ``None`` and reads everything stored. Degenerate signals
        are removed from the counts before any track sees them; the report names them.
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
            start=self.position, until=until, counts=counts, links=link_releases(releases),
            skipped=skipped, read_at=read_at, book=self._book, report=report,
        )  # fmt: skip
        for track in self.tracks:
            track.advance(span)
            report.tracks.setdefault(track.name, {})["series"] = track.series
        self.position = until
        return report
