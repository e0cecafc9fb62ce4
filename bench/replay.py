"""Replay throughput, side by side with raw ClickHouse inserts of the same rows.

    .venv/bin/python bench/replay.py [--pre-embedded 1000000] [--raw 10000] [--json]

One run prints:

* pre-embedded: ``--pre-embedded`` events in a Parquet log that carries each event's
  ``output.text`` embedding (same embedder), replayed into chDB through the column-wise fast
  path (:mod:`streams.columnar`: Arrow batches, vectorised validation, Arrow inserts):
  events/s and the growth of the process's resident memory while replaying (sampled after
  every batch);
* raw: ``--raw`` JSONL events without embeddings, replayed with the test model (the model
  embeds prompt and output): events/s;
* raw insert: the same rows the pipeline wrote (events, embeddings, scores), copied into a
  fresh database of the same chDB engine with clickhouse-connect, ``BATCH`` events per insert,
  timing the inserts only: events/s;

and the ratios replay ÷ raw insert. Everything runs on this machine, in one process.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds scripts named like the packages they measure (signals.py, alerts.py): keep this
# folder off the import path so `import signals` finds the package, not the script.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from signals.live import LiveSignals  # noqa: E402
from signals.open_clip_embedder import OpenClipEmbedder  # noqa: E402
from signals.spec import Examples, SignalSpec  # noqa: E402
from signals.training import train_signal  # noqa: E402
from storage.client import connect  # noqa: E402
from storage.migrate import migrate  # noqa: E402
from storage.queries import table_counts  # noqa: E402
from storage.rows import EmbeddingRow, EventRow, ScoreRow  # noqa: E402
from storage.writer import ClickHouseWriter  # noqa: E402
from streams.events import GenerationEvent  # noqa: E402
from streams.pipeline import Pipeline  # noqa: E402
from streams.replay import RejectWriter, Replayer, Vectors  # noqa: E402
from telltale.sample_data import advice_text, neutral_text  # noqa: E402
from telltale.signal_store import ClickHouseSignalStore  # noqa: E402

T0 = datetime(2026, 6, 1, tzinfo=UTC)
BATCH = 2048


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    """Resident memory now (the peak above cannot show growth once an earlier step peaked)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def write_parquet(path: Path, n: int, embedder: OpenClipEmbedder, rng: random.Random) -> None:
    """A log of ``n`` events whose output embedding is carried along (row groups of 50k)."""
    texts = [advice_text(rng) for _ in range(8)] + [neutral_text(rng) for _ in range(56)]
    vectors = embedder.embed_texts(texts)
    writer = None
    for start in range(0, n, 50_000):
        idx = np.arange(start, min(start + 50_000, n))
        pick = idx % len(texts)
        table = pa.table({
            "event_id": [f"pe-{i:08d}" for i in idx],
            "timestamp": [T0 + timedelta(milliseconds=int(i) * 50) for i in idx],
            "model": ["chat"] * len(idx),
            "model_version": ["v2" if i >= n // 2 else "v1" for i in idx],
            "output": [{"text": texts[p]} for p in pick],
            "embeddings": [{"embedder_id": embedder.id, "output.text": vectors[p].tolist()}
                           for p in pick],
        })  # fmt: skip
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    if writer is not None:
        writer.close()


def write_jsonl(path: Path, n: int, rng: random.Random) -> None:
    with path.open("w") as handle:
        for i in range(n):
            handle.write(json.dumps({
                "event_id": f"raw-{i:07d}", "model": "chat", "model_version": "v1",
                "timestamp": (T0 + timedelta(seconds=i)).isoformat(),
                "prompt": {"text": f"question {i % 50}: what should I buy?"},
                "output": {"text": advice_text(rng) if i % 10 == 0 else neutral_text(rng)},
            }) + "\n")  # fmt: skip


class Store:
    """The real pipeline as the replay sink."""

    def __init__(self, client: Any, embedder: OpenClipEmbedder) -> None:
        writer = ClickHouseWriter(client, max_rows=10_000_000)
        self.pipeline = Pipeline(
            embedder, LiveSignals(ClickHouseSignalStore(client), embedder.id, 3600), writer
        )

    def __call__(
        self, batch: list[GenerationEvent], vectors: Vectors
    ) -> tuple[int, int, list[tuple[str, str]]]:
        result = self.pipeline.process(batch, vectors)
        return result.written, result.skipped_existing, []


def replay(client: Any, embedder: OpenClipEmbedder, path: Path, tmp: Path
           ) -> tuple[float, float, int]:  # fmt: skip
    """Events/s, and the growth of resident memory during the replay (sampled per batch)."""
    before = current_rss_mib()
    samples = [before]
    store = Store(client, embedder)
    t0 = time.perf_counter()

    def sample(*_: object) -> None:
        samples.append(current_rss_mib())

    replayer = Replayer(store, RejectWriter(tmp / "rejects.jsonl"), embedder_id=embedder.id,
                        batch_size=BATCH, columnar=store.pipeline, on_progress=sample)  # fmt: skip
    stats = replayer.replay([path])
    seconds = time.perf_counter() - t0
    return stats.written / seconds, max(samples) - before, stats.written


_TABLES = (("embeddings", EmbeddingRow.COLUMNS), ("signal_scores", ScoreRow.COLUMNS),
           ("events", EventRow.COLUMNS))  # fmt: skip


def raw_insert(dsn: str, events: int) -> float:
    """Copy the rows the replay stored into a fresh database of the same engine, ``BATCH``
    events per insert, timing only the inserts: ClickHouse's own speed for the same rows."""
    source = connect(dsn)
    source.command("CREATE DATABASE IF NOT EXISTS raw_copy")
    target = connect(dsn, database="raw_copy")
    migrate(target)
    seconds, after = 0.0, ""
    while True:
        ids = [r[0] for r in source.query(
            "SELECT event_id FROM events WHERE event_id > {after:String} ORDER BY event_id "
            "LIMIT {n:UInt32}", parameters={"after": after, "n": BATCH}).result_rows]  # fmt: skip
        if not ids:
            break
        chunks = []
        for table, columns in _TABLES:
            sql = (
                f"SELECT {', '.join(columns)} FROM {table} WHERE event_id IN {{ids:Array(String)}}"
            )
            chunks.append((table, columns, source.query(sql, parameters={"ids": ids}).result_rows))
        t0 = time.perf_counter()
        for table, columns, rows in chunks:
            if rows:
                target.insert(table, rows, column_names=list(columns))
        seconds += time.perf_counter() - t0
        after = ids[-1]
    assert table_counts(target).events == events
    target.close()
    source.close()
    return events / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pre-embedded", type=int, default=1_000_000)
    parser.add_argument("--raw", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = random.Random(5)
    embedder = OpenClipEmbedder(model_name="telltale-tiny", pretrained=None, seed=0)
    spec = SignalSpec(name="stock_advice", examples=Examples(
        positive=tuple(advice_text(rng) for _ in range(8)),
        negative=tuple(neutral_text(rng) for _ in range(8))))  # fmt: skip
    fitted = train_signal(spec, embedder)
    out: dict[str, Any] = {"embedder": embedder.id, "batch": BATCH}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        results = {}
        for kind, count in (("pre_embedded", args.pre_embedded), ("raw", args.raw)):
            path = tmp / ("log.parquet" if kind == "pre_embedded" else "log.jsonl")
            t0 = time.perf_counter()
            if kind == "pre_embedded":
                write_parquet(path, count, embedder, rng)
            else:
                write_jsonl(path, count, rng)
            generated = time.perf_counter() - t0
            client = connect(f"chdb://{tmp / kind}")
            migrate(client)
            ClickHouseSignalStore(client).save(fitted)
            eps, rss_growth, written = replay(client, embedder, path, tmp)
            stored = table_counts(client).events
            client.close()
            insert_eps = raw_insert(f"chdb://{tmp / kind}", written)
            results[kind] = {
                "events": count, "stored": stored, "log_bytes": path.stat().st_size,
                "generate_s": generated, "replay_events_per_s": eps,
                "replay_rss_growth_mib": rss_growth,
                "raw_insert_events_per_s": insert_eps, "replay_over_raw_insert": eps / insert_eps,
            }  # fmt: skip
        out["results"] = results
        out["peak_rss_mib"] = rss_mib()
    if args.json:
        print(json.dumps(out, indent=2))
        return
    peak = out["peak_rss_mib"]
    print(f"embedder {embedder.id}; replay batch {BATCH}; 1 signal; peak RSS {peak:.0f} MiB")
    print(f"{'log':<34}{'events':>9}{'replay ev/s':>13}{'raw insert ev/s':>17}{'ratio':>7}"
          f"{'RSS +MiB':>10}")  # fmt: skip
    for kind, r in results.items():
        label = ("Parquet, pre-embedded (no model)" if kind == "pre_embedded"
                 else "JSONL, embedded by test model")  # fmt: skip
        print(f"{label:<34}{r['events']:>9}{r['replay_events_per_s']:>13.0f}"
              f"{r['raw_insert_events_per_s']:>17.0f}{r['replay_over_raw_insert']:>7.2f}"
              f"{r['replay_rss_growth_mib']:>10.0f}")  # fmt: skip
    print("(RSS +MiB: largest growth of resident memory during that replay, sampled per batch)")


if __name__ == "__main__":
    main()
