"""Fitted signals kept in ClickHouse, and a live view of them for running workers.

A worker asks :class:`LiveSignals` for the current :class:`~signals.bank.SignalBank` before
each batch; it re-reads the registry at most every ``refresh_s`` seconds, so a signal added or
changed with ``telltale signals add`` is picked up without a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from signals.bank import SignalBank
from signals.fitted import FittedSignal
from storage.registry import SignalRecord, latest_signals, next_version, save_signal

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["LiveSignals", "load_fitted", "save_fitted"]

log = logging.getLogger(__name__)


def save_fitted(client: Client, fitted: FittedSignal, author: str = "") -> FittedSignal:
    """Store ``fitted`` as the next version of its signal; return it with that version."""
    version = next_version(client, fitted.name)
    fitted = fitted.model_copy(update={"version": version})
    save_signal(client, SignalRecord(
        name=fitted.name, version=version, kind=fitted.kind, embedder_id=fitted.embedder_id,
        definition=fitted.spec.model_dump_json(), fitted=fitted.model_dump_json(),
        author=author, created_at=fitted.trained_at,
    ))  # fmt: skip
    return fitted


def load_fitted(client: Client) -> list[FittedSignal]:
    """The newest version of every live signal."""
    return [FittedSignal.model_validate_json(r.fitted) for r in latest_signals(client)]


class LiveSignals:
    """A :class:`SignalBank` for one embedder, refreshed from storage every ``refresh_s``."""

    def __init__(self, client: Client, embedder_id: str, refresh_s: float = 10.0) -> None:
        self._client = client
        self._embedder_id = embedder_id
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._bank = SignalBank([], embedder_id)
        self._loaded_at = float("-inf")
        self._skipped: set[tuple[str, int]] = set()

    def __call__(self) -> SignalBank:
        with self._lock:
            if time.monotonic() - self._loaded_at >= self._refresh_s:
                self._reload()
            return self._bank

    def _reload(self) -> None:
        usable = []
        for fitted in load_fitted(self._client):
            if fitted.embedder_id == self._embedder_id:
                usable.append(fitted)
            elif (fitted.name, fitted.version) not in self._skipped:
                self._skipped.add((fitted.name, fitted.version))
                log.warning(
                    "signal %r v%d was trained on %s, not %s: not applied until retrained",
                    fitted.name,
                    fitted.version,
                    fitted.embedder_id,
                    self._embedder_id,
                )
        before = {(s.name, s.version) for s in self._bank.signals}
        self._bank = SignalBank(usable, self._embedder_id)
        after = {(s.name, s.version) for s in self._bank.signals}
        if before != after:
            log.info("signals now applied: %s", sorted(f"{n} v{v}" for n, v in after))
        self._loaded_at = time.monotonic()
