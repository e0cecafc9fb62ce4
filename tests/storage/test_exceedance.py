"""Per-event quantities above a threshold, per unit and minute (storage.exceedance), on real chDB:
units as in unit_counts, events without the quantity left out, cost at the version's price, the
threshold a deterministic quantile, rows read as of an instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from storage import (
    Exceedance,
    Price,
    exceedance_counts,
    quantity_quantile,
    unit_counts,
)
from storage.rows import EventRow, ScoreRow, WriteBatch
from storage.writer import ClickHouseWriter

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
PRICE = Price(model="chat", input_per_1m=1e6, output_per_1m=2e6)  # 1 per input, 2 per output token
WATCHES = [
    Exceedance("latency.p95", "latency_ms", 750.0),
    Exceedance("usage.output_tokens", "output_tokens", 5.0),
    Exceedance("usage.cost_per_event", "cost", 60.0),
]


def _seed(client: Any) -> None:
    """Ten minutes of ten events: event ``i`` takes ``100 i`` ms (none for ``i = 0``), reports
    ``10 i`` input tokens from ``i = 2`` and ``i`` output tokens from ``i = 3``; event 9 is one
    user retrying one prompt every minute (one unit, in minute 0)."""
    batch = WriteBatch()
    for m in range(10):
        for i in range(10):
            at, eid = T0 + timedelta(minutes=m, seconds=5 * i), f"e{m}-{i}"
            batch.events.append(EventRow(
                eid, at, "chat", "v1", prompt_text="same" if i == 9 else f"p{m}-{i}",
                user_id="u1" if i == 9 else "", latency_ms=float(100 * i) if i else None,
                input_tokens=10 * i if i >= 2 else None, output_tokens=i if i >= 3 else None,
            ))  # fmt: skip
            batch.scores.append(ScoreRow(eid, "sig", 1, at, "chat", "v1", 0.1, False))
    ClickHouseWriter(client).write(batch)


def test_units_above_the_threshold_per_minute_leave_out_events_without_the_quantity(
    ch: Any,
) -> None:
    _seed(ch)
    found = exceedance_counts(ch, T0, T0 + HOUR, model="chat", model_version="v1",
                              watches=WATCHES, price=PRICE)  # fmt: skip
    first, later = T0, T0 + timedelta(minutes=1)
    # latency: events 1-9 hold it (9 units in minute 0, the retried one counted once), 8 and 9
    # are above 750 ms; later minutes lose the retry unit.
    assert found[("chat", "v1", "latency.p95")][first] == (9, 2)
    assert found[("chat", "v1", "latency.p95")][later] == (8, 1)
    # output tokens from event 3 on; above 5: events 6-9.
    assert found[("chat", "v1", "usage.output_tokens")][first] == (7, 4)
    # cost from event 2 on (output tokens missing count as 0): 12 i > 60 for i >= 6.
    assert found[("chat", "v1", "usage.cost_per_event")][first] == (8, 4)
    assert len(found[("chat", "v1", "latency.p95")]) == 10
    # the same units as the failure counts
    assert unit_counts(ch, T0, T0 + HOUR)[("chat", "v1", "sig")][first][0] == 10


def test_thresholds_are_quantiles_over_units_of_their_largest_value(ch: Any) -> None:
    _seed(ch)
    # 81 units hold a latency: ten each of 100 ... 800 ms, and the retried request once (900).
    median, units = quantity_quantile(ch, T0, T0 + HOUR, model="chat", model_version="v1",
                                      quantity="latency_ms", level=0.5)  # fmt: skip
    assert (median, units) == (500.0, 81)
    top, _ = quantity_quantile(ch, T0, T0 + HOUR, model="chat", model_version="v1",
                               quantity="latency_ms", level=0.99)  # fmt: skip
    assert 800.0 <= top < 900.0  # over events (ten copies of 900 ms) it would be 900
    # 71 units hold a cost: 12 i for i = 3 ... 8 (ten each), 20 for i = 2, 108 for the retries.
    cost, units = quantity_quantile(ch, T0, T0 + HOUR, model="chat", model_version="v1",
                                    quantity="cost", level=0.5, price=PRICE)  # fmt: skip
    assert (cost, units) == (60.0, 71)
    assert quantity_quantile(ch, T0, T0 + HOUR, model="chat", model_version="v2",
                             quantity="latency_ms", level=0.5) == (None, 0)  # fmt: skip
    with pytest.raises(ValueError, match="price"):
        quantity_quantile(ch, T0, T0 + HOUR, model="chat", model_version="v1", quantity="cost",
                          level=0.5)  # fmt: skip


def test_as_of_leaves_out_rows_ingested_later_unless_they_are_backfills(ch: Any) -> None:
    _seed(ch)
    before = T0 + timedelta(minutes=5)  # every row was ingested long after its timestamp
    kept = exceedance_counts(ch, T0, T0 + HOUR, model="chat", model_version="v1",
                             watches=WATCHES[:1], as_of=before)  # fmt: skip
    assert sum(n for n, _ in kept[("chat", "v1", "latency.p95")].values()) == 81  # back-fills
    dropped = exceedance_counts(ch, T0, T0 + HOUR, model="chat", model_version="v1",
                                watches=WATCHES[:1], as_of=before,
                                backfill_after_s=10 * 365 * 86_400.0)  # fmt: skip
    assert dropped == {}
