"""A live view of the stored signals for a running worker, and retraining between batches.

A worker asks :class:`LiveSignals` for the current :class:`~signals.bank.SignalBank` before
each batch; it re-reads its :class:`~signals.store.SignalStore` at most every ``refresh_s``
seconds, so a signal added or changed with ``telltale signals add`` is picked up without a
restart. A signal trained on another embedder is never applied (each field has its own
embedder: the text model for text fields, open_clip for images). When a ``retrain`` function
is given, such a signal is retrained on its field's current embedder by
:meth:`LiveSignals.retrain_stale` — called between batches, never inside one — and stored as
the version after the one it replaces: a deterministic identity, so any number of workers
retraining the same signal at once store exactly one new version.

A rolling upgrade runs workers on two embedders at once. A worker does not retrain back a
version that another worker retrained away from its own embedder less than
``retrain_cooldown_s`` ago (the workers would otherwise retrain it back and forth, one version
per refresh): it leaves that signal unapplied and says so until the upgrade is done. After the
cool-down it retrains (a deliberate roll-back).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from signals.bank import SignalBank
from signals.base import Embedder
from signals.embedders import FieldEmbedders, ids_by_field
from signals.errors import SignalError
from signals.fitted import FittedSignal
from signals.store import RetrainOrigin, SignalStore
from signals.training import ExampleLookup, train_signal

__all__ = ["DEFAULT_RETRAIN_COOLDOWN_S", "LiveSignals", "Retrain", "retrainer"]

log = logging.getLogger(__name__)

DEFAULT_RETRAIN_COOLDOWN_S = 3600.0
"""How long a worker leaves alone a version retrained away from its embedder."""

Retrain = Callable[[FittedSignal], FittedSignal | None]
"""Retrains a signal on the current embedder and stores it; None when a newer one exists."""


def retrainer(
    store: SignalStore, embedder: Embedder | FieldEmbedders, lookup: ExampleLookup | None = None
) -> Retrain:
    """Retrain a signal's stored spec on its field's embedder (examples given as event ids
    through ``lookup``) and store it with :meth:`SignalStore.save_retrained`."""

    def retrain(old: FittedSignal) -> FittedSignal | None:
        fitted = train_signal(old.spec, embedder, lookup=lookup)
        return store.save_retrained(old, fitted)

    return retrain


class LiveSignals:
    """A :class:`SignalBank` for the current embedders, refreshed from ``store`` every
    ``refresh_s``. ``embedder_id``: one id for every field, or field → id.

    Calling it (once per batch) only reads: signals of another embedder are left out and
    noted as stale. :meth:`retrain_stale` retrains them, between batches. ``clock`` gives the
    current UTC time (for the cool-down; injectable for tests).
    """

    def __init__(
        self,
        store: SignalStore,
        embedder_id: str | Mapping[str, str],
        refresh_s: float = 10.0,
        retrain: Retrain | None = None,
        *,
        retrain_cooldown_s: float = DEFAULT_RETRAIN_COOLDOWN_S,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._embedder_ids = ids_by_field(embedder_id)
        self._refresh_s = refresh_s
        self._retrain = retrain
        self._cooldown_s = retrain_cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._bank = SignalBank([], self._embedder_ids)
        self._loaded_at = float("-inf")
        self._skipped: set[tuple[str, int]] = set()
        self._held: set[tuple[str, int]] = set()
        self._origins: dict[tuple[str, int], RetrainOrigin | None] = {}
        self._stale: dict[tuple[str, int], FittedSignal] = {}

    def __call__(self) -> SignalBank:
        with self._lock:
            if time.monotonic() - self._loaded_at >= self._refresh_s:
                self._reload()
            return self._bank

    def invalidate(self) -> None:
        """Re-read the store before the next batch."""
        with self._lock:
            self._loaded_at = float("-inf")

    def add(self, fitted: FittedSignal, author: str = "") -> FittedSignal:
        """Store ``fitted`` as its signal's next version; apply it from the next batch."""
        stored = self._store.save(fitted, author)
        self.invalidate()
        return stored

    @property
    def stale(self) -> list[FittedSignal]:
        """Signals of another embedder waiting for :meth:`retrain_stale`."""
        with self._lock:
            return list(self._stale.values())

    @property
    def held(self) -> list[tuple[str, int]]:
        """(name, version) of signals left unapplied during a rolling upgrade (the cool-down)."""
        with self._lock:
            return sorted(self._held)

    def retrain_stale(self) -> list[FittedSignal]:
        """Retrain the stale signals on their fields' embedders; return the versions stored.

        Runs outside any batch (the worker calls it on a timer, the CLI once at start-up);
        training and storing happen without the lock, so batches are never held up by it.
        """
        self()  # a fresh view of what is stale
        if self._retrain is None:
            return []
        done = []
        for key, fitted in self._stale_items():
            expected = self._embedder_ids.get(fitted.field, "")
            try:
                new = self._retrain(fitted)
            except (SignalError, ValueError) as exc:
                with self._lock:
                    self._stale.pop(key, None)
                    self._skipped.add(key)
                log.error("cannot retrain signal %r v%d on %s: %s",
                          fitted.name, fitted.version, expected, exc)  # fmt: skip
                continue
            with self._lock:
                self._stale.pop(key, None)
            if new is not None:
                log.warning("signal %r v%d was trained on %s; v%d is its retrain on %s",
                            fitted.name, fitted.version, fitted.embedder_id, new.version,
                            expected)  # fmt: skip
                done.append(new)
        if done:
            self.invalidate()
        return done

    def _stale_items(self) -> list[tuple[tuple[str, int], FittedSignal]]:
        with self._lock:
            return list(self._stale.items())

    def _reload(self) -> None:
        usable = []
        stale: dict[tuple[str, int], FittedSignal] = {}
        held: set[tuple[str, int]] = set()
        for fitted in self._store.latest():
            key = (fitted.name, fitted.version)
            expected = self._embedder_ids.get(fitted.field, "")
            if fitted.usable_with(self._embedder_ids):
                usable.append(fitted)
            elif key in self._skipped:
                continue
            elif self._retrain is None:
                self._skipped.add(key)
                log.warning(
                    "signal %r v%d was trained on %s, not %s: not applied until retrained",
                    fitted.name,
                    fitted.version,
                    fitted.embedder_id,
                    expected,
                )
            elif self._retrained_away(fitted, expected):
                if key not in self._held:
                    log.warning(
                        "signal %r v%d was retrained from %s (this worker's embedder) to %s "
                        "%s ago by another worker: a rolling upgrade? Not applied here, and "
                        "not retrained back for %.0f s",
                        fitted.name, fitted.version, expected, fitted.embedder_id,
                        self._clock() - fitted.trained_at, self._cooldown_s,
                    )  # fmt: skip
                held.add(key)
            else:
                stale[key] = fitted
        self._stale = stale
        self._held = held
        before = {(s.name, s.version) for s in self._bank.signals}
        self._bank = SignalBank(usable, self._embedder_ids)
        after = {(s.name, s.version) for s in self._bank.signals}
        if before != after:
            log.info("signals now applied: %s", sorted(f"{n} v{v}" for n, v in after))
        self._loaded_at = time.monotonic()

    def _retrained_away(self, fitted: FittedSignal, embedder_id: str) -> bool:
        """Whether ``fitted`` is a recent automatic retrain of a version on ``embedder_id``."""
        age_s = (self._clock() - fitted.trained_at).total_seconds()
        if age_s >= self._cooldown_s:
            return False
        key = (fitted.name, fitted.version)
        if key not in self._origins:  # a stored version's origin never changes
            self._origins[key] = self._store.retrained_from(fitted)
        origin = self._origins[key]
        return origin is not None and origin.embedder_id == embedder_id
