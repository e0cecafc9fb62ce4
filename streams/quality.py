"""How a fitted signal behaves on stored events: the share its threshold would flag.

Feeds :func:`signals.verdict.judge` when ``telltale signals add`` decides whether a signal is
degenerate. Scores a pseudo-random sample of the field's stored embeddings (windows included,
as the pipeline scores them) without writing anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from signals.bank import SignalBank
from signals.fitted import FittedSignal
from signals.windows import Windows
from storage.embeddings import sample_embeddings

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["stored_flag_share"]


def stored_flag_share(
    client: Client, fitted: FittedSignal, sample: int = 20_000
) -> tuple[float | None, int]:
    """(share flagged, events scored) over stored events of ``fitted``'s field and embedder;
    ``(None, 0)`` when nothing is stored yet."""
    rows = sample_embeddings(client, fitted.field, fitted.embedder_id, sample)
    if not rows:
        return None, 0
    windows = Windows.of(
        [np.asarray(r.window_vectors, dtype=np.float32) for r in rows], len(rows[0].vector)
    )
    flagged = SignalBank([fitted], fitted.embedder_id).score_windows(fitted.field, windows).flagged
    return float(flagged[:, 0].mean()), len(rows)
