"""What every track is handed for one advance: the span of minutes, its counts, the releases."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from alerts.tracks.book import DetectionBook
from alerts.tracks.report import EngineReport
from storage import MinuteCounts, Release, SeriesKey

__all__ = [
    "MINUTE",
    "ReleaseLink",
    "Span",
    "floor_minute",
    "link_releases",
    "series_key",
]

MINUTE = timedelta(minutes=1)


def floor_minute(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(second=0, microsecond=0)


def series_key(model: str, version: str, signal: str) -> str:
    return f"model={model}/{version}/signal={signal}"


@dataclass(frozen=True)
class ReleaseLink:
    """A release with its predecessor (the baseline) and successor (when it was superseded)."""

    model: str
    version: str
    released_at: datetime
    source: str
    previous: str | None
    superseded_at: datetime | None


def link_releases(releases: Iterable[Release]) -> dict[tuple[str, str], ReleaseLink]:
    """Order each model's releases by time and link each to the one before and after it."""
    by_model: dict[str, list[Release]] = {}
    for r in releases:
        by_model.setdefault(r.model, []).append(r)
    links = {}
    for model, items in by_model.items():
        items.sort(key=lambda r: (r.released_at, r.model_version))
        for i, r in enumerate(items):
            links[(model, r.model_version)] = ReleaseLink(
                model=model,
                version=r.model_version,
                released_at=r.released_at.astimezone(UTC),
                source=r.source,
                previous=items[i - 1].model_version if i else None,
                superseded_at=items[i + 1].released_at.astimezone(UTC)
                if i + 1 < len(items)
                else None,
            )
    return links


@dataclass(frozen=True)
class Span:
    """The minutes ``[start, until)`` one advance covers, and what was read for them once.

    ``counts`` are independent units per minute (:func:`storage.unit_counts`) of every series,
    degenerate signals already removed (``skipped`` names them with the reason). ``read_at`` is
    when the live monitor read the data (``None`` in a backtest): lagged baselines are read as
    of ``read_at - lag`` so they are exactly as late as the live minutes. Tracks record alarms
    and resolutions in ``book`` and what they did in ``report``.
    """

    start: datetime
    until: datetime
    counts: dict[SeriesKey, MinuteCounts]
    links: dict[tuple[str, str], ReleaseLink]
    skipped: dict[str, str]
    read_at: datetime | None
    book: DetectionBook
    report: EngineReport
