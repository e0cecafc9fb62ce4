"""The detectors' interface: a detection record and the detector protocol.

A detector is a small, storage-free state machine: it never reads clocks or storage and draws
randomness only from its own seeded generator, so a backtest replays exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ParamSpec, Protocol, TypeVar, runtime_checkable

__all__ = ["Detection", "Detector"]

Observation = ParamSpec("Observation")
StateT_co = TypeVar("StateT_co", covariant=True)


@dataclass(frozen=True)
class Detection:
    """One opened alarm: what fired, on which series, when, and how strongly.

    ``key`` names the monitored series (e.g. ``"model=chat/v7/signal=jailbreak"``); ``statistic``
    is compared with ``threshold`` by the detector's own rule (an e-value against ``1/alpha``, a
    CUSUM sum against ``h``, a p-value against a level). ``p_value`` and ``e_value`` are set where
    the detector has one; ``effect`` with ``[effect_low, effect_high]`` is the estimated size of
    the change and its interval, where there is one. ``details`` holds detector-specific,
    JSON-serialisable extras.
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
class Detector(Protocol[Observation, StateT_co]):
    """A sequential change detector on one monitored series, generic in what one observation is
    (the arguments of :meth:`update`) and in its state snapshot.

    ``Detector[[int, int, datetime], SeasonalCusumState]`` is a detector fed a minute's counts
    and its start. The contract:

    * one :meth:`update` consumes one *new* observation (increments, never running totals) in
      time order and returns a frozen snapshot with at least ``fired: bool``;
    * it is deterministic given the constructor's ``seed`` and the sequence of calls;
    * invalid input (negative counts, more failures than events) raises :class:`ValueError`
      and leaves the state untouched;
    * :meth:`detection` turns the latest update into a :class:`Detection` exactly once per
      opened alarm (edge-triggered), so the monitor writes one row per alarm, not per minute.
    """

    @property
    def name(self) -> str:
        """Stable detector name written to the ``detections`` table (e.g. ``"release_spike"``)."""
        ...

    def update(self, *args: Observation.args, **kwargs: Observation.kwargs) -> StateT_co:
        """Consume one observation and return the new state."""
        ...

    def detection(self, key: str, at: datetime) -> Detection | None:
        """The detection opened by the latest update, or ``None`` if no alarm opened on it."""
        ...

    def reset(self) -> None:
        """Forget everything seen so far, as if freshly constructed with the same arguments."""
        ...
