"""The interfaces of the alerts package: a detection record and the detector protocol.

A *detector* is a small, storage-free state machine. The monitor loop reads one observation at a
time from ClickHouse (a minute of counts, or a window of embeddings), hands it to
``detector.update(...)`` and, when an alarm opens, turns the detector's state into a
:class:`Detection` row for the ``detections`` table. Detectors never read clocks, never touch
storage and draw randomness only from their own seeded generators, so a backtest replays exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from alerts.tracks.span import Span

__all__ = ["Detection", "Detector", "Track"]

StateT_co = TypeVar("StateT_co", covariant=True)


@dataclass(frozen=True)
class Detection:
    """One opened alarm: what fired, on which series, when, and how strongly.

    ``key`` names the monitored series (e.g. ``"model=chat/v7/signal=jailbreak"``); ``statistic``
    is compared with ``threshold`` by the detector's own rule (an e-value against ``1/alpha``, a
    CUSUM sum against ``h``, a p-value against a level). ``p_value`` and ``e_value`` are set where
    the detector has one; ``effect`` with ``[effect_low, effect_high]`` is the estimated size of
    the change (a failure-rate difference for the rate detectors) and its interval, where there is
    one. ``details`` holds detector-specific, JSON-serialisable extras.
    """

    detector: str
    key: str
    opened_at: datetime
    statistic: float
    threshold: float
    p_value: float | None = None
    e_value: float | None = None
    effect: float | None = None
    effect_low: float | None = None
    effect_high: float | None = None
    details: dict[str, object] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.opened_at.tzinfo is None or self.opened_at.utcoffset() is None:
            raise ValueError("opened_at must be timezone-aware")
        # Normalise to UTC so rows written from different hosts compare and sort the same.
        object.__setattr__(self, "opened_at", self.opened_at.astimezone(UTC))


@runtime_checkable
class Detector(Protocol[StateT_co]):
    """A sequential change detector on one monitored series.

    ``update(...)`` is the only way to feed a detector. Its arguments depend on the detector (a
    minute of counts ``(n, k)``, the counts of two versions, or a pair of embedding windows), which
    is why the protocol types it as ``Callable[..., State]``; the contract is shared:

    * one call consumes one *new* observation (increments, never running totals) in time order;
    * it returns a frozen snapshot of the detector's state after that observation, with at least a
      ``fired: bool`` attribute that is true while an alarm is raised;
    * it is deterministic given the constructor's ``seed`` and the sequence of calls;
    * invalid input (negative counts, more failures than events) raises :class:`ValueError`
      and leaves the state untouched.

    :meth:`detection` turns the latest update into a :class:`Detection` exactly once per opened
    alarm (edge-triggered), so the monitor writes one row per alarm and not one per minute.
    """

    @property
    def name(self) -> str:
        """Stable detector name written to the ``detections`` table (e.g. ``"release_spike"``)."""
        ...

    @property
    def update(self) -> Callable[..., StateT_co]:
        """Consume one observation and return the new state (see the class docstring)."""
        ...

    def detection(self, key: str, at: datetime) -> Detection | None:
        """The detection opened by the latest update, or ``None`` if no alarm opened on it."""
        ...

    def reset(self) -> None:
        """Forget everything seen so far, as if freshly constructed with the same arguments."""
        ...


@runtime_checkable
class Track(Protocol):
    """One detector kind inside the engine: its detectors, what they are fed, when they clear.

    The engine reads a span of stored minutes once and hands it to every track in turn
    (:class:`~alerts.tracks.span.Span`: the counts, the releases, the detection book). A track
    keeps one detector per monitored series, feeds each the observations of the span in time
    order, and records alarms and resolutions in the span's book. Each track has its own settings
    model (:mod:`alerts.settings`), and wraps its detector through the detector's public interface
    only.
    """

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
