"""An in-memory registry of fitted signals, one instance per worker (no module-level state)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from signals.bank import SignalBank
from signals.errors import DuplicateSignal
from signals.fitted import FittedSignal

__all__ = ["SignalRegistry"]


class SignalRegistry:
    """Fitted signals by name: ``register`` refuses a duplicate, ``replace`` swaps a version."""

    def __init__(self, signals: Iterable[FittedSignal] = ()) -> None:
        self._signals: dict[str, FittedSignal] = {}
        for signal in signals:
            self.register(signal)

    def register(self, signal: FittedSignal) -> None:
        if signal.name in self._signals:
            raise DuplicateSignal(f"a signal named {signal.name!r} is already registered")
        self._signals[signal.name] = signal

    def replace(self, signal: FittedSignal) -> None:
        self._signals[signal.name] = signal

    def remove(self, name: str) -> None:
        self._signals.pop(name, None)

    def get(self, name: str) -> FittedSignal:
        return self._signals[name]

    def __contains__(self, name: object) -> bool:
        return name in self._signals

    def __iter__(self) -> Iterator[FittedSignal]:
        return iter(sorted(self._signals.values(), key=lambda s: s.name))

    def __len__(self) -> int:
        return len(self._signals)

    def bank(self, embedder_id: str) -> SignalBank:
        return SignalBank(list(self), embedder_id)
