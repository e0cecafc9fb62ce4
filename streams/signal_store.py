"""Fitted signals kept in ClickHouse, and a live view of them for running workers.

A worker asks :class:`LiveSignals` for the current :class:`~signals.bank.SignalBank` before
each batch; it re-reads the registry at most every ``refresh_s`` seconds, so a signal added or
changed with ``telltale signals add`` is picked up without a restart. A signal trained on
another embedder is never applied (each field has its own embedder: the text model for text
fields, open_clip for images). When a ``retrain`` function is given, such a signal is retrained
from its stored examples on its field's current embedder by :meth:`LiveSignals.retrain_stale`
— called between batches, never inside one — and stored as the version after the one it
replaces: a deterministic identity, so any number of workers retraining the same signal at
once store exactly one new version (the ``signals`` table keeps one row per name and version).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from signals.bank import SignalBank
from signals.base import Embedder, TextEmbedder
from signals.embedders import FieldEmbedders, ids_by_field
from signals.errors import ImageError, SignalError
from signals.fitted import FittedSignal
from signals.images import ImagePolicy, load_image
from signals.training import train_signal
from storage.embeddings import event_contents, windows_by_event
from storage.registry import (
    SignalRecord,
    insert_signal,
    latest_signals,
    next_version,
    save_signal,
)

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client
    from numpy.typing import NDArray

__all__ = [
    "LiveSignals",
    "PublishedSignal",
    "StoredExamples",
    "load_fitted",
    "retrainer",
    "save_fitted",
    "save_retrained",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishedSignal:
    """A fitted signal sent to running workers over the control topic."""

    fitted: FittedSignal
    author: str = ""

    def to_json(self) -> bytes:
        return json.dumps(
            {"fitted": self.fitted.model_dump(mode="json"), "author": self.author}
        ).encode()

    @classmethod
    def from_json(cls, payload: bytes) -> PublishedSignal:
        data = json.loads(payload)
        return cls(FittedSignal.model_validate(data["fitted"]), str(data.get("author", "")))


def save_fitted(client: Client, fitted: FittedSignal, author: str = "") -> FittedSignal:
    """Store ``fitted`` as the next version of its signal; return it with that version."""
    version = next_version(client, fitted.name)
    fitted = fitted.model_copy(update={"version": version})
    save_signal(client, SignalRecord(
        name=fitted.name, version=version, kind=fitted.kind, embedder_id=fitted.embedder_id,
        definition=fitted.spec.model_dump_json(), fitted=fitted.model_dump_json(),
        author=author, created_at=fitted.trained_at, degenerate=fitted.degenerate,
        degenerate_reason=fitted.degenerate_reason,
    ))  # fmt: skip
    return fitted


def save_retrained(client: Client, old: FittedSignal, fitted: FittedSignal) -> FittedSignal | None:
    """Store ``fitted``, the retrain of ``old`` on another embedder, as version ``old + 1``.

    The version follows from ``old`` alone, not from what is stored now, so workers that
    retrain ``old`` at the same time all write the same (name, version), which the table keeps
    once. Returns the stored signal, or None when that version already exists for another
    embedder (someone stored a newer version meanwhile: the next refresh applies it).
    """
    version = old.version + 1
    rows = client.query(
        "SELECT embedder_id, fitted FROM signals FINAL "
        "WHERE name = {name:String} AND version = {version:UInt32}",
        parameters={"name": old.name, "version": version},
    ).result_rows
    if rows:
        embedder_id, stored = str(rows[0][0]), str(rows[0][1])
        if embedder_id != fitted.embedder_id or not stored:
            return None
        return FittedSignal.model_validate_json(stored)  # another worker was first
    fitted = fitted.model_copy(update={"version": version})
    insert_signal(client, SignalRecord(
        name=fitted.name, version=version, kind=fitted.kind, embedder_id=fitted.embedder_id,
        definition=fitted.spec.model_dump_json(), fitted=fitted.model_dump_json(),
        author=f"auto-retrain from v{old.version}", created_at=fitted.trained_at,
    ))  # fmt: skip
    return fitted


def load_fitted(client: Client) -> list[FittedSignal]:
    """The newest version of every live signal."""
    return [FittedSignal.model_validate_json(r.fitted) for r in latest_signals(client)]


class StoredExamples:
    """Examples given as stored event ids: their stored window vectors, or their content
    re-embedded when they were embedded by another model."""

    def __init__(self, client: Client, policy: ImagePolicy | None = None) -> None:
        self._client = client
        self._policy = policy

    def vectors(
        self, event_ids: Sequence[str], field: str, embedder: Embedder | TextEmbedder
    ) -> dict[str, NDArray[np.float32]]:
        """``(windows, dim)`` per known event id, in ``embedder``'s space."""
        found = {
            k: np.asarray(v, dtype=np.float32)
            for k, v in windows_by_event(self._client, event_ids, field, embedder.id).items()
        }
        missing = [e for e in event_ids if e not in found]
        if not missing:
            return found
        contents = event_contents(self._client, missing, field)
        ids = list(contents)
        groups: list[NDArray[np.float32]] = []
        if field.endswith(".image") and isinstance(embedder, Embedder):
            images, kept = [], []
            for event_id in ids:
                try:
                    images.append(load_image(contents[event_id], self._policy))
                    kept.append(event_id)
                except ImageError:
                    continue  # reported as unknown by the caller
            groups = [v[None, :] for v in embedder.embed_images(images)] if images else []
            ids = kept
        elif isinstance(embedder, TextEmbedder) and ids:
            groups = embedder.embed_windows([contents[e] for e in ids]).groups()
        elif ids:
            groups = [v[None, :] for v in embedder.embed_texts([contents[e] for e in ids])]
        found.update(zip(ids, groups, strict=True))
        return found


Retrain = Callable[[FittedSignal], FittedSignal | None]
"""Retrains a signal on the current embedder and stores it; None when a newer one exists."""


def retrainer(client: Client, embedder: Embedder | FieldEmbedders) -> Retrain:
    """Retrain a signal's stored spec on its field's embedder; store it
    (:func:`save_retrained`)."""

    def retrain(old: FittedSignal) -> FittedSignal | None:
        fitted = train_signal(old.spec, embedder, lookup=StoredExamples(client))
        return save_retrained(client, old, fitted)

    return retrain


class LiveSignals:
    """A :class:`SignalBank` for the current embedders, refreshed from storage every
    ``refresh_s``. ``embedder_id``: one id for every field, or field → id.

    Calling it (once per batch) only reads: signals of another embedder are left out and
    noted as stale. :meth:`retrain_stale` retrains them, between batches.
    """

    def __init__(
        self,
        client: Client,
        embedder_id: str | Mapping[str, str],
        refresh_s: float = 10.0,
        retrain: Retrain | None = None,
    ) -> None:
        self._client = client
        self._embedder_ids = ids_by_field(embedder_id)
        self._refresh_s = refresh_s
        self._retrain = retrain
        self._lock = threading.Lock()
        self._bank = SignalBank([], self._embedder_ids)
        self._loaded_at = float("-inf")
        self._skipped: set[tuple[str, int]] = set()
        self._stale: dict[tuple[str, int], FittedSignal] = {}

    def __call__(self) -> SignalBank:
        with self._lock:
            if time.monotonic() - self._loaded_at >= self._refresh_s:
                self._reload()
            return self._bank

    def invalidate(self) -> None:
        """Re-read the registry before the next batch."""
        with self._lock:
            self._loaded_at = float("-inf")

    @property
    def stale(self) -> list[FittedSignal]:
        """Signals of another embedder waiting for :meth:`retrain_stale`."""
        with self._lock:
            return list(self._stale.values())

    def retrain_stale(self) -> list[FittedSignal]:
        """Retrain the stale signals on their fields' embedders; return the versions stored.

        Runs outside any batch (the worker calls it on a timer, the CLI once at start-up);
        training and storing happen without the lock, so batches are never held up by it.
        """
        self()  # a fresh view of what is stale
        if self._retrain is None:
            return []
        done = []
        for key, fitted in list(self._stale.items()):
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

    def _reload(self) -> None:
        usable = []
        stale: dict[tuple[str, int], FittedSignal] = {}
        for fitted in load_fitted(self._client):
            key = (fitted.name, fitted.version)
            expected = self._embedder_ids.get(fitted.field, "")
            if fitted.embedder_id == expected:
                usable.append(fitted)
            elif key in self._skipped:
                continue
            elif self._retrain is not None:
                stale[key] = fitted
            else:
                self._skipped.add(key)
                log.warning(
                    "signal %r v%d was trained on %s, not %s: not applied until retrained",
                    fitted.name,
                    fitted.version,
                    fitted.embedder_id,
                    expected,
                )
        self._stale = stale
        before = {(s.name, s.version) for s in self._bank.signals}
        self._bank = SignalBank(usable, self._embedder_ids)
        after = {(s.name, s.version) for s in self._bank.signals}
        if before != after:
            log.info("signals now applied: %s", sorted(f"{n} v{v}" for n, v in after))
        self._loaded_at = time.monotonic()
