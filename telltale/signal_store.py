"""The ClickHouse side of signals: a :class:`~signals.store.SignalStore` over the ``signals``
table and an :class:`~signals.examples.EmbeddingSource` over ``embeddings`` and ``events``.

They convert between the ``signals`` package's types and ``storage``'s rows, so they live in
the composition root, the one package that sees both (``signals`` knows no ClickHouse,
``storage`` no signals). Signal versions are immutable: a human's new version takes the next
free number; a retrain of version k on another embedder is always version k + 1, stored with
an unchecked insert that any number of workers may repeat (the ReplacingMergeTree keeps one
row per name and version), so however many workers retrain at once there is one new version.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from signals import (
    FittedSignal,
    RetrainOrigin,
    SignalSpec,
    StoredExamples,
    TrainingError,
    WeakPool,
    retrain_author,
    retrained_from_version,
)
from storage import (
    SignalRecord,
    StoredEmbedding,
    delete_signal,
    event_contents,
    insert_signal,
    iter_embeddings,
    latest_signals,
    lowest_feedback,
    next_version,
    sample_embeddings,
    save_signal,
    signal_version,
    windows_by_event,
)

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from signals import ImagePolicy

__all__ = ["ClickHouseEmbeddings", "ClickHouseSignalStore", "stored_examples"]


def _record(fitted: FittedSignal, author: str) -> SignalRecord:
    return SignalRecord(
        name=fitted.name, version=fitted.version, kind=fitted.kind,
        embedder_id=fitted.embedder_id, definition=fitted.spec.model_dump_json(),
        fitted=fitted.model_dump_json(), author=author, created_at=fitted.trained_at,
        degenerate=fitted.degenerate, degenerate_reason=fitted.degenerate_reason,
    )  # fmt: skip


class ClickHouseSignalStore:
    """The :class:`~signals.store.SignalStore` of the ``signals`` table."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def latest(self) -> list[FittedSignal]:
        return [FittedSignal.model_validate_json(r.fitted) for r in latest_signals(self.client)]

    def get(self, name: str) -> FittedSignal | None:
        """The newest version of ``name``; None when there is none (or it was deleted)."""
        return next((f for f in self.latest() if f.name == name), None)

    def save(self, fitted: FittedSignal, author: str = "") -> FittedSignal:
        fitted = fitted.model_copy(update={"version": next_version(self.client, fitted.name)})
        save_signal(self.client, _record(fitted, author))
        return fitted

    def save_retrained(self, old: FittedSignal, fitted: FittedSignal) -> FittedSignal | None:
        # The version follows from `old` alone, not from what is stored now: workers that
        # retrain `old` at the same time all write the same (name, version), kept once.
        version = old.version + 1
        stored = signal_version(self.client, old.name, version)
        if stored is not None:
            if stored.embedder_id != fitted.embedder_id or not stored.fitted:
                return None
            return FittedSignal.model_validate_json(stored.fitted)  # another worker was first
        fitted = fitted.model_copy(update={"version": version})
        insert_signal(self.client, _record(fitted, retrain_author(old.version)))
        return fitted

    def delete(self, name: str, author: str = "") -> bool:
        return delete_signal(self.client, name, author)

    def retrained_from(self, fitted: FittedSignal) -> RetrainOrigin | None:
        stored = signal_version(self.client, fitted.name, fitted.version)
        source = retrained_from_version(stored.author) if stored is not None else None
        if source is None:
            return None
        origin = signal_version(self.client, fitted.name, source)
        return RetrainOrigin(source, origin.embedder_id) if origin is not None else None


class ClickHouseEmbeddings:
    """The :class:`~signals.examples.EmbeddingSource` of the ``embeddings`` and ``events``
    tables."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def windows_by_event(
        self, event_ids: Sequence[str], field: str, embedder_id: str
    ) -> dict[str, list[list[float]]]:
        return windows_by_event(self.client, event_ids, field, embedder_id)

    def contents(self, event_ids: Sequence[str], field: str) -> dict[str, str]:
        return event_contents(self.client, event_ids, field)

    def chunks(
        self,
        field: str,
        embedder_id: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        skip_scored: tuple[str, int] | None = None,
        chunk: int = 5_000,
    ) -> Iterator[list[StoredEmbedding]]:
        return iter_embeddings(self.client, field, embedder_id, since=since, until=until,
                               skip_scored=skip_scored, chunk=chunk)  # fmt: skip

    def sample(self, field: str, embedder_id: str, limit: int) -> list[StoredEmbedding]:
        return sample_embeddings(self.client, field, embedder_id, limit)


def stored_examples(client: Client, policy: ImagePolicy | None = None) -> StoredExamples:
    """Examples given as event ids, looked up in ``client``'s stored embeddings and events."""
    return StoredExamples(ClickHouseEmbeddings(client), policy)


def labelling_signals(client: Client, spec: SignalSpec) -> dict[str, FittedSignal]:
    """The current version of every signal ``spec``'s labelling functions name; a missing one
    is a :class:`~signals.errors.TrainingError` naming it."""
    store = ClickHouseSignalStore(client)
    found: dict[str, FittedSignal] = {}
    for function in spec.labelling_functions:
        if function.signal is None or function.signal in found:
            continue
        fitted = store.get(function.signal)
        if fitted is None:
            raise TrainingError(
                f"signal {spec.name!r}: labelling function {function.label!r} names signal "
                f"{function.signal!r}, which is not registered (see telltale signals list)"
            )
        found[function.signal] = fitted
    return found


def weak_pool(
    client: Client,
    field: str,
    embedder_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 2_000,
) -> WeakPool:
    """Up to ``limit`` stored events of ``field`` embedded by ``embedder_id`` in ``[since,
    until)`` (in event-id order, which for random ids is a fair sample), with their windows,
    stored text (text fields) and lowest feedback value."""
    import numpy as np

    rows: list[StoredEmbedding] = []
    for chunk in iter_embeddings(client, field, embedder_id, since=since, until=until):
        rows += chunk
        if len(rows) >= limit:
            break
    rows = rows[:limit]
    ids = [r.event_id for r in rows]
    texts = event_contents(client, ids, field) if field.endswith(".text") and ids else {}
    feedback = lowest_feedback(client, ids)
    return WeakPool(
        tuple(ids),
        [np.asarray(r.window_vectors, dtype=np.float32) for r in rows],
        [texts.get(i) or None for i in ids],
        [feedback.get(i) for i in ids],
    )
