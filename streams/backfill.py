"""Back-fill: score stored embeddings with a signal, without re-embedding anything.

A new or changed signal gets its history: every stored embedding of its field (under the
embedder it was trained on) in ``[since, until)`` is scored and written to ``signal_scores``
with the signal's version, so ``telltale rates`` shows the series as if the signal had always
existed. Idempotent: events already scored with this version are skipped, and the rate view
counts distinct events anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from signals.bank import SignalBank
from signals.fitted import FittedSignal
from signals.windows import Windows
from storage.embeddings import count_embeddings, iter_embeddings
from storage.rows import ScoreRow, WriteBatch
from storage.writer import ClickHouseWriter

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["BackfillResult", "backfill", "backfill_total"]


@dataclass(frozen=True)
class BackfillResult:
    scored: int
    flagged: int


def backfill_total(
    client: Client, signal: FittedSignal, since: datetime | None, until: datetime | None
) -> int:
    """Upper bound of events to score, for a progress bar."""
    return count_embeddings(client, signal.field, signal.embedder_id, since, until)


def backfill(
    client: Client,
    signal: FittedSignal,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    chunk: int = 5_000,
    progress: Callable[[int], None] | None = None,
) -> BackfillResult:
    """Score every stored embedding of ``signal``'s field not yet scored by this version."""
    bank = SignalBank([signal], signal.embedder_id)
    writer = ClickHouseWriter(client)
    scored = flagged = 0
    for rows in iter_embeddings(
        client, signal.field, signal.embedder_id, since=since, until=until,
        skip_scored=(signal.name, signal.version), chunk=chunk,
    ):  # fmt: skip
        # Long texts are scored on their stored windows (max over windows), as when ingested.
        dim = len(rows[0].vector)
        windows = Windows.of([np.asarray(r.window_vectors, dtype=np.float32) for r in rows], dim)
        result = bank.score_windows(signal.field, windows)
        batch = WriteBatch(scores=[
            ScoreRow(r.event_id, signal.name, signal.version, r.timestamp, r.model,
                     r.model_version, float(result.probabilities[i, 0]),
                     bool(result.flagged[i, 0]))
            for i, r in enumerate(rows)
        ])  # fmt: skip
        writer.write(batch)
        scored += len(rows)
        flagged += int(result.flagged[:, 0].sum())
        if progress is not None:
            progress(len(rows))
    return BackfillResult(scored=scored, flagged=flagged)
