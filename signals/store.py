"""Where fitted signals are kept: the :class:`SignalStore` protocol, and an in-memory store.

A signal is a sequence of immutable versions; the newest one that is not deleted is the one
applied. ``signals`` only states what a store must do: the ClickHouse store lives in the
composition root (``telltale.signal_store``), where both ``signals`` and ``storage`` are
visible. :class:`InMemorySignalStore` keeps the same rules in a dict, for unit tests of
:class:`~signals.live.LiveSignals` and for tools that run without a database.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Protocol

from signals.fitted import FittedSignal

__all__ = ["AUTO_RETRAIN_AUTHOR", "InMemorySignalStore", "RetrainOrigin", "SignalStore",
           "retrain_author", "retrained_from_version"]  # fmt: skip

AUTO_RETRAIN_AUTHOR = "auto-retrain from v{version}"
"""The author recorded with a version that a worker retrained on another embedder."""

_AUTO_RETRAIN = re.compile(r"^auto-retrain from v(\d+)$")


def retrain_author(version: int) -> str:
    """The author of the automatic retrain of ``version``."""
    return AUTO_RETRAIN_AUTHOR.format(version=version)


def retrained_from_version(author: str) -> int | None:
    """The version an automatic retrain replaced, read from its author; None for any other."""
    match = _AUTO_RETRAIN.match(author)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class RetrainOrigin:
    """What an automatically retrained version replaced: its version and embedder."""

    version: int
    embedder_id: str


class SignalStore(Protocol):
    """Versions of fitted signals.

    ``save`` stores the next free version (a human's new or changed signal). ``save_retrained``
    stores the retrain of ``old`` as version ``old.version + 1`` whatever is stored meanwhile,
    so any number of workers retraining the same version store it once; it returns the stored
    signal (also when another worker stored the same retrain first), or None when that version
    exists for another embedder (someone stored a newer signal: the next refresh applies it).
    """

    def latest(self) -> list[FittedSignal]:
        """The newest version of every signal that is not deleted, by name."""
        ...

    def save(self, fitted: FittedSignal, author: str = "") -> FittedSignal:
        """Store ``fitted`` as the next version of its signal; return it with that version."""
        ...

    def save_retrained(self, old: FittedSignal, fitted: FittedSignal) -> FittedSignal | None:
        """Store ``fitted``, the retrain of ``old`` on another embedder, as ``old.version + 1``."""
        ...

    def delete(self, name: str, author: str = "") -> bool:
        """Stop applying ``name`` (a tombstone version); False when there is no such signal."""
        ...

    def retrained_from(self, fitted: FittedSignal) -> RetrainOrigin | None:
        """The version ``fitted`` was automatically retrained from; None for any other."""
        ...


@dataclass(frozen=True)
class _Version:
    fitted: FittedSignal
    author: str
    deleted: bool = False


class InMemorySignalStore:
    """A :class:`SignalStore` in a dict, safe to share between threads (one per test or tool;
    no module-level state)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: dict[tuple[str, int], _Version] = {}

    def latest(self) -> list[FittedSignal]:
        with self._lock:
            newest: dict[str, _Version] = {}
            for (name, version), stored in self._versions.items():
                if name not in newest or version > newest[name].fitted.version:
                    newest[name] = stored
            return [v.fitted for _, v in sorted(newest.items()) if not v.deleted]

    def versions(self, name: str) -> list[tuple[int, str, str]]:
        """``(version, embedder id, author)`` of every stored version of ``name``, oldest first."""
        with self._lock:
            return sorted((v, s.fitted.embedder_id, s.author)
                          for (n, v), s in self._versions.items() if n == name)  # fmt: skip

    def save(self, fitted: FittedSignal, author: str = "") -> FittedSignal:
        with self._lock:
            version = 1 + max((v for n, v in self._versions if n == fitted.name), default=0)
            fitted = fitted.model_copy(update={"version": version})
            self._versions[(fitted.name, version)] = _Version(fitted, author)
            return fitted

    def save_retrained(self, old: FittedSignal, fitted: FittedSignal) -> FittedSignal | None:
        key = (old.name, old.version + 1)
        with self._lock:
            stored = self._versions.get(key)
            if stored is not None:
                same = stored.fitted.embedder_id == fitted.embedder_id and not stored.deleted
                return stored.fitted if same else None
            fitted = fitted.model_copy(update={"version": key[1]})
            self._versions[key] = _Version(fitted, retrain_author(old.version))
            return fitted

    def delete(self, name: str, author: str = "") -> bool:
        current = next((f for f in self.latest() if f.name == name), None)
        if current is None:
            return False
        with self._lock:
            tombstone = current.model_copy(update={"version": current.version + 1})
            self._versions[(name, tombstone.version)] = _Version(tombstone, author, deleted=True)
        return True

    def retrained_from(self, fitted: FittedSignal) -> RetrainOrigin | None:
        with self._lock:
            stored = self._versions.get((fitted.name, fitted.version))
            source = retrained_from_version(stored.author) if stored is not None else None
            origin = self._versions.get((fitted.name, source)) if source is not None else None
        if source is None or origin is None:
            return None
        return RetrainOrigin(source, origin.fitted.embedder_id)
