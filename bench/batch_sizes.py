"""The settings that matter for scale: worker batch size and ClickHouse insert size.

    .venv/bin/python bench/batch_sizes.py [--json]

1. in-process pipeline events/s (embed with the test model, score, write to chDB) for worker
   batches of 16, 64, 256 and 1024 events;
2. ClickHouse insert events/s (events + embeddings + scores rows, no model) for inserts of
   100, 1,000, 10,000 and 50,000 events.

Both on the same generated events, one run, this machine. Feeds docs/scaling.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from signals.live import LiveSignals  # noqa: E402
from signals.open_clip_embedder import OpenClipEmbedder  # noqa: E402
from storage.client import connect  # noqa: E402
from storage.migrate import migrate  # noqa: E402
from storage.rows import EmbeddingRow, EventRow, ScoreRow, WriteBatch  # noqa: E402
from storage.writer import ClickHouseWriter  # noqa: E402
from streams.events import GenerationEvent, validate_event  # noqa: E402
from streams.pipeline import Pipeline  # noqa: E402
from telltale.sample_data import advice_text, neutral_text  # noqa: E402
from telltale.signal_store import ClickHouseSignalStore  # noqa: E402

T0 = datetime(2026, 7, 1, tzinfo=UTC)


def events(n: int, prefix: str, rng: random.Random) -> list[GenerationEvent]:
    return [validate_event({
        "event_id": f"{prefix}-{i:07d}", "timestamp": (T0 + timedelta(seconds=i)).isoformat(),
        "model": "chat", "model_version": "v1", "prompt": {"text": f"question {i % 40}"},
        "output": {"text": advice_text(rng) if i % 9 == 0 else neutral_text(rng)},
    }) for i in range(n)]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--pipeline-events", type=int, default=2048)
    parser.add_argument("--insert-events", type=int, default=100_000)
    args = parser.parse_args()
    rng = random.Random(3)
    embedder = OpenClipEmbedder(model_name="telltale-tiny", pretrained=None, seed=0)
    out: dict[str, Any] = {"pipeline": [], "insert": []}
    with tempfile.TemporaryDirectory() as tmp:
        client = connect(f"chdb://{tmp}/db")
        migrate(client)
        pipeline = Pipeline(embedder, LiveSignals(ClickHouseSignalStore(client), embedder.id, 3600),
                            ClickHouseWriter(client))  # fmt: skip
        for size in (16, 64, 256, 1024):
            batch = events(args.pipeline_events, f"b{size}", rng)
            t0 = time.perf_counter()
            for i in range(0, len(batch), size):
                pipeline.process(batch[i : i + size])
            out["pipeline"].append(
                {"batch": size, "events_per_s": len(batch) / (time.perf_counter() - t0)}
            )
        vector = np.random.default_rng(0).normal(size=embedder.dim).astype(np.float32).tolist()
        for size in (100, 1_000, 10_000, 50_000):
            writer = ClickHouseWriter(client, max_rows=10_000_000)
            n = args.insert_events
            total = 0.0
            for start in range(0, n, size):
                b = WriteBatch()
                for i in range(start, min(start + size, n)):
                    eid, ts = f"i{size}-{i:07d}", T0 + timedelta(seconds=i)
                    b.events.append(EventRow(eid, ts, "chat", "v1", output_text="x"))
                    b.embeddings.append(EmbeddingRow(eid, "output.text", embedder.id, ts, "chat",
                                                     "v1", vector))  # fmt: skip
                    b.scores.append(ScoreRow(eid, "s", 1, ts, "chat", "v1", 0.1, False))
                t0 = time.perf_counter()
                writer.write(b)
                total += time.perf_counter() - t0
            out["insert"].append({"events_per_insert": size, "events_per_s": n / total})
        client.close()
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"1. pipeline (embed {embedder.id} + score + write), {args.pipeline_events} events")
    for row in out["pipeline"]:
        print(f"   batch {row['batch']:>5}: {row['events_per_s']:8.1f} events/s")
    print(f"2. ClickHouse (chDB) inserts of events+embeddings+scores, {args.insert_events} events")
    for row in out["insert"]:
        size, eps = row["events_per_insert"], row["events_per_s"]
        print(f"   {size:>6} events per insert: {eps:9.0f} events/s")


if __name__ == "__main__":
    main()
