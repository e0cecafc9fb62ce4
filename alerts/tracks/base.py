"""The tracks' interface: what a track is built from, and what the engine calls on it.

A track owns the detectors of one kind (one per monitored series), decides what each is fed from
a :class:`~alerts.tracks.span.Span` of stored minutes, and records alarms and resolutions in the
span's :class:`~alerts.tracks.book.DetectionBook`. Tracks are registered in one table
(:data:`alerts.tracks.registry.TRACKS`); the engine builds each from a :class:`TrackSetup`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from alerts.settings import MonitorConfig
from alerts.tracks.instrument import InstrumentCheck
from alerts.tracks.store import DetectionStore

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from alerts.tracks.span import Span
    from storage import PriceTable

__all__ = ["Track", "TrackFactory", "TrackSetup"]


@dataclass(frozen=True)
class TrackSetup:
    """Everything a track may be built from, once per engine: where it reads, where detections
    and looks are stored, the monitor's settings (each track takes its own section) and hooks.

    ``drift_catchup_looks`` caps the looks a starting monitor computes for old windows (``None``
    in a backtest: every window). ``prices`` (``TELLTALE_USAGE_PRICES``) price the release
    test's cost watch; without them it watches output tokens."""

    client: Client
    settings: MonitorConfig
    store: DetectionStore
    instrument: InstrumentCheck | None = None
    drift_catchup_looks: int | None = None
    prices: PriceTable | None = None

    @property
    def repeat_window_minutes(self) -> int:
        return self.settings.unit_repeat_window_minutes

    @property
    def backfill_after_s(self) -> float:
        return self.settings.backfill_after_s

    @property
    def resolve_after(self) -> timedelta:
        return timedelta(minutes=self.settings.resolve_after_minutes)


@runtime_checkable
class Track(Protocol):
    """One detector kind inside the engine: its detectors, what they are fed, when they clear."""

    @property
    def name(self) -> str:
        """The detector name written to the ``detections`` table."""
        ...

    @property
    def series(self) -> int:
        """How many series the track follows now."""
        ...

    def advance(self, span: Span) -> None:
        """Feed every minute of ``span`` (``[span.start, span.until)``) to the detectors."""
        ...


TrackFactory = Callable[[TrackSetup], Track]
"""A track kind: built from the setup (a track class whose constructor takes it)."""
