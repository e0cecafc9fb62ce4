"""``telltale monitor``: register new releases, run the detectors, page through the notifiers.

Each cycle registers an ``auto`` release for every version without one, lets minutes settle
for the measured p99 ingest lag (between ``settle_s`` and ``settle_max_s``), rebuilds the
detectors from storage when rows landed late in processed minutes (or
:meth:`Monitor.request_rewind` was called), advances the
:class:`~alerts.tracks.engine.DetectionEngine` over the settled minutes, writes the changed
detections and then sends what the notifiers still owe (each firing once, and one resolve),
and logs how long it took. A starting monitor, or one whose cycle failed, rebuilds its
detectors by replaying history (:func:`_replay_start`); the
:class:`~alerts.tracks.book.DetectionBook` keeps that replay from opening or paging anything
already recorded, so no minute is fed to a detector twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from alerts.delivery.fanout import FanOutNotifier, OwesMessages
from alerts.delivery.notify import Notifier
from alerts.delivery.owed_ledger import ClickHouseOwedLedger
from alerts.errors import NotifyError
from alerts.settings import MonitorConfig, NotifyConfig
from alerts.tracks import (
    DEGRADATION,
    ClickHouseStore,
    DetectionBook,
    DetectionEngine,
    EngineReport,
    InstrumentCheck,
    floor_minute,
)
from storage import (
    DetectionRow,
    IngestLag,
    Release,
    add_release,
    ingest_lag,
    ingest_watermark,
    late_rows,
    list_releases,
    unreleased_versions,
)

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["CycleReport", "Monitor", "register_new_releases"]

log = logging.getLogger(__name__)


def register_new_releases(client: Client) -> list[Release]:
    """Record an ``auto`` release for every version that has events but no release yet."""
    found = unreleased_versions(client)
    for r in found:
        add_release(client, r.model, r.model_version, r.released_at, source="auto", note=r.note)
        log.info("registered release %s %s at %s (auto)", r.model, r.model_version, r.released_at)
    return found


@dataclass
class CycleReport:
    """What one monitor cycle did, and how long it took."""

    started_at: datetime
    data_until: datetime
    registered: list[Release] = field(default_factory=list)
    engine: EngineReport = field(default_factory=EngineReport)
    ingest_lag: IngestLag | None = None
    settle_s: float = 0.0
    late_rows: int = 0
    recomputed: bool = False
    notifications_sent: int = 0
    notification_failures: int = 0
    open_detections: int = 0
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at.isoformat(),
            "data_until": self.data_until.isoformat(),
            "registered_releases": [
                {
                    "model": r.model,
                    "model_version": r.model_version,
                    "released_at": r.released_at.isoformat(),
                }
                for r in self.registered
            ],
            **self.engine.as_dict(),
            "ingest_lag": self.ingest_lag.as_dict() if self.ingest_lag else None,
            "settle_s": self.settle_s,
            "late_rows": self.late_rows,
            "recomputed": self.recomputed,
            "notifications_sent": self.notifications_sent,
            "notification_failures": self.notification_failures,
            "open_detections": self.open_detections,
            "duration_s": round(self.duration_s, 4),
        }


class Monitor:
    """The monitor loop over one ClickHouse database (see the module docstring).

    ``notifier`` is optional: without one, detections are stored (for Grafana's alert rules and
    ``telltale alerts list``) and ``notified`` is left alone.
    """

    def __init__(
        self,
        client: Client,
        settings: MonitorConfig,
        notifier: Notifier | None = None,
        notify_settings: NotifyConfig | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        instrument: InstrumentCheck | None = None,
    ) -> None:
        self._client = client
        self._instrument = instrument
        self._settings = settings
        self._notifier = notifier
        self._stale = timedelta(minutes=(notify_settings or NotifyConfig()).stale_after_minutes)
        self._clock = clock
        self._store = ClickHouseStore(client)
        self._book: DetectionBook | None = None
        self._engine: DetectionEngine | None = None
        self._watermark: datetime | None = None
        self._rewind = threading.Event()
        self._seen_until: datetime | None = None
        self._ledger_kept = False

    @property
    def position(self) -> datetime | None:
        """The end of the minutes the detectors have processed (None before the first cycle).

        It never moves back, not even while a rebuild replays history: an event written during
        a rebuild, for a minute before this, asks for another rebuild.
        """
        return self._seen_until

    def request_rewind(self) -> None:
        """Rebuild the detectors from storage at the start of the next cycle.

        For events stored after their minute was already processed, when the caller knows it
        (``telltale serve --all`` replaying old logs into a running monitor). The monitor also
        finds such rows itself through the ``ingested_at`` watermark (``late_rows``); either
        way the rebuild replays ``lookback_minutes`` of history, and the
        :class:`DetectionBook` keeps what is already recorded from opening or paging twice.
        Safe to call from any thread.
        """
        self._rewind.set()

    def run_once(self, now: datetime | None = None) -> CycleReport:
        """One cycle, with data up to ``now`` (default: the clock) less the settle time."""
        started = time.perf_counter()
        now = (now or self._clock()).astimezone(UTC)
        s = self._settings
        try:
            lag = ingest_lag(self._client, now, cap_s=s.backfill_after_s)
            settle = min(max(s.settle_s, lag.p99_s or 0.0), max(s.settle_s, s.settle_max_s))
            until = floor_minute(now - timedelta(seconds=settle))
            report = CycleReport(started_at=self._clock(), data_until=until, ingest_lag=lag,
                                 settle_s=round(settle, 3))  # fmt: skip
            report.registered = register_new_releases(self._client)
            watermark = ingest_watermark(self._client)
            if self._rewind.is_set():
                self._rewind.clear()
                if self._engine is not None:
                    log.info("rebuilding the detectors from storage (events arrived late)")
                    self._book, self._engine = None, None
                    report.recomputed = True
            elif self._engine is not None and self._watermark is not None:
                since = self._engine.position - timedelta(minutes=s.lookback_minutes)
                report.late_rows = late_rows(
                    self._client, self._watermark, self._engine.position, since
                )
                if report.late_rows:
                    log.info("%d late rows landed in processed minutes: recomputing",
                             report.late_rows)  # fmt: skip
                    self._book, self._engine = None, None
                    report.recomputed = True
            self._watermark = watermark
            releases = list_releases(self._client)
            if self._book is None or self._engine is None:
                self._book = DetectionBook(self._store)
                start = _replay_start(until, s, self._book.open_rows(), releases)
                self._engine = DetectionEngine(
                    self._client, s, self._book, self._store, start=start,
                    drift_catchup_looks=s.prompt_drift_catchup_looks, instrument=self._instrument,
                )  # fmt: skip
            report.engine = self._engine.advance(until, releases, read_at=now)
            seen = self._seen_until
            self._seen_until = until if seen is None else max(seen, until)
            self._book.flush()
            if self._notifier is not None:
                self._notify(self._book, self._notifier, now, report)
            report.open_detections = len(self._book.open_rows())
        except Exception:
            # Half-fed detectors must not be fed the same minutes again: rebuild from storage.
            self._book, self._engine, self._watermark = None, None, None
            raise
        finally:
            duration = time.perf_counter() - started
        report.duration_s = duration
        log.info(
            "monitor cycle up to %s in %.3f s: %d opened, %d resolved, tracks %s, "
            "%d notifications sent, %d open; ingest lag p99 %s s (settle %.0f s), "
            "%d late rows%s, %d degenerate signals skipped",
            until.isoformat(), report.duration_s, len(report.engine.opened),
            len(report.engine.resolved), report.engine.tracks, report.notifications_sent,
            report.open_detections,
            "n/a" if lag.p99_s is None else f"{lag.p99_s:.1f}", settle, report.late_rows,
            " (recomputed)" if report.recomputed else "", len(report.engine.skipped_signals),
            extra={"monitor_cycle_s": report.duration_s, "ingest_lag_p99_s": lag.p99_s},
        )  # fmt: skip
        return report

    def run(self, stop: threading.Event, interval_s: float | None = None) -> None:
        """Run cycles every ``interval_s`` (default: the settings') until ``stop`` is set.

        Cycles start on a fixed grid (a slow cycle delays the next one, it does not shift the
        schedule). A failed cycle is logged and retried on the next tick; it never ends the loop.
        """
        interval = interval_s if interval_s is not None else self._settings.interval_s
        next_start = time.monotonic()
        while not stop.is_set():
            try:
                self.run_once()
            except Exception as exc:
                log.error("monitor cycle failed: %s: %s", type(exc).__name__, exc)
            # Missed ticks are skipped, not caught up in a burst.
            next_start = max(next_start + interval, time.monotonic())
            stop.wait(next_start - time.monotonic())

    def _notify(
        self, book: DetectionBook, notifier: Notifier, now: datetime, report: CycleReport
    ) -> None:
        if isinstance(notifier, FanOutNotifier) and not self._ledger_kept:
            # Owed messages outlive a restart: take back what the last run still owed.
            taken = notifier.keep_in(ClickHouseOwedLedger(self._client))
            self._ledger_kept = True
            if taken:
                log.warning("resending %d message(s) owed before the restart", taken)
        if isinstance(notifier, OwesMessages):
            # What one of several notifiers could not deliver earlier (alerts.delivery.fanout).
            notifier.retry_owed()
        for row in book.pending_notifications():
            try:
                if row.notified == "":
                    if row.resolved_at is not None and row.resolved_at < now - self._stale:
                        log.info("not paging %s: it resolved long ago", row.detection_id)
                        book.mark_notified(row, "resolved")
                        book.flush()
                        continue
                    notifier.send("trigger", row)
                    book.mark_notified(row, "firing")
                    book.flush()
                    row = replace(row, notified="firing")
                    report.notifications_sent += 1
                if row.state == "resolved" and row.notified == "firing":
                    notifier.send("resolve", row)
                    book.mark_notified(row, "resolved")
                    book.flush()
                    report.notifications_sent += 1
            except NotifyError as exc:
                # The receiver is down or rejects us: stop for this cycle, retry on the next.
                report.notification_failures += 1
                log.error("notification of %s failed: %s", row.detection_id, exc)
                return


def _replay_start(
    until: datetime, s: MonitorConfig, open_rows: list[DetectionRow], releases: list[Release]
) -> datetime:
    """Where a starting monitor's replay begins: ``lookback_minutes`` (at least a CUSUM's warm-up)
    before ``until``, and earlier when a release test or an open slow-degradation incident needs
    it.

    A release test is an e-process that is not stored: rebuilt from a later minute than its
    release's, it would be a new test at the full level, so every restart would spend ``alpha``
    on that release again (and it would page later than the first test: the evidence of the
    minutes before the replay is lost). So the replay reaches the first minute of every release
    still inside ``release_spike_horizon_minutes``, and the rebuilt test is the one the first
    monitor ran.

    A CUSUM rebuilt from too little history would not alarm again in time: the incident would
    resolve (no new alarm for ``resolve_after``) although the shift persists, and page again once
    the chart has warmed up, or, learned from less history, alarm on another schedule and leave
    a gap long enough to resolve and reopen. So the replay also reaches
    ``degradation_history_minutes`` (the history the profile is fit on) before the change point
    of every open degradation incident: the rebuilt chart learns from the history the first one
    had before the shift began, and re-alarms through the shift as it did.
    """
    start = until - timedelta(minutes=max(s.lookback_minutes, s.degradation_min_history_minutes))
    horizon = timedelta(minutes=s.release_spike_horizon_minutes)
    for release in releases:
        if until - horizon < release.released_at < start:
            start = floor_minute(release.released_at)
    warm_up = timedelta(minutes=s.degradation_history_minutes)
    for row in open_rows:
        if row.detector == DEGRADATION:
            changed = row.details.get("change_at")
            began = datetime.fromisoformat(changed) if isinstance(changed, str) else row.opened_at
            start = min(start, min(began, row.opened_at) - warm_up)
    return start
