"""``telltale alerts backtest``: what the monitor would have fired over stored history, and when.

The backtest runs the monitor's own :class:`~alerts.tracks.engine.DetectionEngine` over ``[since,
until)`` in one pass, with the detection state in memory: nothing is written to ClickHouse (not
even the releases it infers for versions that have none) and nothing is sent. Releases are the
recorded ones plus, for versions without a record, one at the version's first event, exactly as
the monitor would register them.

For each detection it reports when it would have opened and cleared, the evidence, and a delay:
for a release spike the minutes from the release to the alarm, for slow degradation the minutes
from the CUSUM's estimated change point to the alarm.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from alerts.settings import MonitorConfig
from alerts.tracks import (
    DEGRADATION,
    RELEASE_SPIKE,
    DetectionBook,
    DetectionEngine,
    EngineReport,
    InstrumentCheck,
    MemoryStore,
    floor_minute,
)
from storage import (
    DetectionRow,
    DriftWindowRow,
    PriceTable,
    Release,
    data_bounds,
    list_releases,
    unreleased_versions,
)

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["BacktestReport", "backtest"]


@dataclass
class BacktestReport:
    since: datetime | None
    until: datetime | None
    releases: list[Release] = field(default_factory=list)
    detections: list[DetectionRow] = field(default_factory=list)
    drift_windows: list[DriftWindowRow] = field(default_factory=list)
    engine: EngineReport = field(default_factory=EngineReport)
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        fired: dict[str, int] = {}
        for d in self.detections:
            fired[d.detector] = fired.get(d.detector, 0) + 1
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "releases": [
                {
                    "model": r.model,
                    "model_version": r.model_version,
                    "released_at": r.released_at.isoformat(),
                    "source": r.source,
                }
                for r in self.releases
            ],
            "fired": fired,
            "detections": [_describe(d) for d in self.detections],
            "drift_windows": len(self.drift_windows),
            "drift_windows_fired": sum(w.statistic <= w.threshold for w in self.drift_windows),
            "tracks": {name: dict(c) for name, c in self.engine.tracks.items()},
            "duration_s": round(self.duration_s, 4),
        }


def _minutes_between(start: object, end: datetime) -> float | None:
    if not isinstance(start, str):
        return None
    try:
        return (end - datetime.fromisoformat(start)).total_seconds() / 60.0
    except ValueError:
        return None


def _describe(d: DetectionRow) -> dict[str, Any]:
    row = d.as_dict()
    del row["notified"]  # nothing is ever sent by a backtest
    if d.detector == RELEASE_SPIKE:
        row["delay_minutes"] = _minutes_between(d.details.get("released_at"), d.opened_at)
    elif d.detector == DEGRADATION:
        row["delay_minutes"] = _minutes_between(d.details.get("change_at"), d.opened_at)
    else:
        row["delay_minutes"] = None
    return row


def backtest(
    client: Client,
    settings: MonitorConfig,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    instrument: InstrumentCheck | None = None,
    prices: PriceTable | None = None,
) -> BacktestReport:
    """Run the detectors over ``[since, until)`` (default: all stored minutes); write nothing.

    ``instrument``: as for the monitor, corrected levels in fired release incidents; ``prices``:
    as for the monitor, the release test's cost watch."""
    started = time.perf_counter()
    bounds = data_bounds(client)
    if bounds is None and (since is None or until is None):
        return BacktestReport(since=since, until=until, duration_s=time.perf_counter() - started)
    if bounds is not None:
        since = since or bounds[0]
        until = until or bounds[1] + timedelta(minutes=1)
    assert since is not None and until is not None
    since, until = floor_minute(since), floor_minute(until)
    releases = list_releases(client) + unreleased_versions(client)
    store = MemoryStore()
    book = DetectionBook(store)
    engine = DetectionEngine(client, settings, book, store, start=since, drift_catchup_looks=None,
                             instrument=instrument, prices=prices)  # fmt: skip
    report = engine.advance(until, releases)
    book.flush()
    return BacktestReport(
        since=since,
        until=until,
        releases=sorted(releases, key=lambda r: (r.model, r.released_at)),
        detections=sorted(store.rows.values(), key=lambda r: (r.opened_at, r.detector, r.key)),
        drift_windows=list(store.drift_windows),
        engine=report,
        duration_s=time.perf_counter() - started,
    )
