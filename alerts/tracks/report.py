"""What one advance of the engine did, keyed by track name."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["EngineReport"]


@dataclass
class EngineReport:
    """What one :meth:`~alerts.tracks.engine.DetectionEngine.advance` did.

    ``tracks`` maps each track's name to its counters (``series`` followed after the advance,
    and what else the track counts, e.g. the prompt-drift track's ``looks``).
    """

    since: datetime | None = None
    until: datetime | None = None
    tracks: dict[str, dict[str, int]] = field(default_factory=dict)
    opened: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    skipped_signals: dict[str, str] = field(default_factory=dict)

    def count(self, track: str, counter: str, amount: int = 1) -> None:
        """Add ``amount`` to one of ``track``'s counters."""
        counters = self.tracks.setdefault(track, {})
        counters[counter] = counters.get(counter, 0) + amount

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "tracks": {name: dict(counters) for name, counters in self.tracks.items()},
            "opened": list(self.opened),
            "resolved": list(self.resolved),
            "skipped_signals": dict(self.skipped_signals),
        }
