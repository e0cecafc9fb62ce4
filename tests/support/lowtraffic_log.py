"""A three-day production-shaped log of a low-traffic product, for the backtest.

About ten events an hour per model (a normal B2B product), with users, sessions, a few retries of
one request, a daily cycle in traffic, and prompt embeddings around topic centres:

* ``chat`` cuts over from ``v1`` to ``v2`` at ``RELEASE`` (day two, 12:00 UTC); the ``watermark``
  signal's failure rate jumps from 2% to 12% there. From ``DRIFT_AT`` (day three, 06:00 UTC) 35%
  of ``chat``'s prompts come from a new topic (the prompt-drift part of the scenario).
* ``support`` runs ``s1`` throughout with nothing changing: anything opened on it is false.

Use it from a test (:func:`write_log`) or write a database to look at::

    python tests/support/lowtraffic_log.py /tmp/lowtraffic-db
    telltale alerts backtest --clickhouse chdb:///tmp/lowtraffic-db --format json
"""

from __future__ import annotations

import math
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from storage.rows import EmbeddingRow, EventRow, ScoreRow, WriteBatch
from storage.writer import ClickHouseWriter

__all__ = ["DRIFT_AT", "EMBEDDER", "RELEASE", "START", "write_log"]

START = datetime(2026, 11, 3, tzinfo=UTC)  # a Tuesday: three weekdays
RELEASE = START + timedelta(days=1, hours=12)
DRIFT_AT = START + timedelta(days=2, hours=6)
END = START + timedelta(days=3)
EMBEDDER = "open_clip/test/random"
DIM = 16


def write_log(client: Any, *, per_hour: float = 10.0, seed: int = 0) -> dict[str, int]:
    """Write the log through the real writer; return the number of events per model."""
    rng = np.random.default_rng(seed)
    topics = rng.normal(0.0, 1.0, (6, DIM))
    base_mix = np.array([0.3, 0.25, 0.2, 0.15, 0.1, 0.0])
    drift_mix = 0.65 * base_mix + 0.35 * np.eye(6)[5]
    written: dict[str, int] = {}
    for model in ("chat", "support"):
        batch = WriteBatch()
        count = 0
        hours = int((END - START).total_seconds() // 3600)
        for h in range(hours):
            hour = START + timedelta(hours=h)
            cycle = 1.0 + 0.6 * math.sin(2 * math.pi * (hour.hour - 9) / 24)
            for _ in range(int(rng.poisson(per_hour * cycle))):
                at = hour + timedelta(seconds=float(rng.uniform(0, 3600)))
                version = "v2" if model == "chat" and at >= RELEASE else (
                    "v1" if model == "chat" else "s1")  # fmt: skip
                rate = 0.12 if version == "v2" else 0.02
                mix = drift_mix if model == "chat" and at >= DRIFT_AT else base_mix
                topic = int(rng.choice(6, p=mix))
                user = f"{model}-u{int(rng.integers(0, 400))}"
                prompt = f"topic {topic}: request {count}"
                failed = bool(rng.random() < rate)
                # One request in twenty is retried a few times (same user, same prompt).
                copies = 1 + (int(rng.integers(2, 6)) if rng.random() < 0.05 else 0)
                vector = (topics[topic] + rng.normal(0.0, 0.3, DIM)).tolist()
                for c in range(copies):
                    eid = f"{model}-{count}-{c}"
                    t = at + timedelta(seconds=20 * c)
                    batch.events.append(EventRow(eid, t, model, version, prompt_text=prompt,
                                                 user_id=user, session_id=f"{user}-s"))  # fmt: skip
                    batch.scores.append(
                        ScoreRow(eid, "watermark", 1, t, model, version, 0.9 * failed, failed)
                    )
                    batch.embeddings.append(
                        EmbeddingRow(eid, "prompt.text", EMBEDDER, t, model, version, vector)
                    )
                count += 1
        ClickHouseWriter(client).write(batch)
        written[model] = count
    return written


def main(argv: list[str]) -> int:
    from storage.client import connect
    from storage.migrate import migrate

    if len(argv) != 1:
        print("usage: python tests/support/lowtraffic_log.py DB_PATH", file=sys.stderr)
        return 2
    client = connect(f"chdb://{argv[0]}")
    try:
        migrate(client)
        print(write_log(client))
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
