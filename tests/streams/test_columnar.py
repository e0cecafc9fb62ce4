"""The column-wise replay of pre-embedded Parquet stores exactly what the per-event path does.

One production-shaped log (valid pre-embedded rows, rows the contract rejects, rows another
embedder computed, rows without a vector for their prompt, repeats, attributes that carry the
user, string and typed timestamps) is replayed twice into two chDB databases: once per event,
once column-wise. Every stored row, every reject and the counts must be the same.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from signals.live import LiveSignals
from signals.open_clip_embedder import OpenClipEmbedder
from signals.spec import Examples, SignalSpec
from signals.training import train_signal
from storage.client import connect
from storage.migrate import migrate
from storage.writer import ClickHouseWriter
from streams.columnar import split_batch
from streams.events import GenerationEvent
from streams.pipeline import Pipeline
from streams.replay import Checkpoint, RejectWriter, Replayer, ReplayStats, Vectors
from telltale.signal_store import ClickHouseSignalStore

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
ADVICE = ("Buy ACME shares now.", "Put your savings into TSLA.", "Sell bonds, buy NVDA today.")
NEUTRAL = ("Paris is the capital of France.", "Boil pasta for ten minutes.", "Rain is water.")
N = 400


def build_log(path: Path, embedder: OpenClipEmbedder, *, string_times: bool) -> None:
    rng = random.Random(3)
    texts = [*ADVICE, *NEUTRAL]
    out_vec = embedder.embed_texts(texts)
    prompts = [f"question {k}" for k in range(5)]
    prompt_vec = embedder.embed_texts(prompts)
    rows: list[dict[str, Any]] = []
    for i in range(N):
        t, p = i % len(texts), i % len(prompts)
        ts = T0 + timedelta(seconds=7 * i, microseconds=1234 * (i % 3))
        row: dict[str, Any] = {
            "event_id": f"c-{i:05d}",
            "timestamp": ts.isoformat() if string_times else ts,
            "model": "chat", "model_version": "v2" if i % 2 else "v1",
            "app": "shop" if i % 3 else None, "release": None,
            "prompt": {"text": prompts[p]} if i % 4 else None,
            "output": {"text": texts[t], "image": None},
            "latency_ms": float(rng.randint(10, 900)) if i % 5 else None,
            "feedback": [-1, 0, 1, None][i % 4],
            "usage": None if i % 7 == 0 else {"input_tokens": 20 + i % 50,
                                              "output_tokens": None if i % 3 == 0 else i % 40},
            "user_id": None, "session_id": f"s{i % 11}" if i % 6 == 0 else None,
            "attributes": [("user.id", f"u{i % 13}"), ("tier", "gold")] if i % 2 else None,
            "embeddings": {"embedder_id": embedder.id, "output.text": out_vec[t].tolist(),
                           "prompt.text": prompt_vec[p].tolist() if i % 4 else None},
        }  # fmt: skip
        rows.append(row)
    # what a production log holds besides clean rows
    rows[5]["embeddings"]["embedder_id"] = "other/model"  # the model embeds it
    rows[9]["embeddings"]["prompt.text"] = None  # prompt present, its vector missing
    rows[13]["model"] = ""  # rejected: empty model
    rows[17]["latency_ms"] = -3.0  # rejected
    rows[21]["feedback"] = 2  # rejected
    rows[22]["usage"] = {"input_tokens": -4, "output_tokens": 1}  # rejected: negative tokens
    rows[25]["output"] = {"text": None, "image": None}
    rows[25]["prompt"] = None  # rejected: no content
    rows[29]["event_id"] = "c-00003"  # a repeat inside one batch
    rows[333]["event_id"] = "c-00004"  # a repeat in a later batch
    rows[41]["embeddings"]["output.text"] = out_vec[0][:10].tolist()  # wrong dimension
    rows[45]["user_id"] = ""  # present but empty: not promoted from attributes
    rows[49]["attributes"] = [("user.id", ""), ("enduser.id", "e49")]
    if string_times:
        rows[53]["timestamp"] = (T0 + timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%SZ")
        rows[57]["timestamp"] = "2026-13-45T00:00:00Z"  # rejected: no such date
        rows[61]["timestamp"] = (T0 + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S")
    else:
        rows[53]["timestamp"] = datetime.now(UTC) + timedelta(days=30)  # rejected: future
    kinds = pa.map_(pa.string(), pa.string())
    table = pa.Table.from_pylist(rows)
    table = table.set_column(table.schema.get_field_index("attributes"), "attributes",
                             pa.array([r["attributes"] for r in rows], kinds))  # fmt: skip
    pq.write_table(table, path, row_group_size=150)


class Store:
    def __init__(self, client: Any, embedder: OpenClipEmbedder) -> None:
        live = LiveSignals(ClickHouseSignalStore(client), embedder.id, refresh_s=3600)
        self.pipeline = Pipeline(embedder, live, ClickHouseWriter(client))

    def __call__(
        self, batch: list[GenerationEvent], vectors: Vectors
    ) -> tuple[int, int, list[tuple[str, str]]]:
        result = self.pipeline.process(batch, vectors)
        return result.written, result.skipped_existing, [(e.event_id, r) for e, r in
                                                          result.rejected]  # fmt: skip


def replay(db: Path, log: Path, embedder: OpenClipEmbedder, fitted: Any, *, columnar: bool,
           **kwargs: Any) -> tuple[Any, ReplayStats, list[dict[str, Any]]]:  # fmt: skip
    client = connect(f"chdb://{db}")
    migrate(client)
    ClickHouseSignalStore(client).save(fitted)
    # A signal that reads the text: the columnar path scores it from the text column.
    tickers = SignalSpec(name="tickers", kind="pattern", patterns=(r"\b(ACME|TSLA|NVDA)\b",))
    ClickHouseSignalStore(client).save(train_signal(tickers, embedder))
    store = Store(client, embedder)
    rejects = db.parent / f"{db.name}-rejects.jsonl"
    fast = store.pipeline if columnar else None
    stats = Replayer(store, RejectWriter(rejects), embedder_id=embedder.id, batch_size=128,
                     columnar=fast, **kwargs).replay([log])  # fmt: skip
    lines = [json.loads(x) for x in rejects.read_text().splitlines()] if rejects.exists() else []
    return client, stats, sorted(lines, key=lambda r: r["line"])


def dump(client: Any) -> dict[str, list[tuple[Any, ...]]]:
    queries = {
        "events": "SELECT * EXCEPT ingested_at FROM events FINAL ORDER BY event_id",
        "embeddings": "SELECT * EXCEPT ingested_at FROM embeddings FINAL "
                      "ORDER BY event_id, field",
        "scores": "SELECT * EXCEPT scored_at FROM signal_scores FINAL ORDER BY event_id, signal",
        "physical": "SELECT count(), uniqExact(event_id) FROM events",
        "rates": "SELECT minute, model_version, uniqExactMerge(events), "
                 "uniqExactIfMerge(failures) FROM failure_rates_1m GROUP BY ALL ORDER BY ALL",
        "volume": "SELECT minute, app, uniqExactMerge(events), uniqExactIfMerge(feedback_neg) "
                  "FROM events_1m GROUP BY ALL ORDER BY ALL",
        "usage": "SELECT minute, app, model_version, uniqExactMerge(events), sum(event_rows), "
                 "sum(input_rows), sum(output_rows), sum(input_sum), sum(output_sum) "
                 "FROM usage_1m GROUP BY ALL ORDER BY ALL",
    }  # fmt: skip
    return {k: [tuple(r) for r in client.query(q).result_rows] for k, q in queries.items()}


def approx_rows(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows with their floats wrapped for comparison to 1e-6 relative.

    The per-event path scores one event at a time and the columnar path a batch at a time; a
    matrix product summed in another order differs in the last bits of a float32 score.
    """
    return [tuple(pytest.approx(v, rel=1e-6, abs=1e-9) if isinstance(v, float) else v
                  for v in row) for row in rows]  # fmt: skip


@pytest.fixture(scope="module")
def fitted(tiny_embedder: OpenClipEmbedder) -> Any:
    return train_signal(SignalSpec(name="advice", threshold=0.5,
                                   examples=Examples(positive=ADVICE, negative=NEUTRAL)),
                        tiny_embedder)  # fmt: skip


@pytest.mark.parametrize("string_times", [False, True], ids=["typed-times", "string-times"])
def test_columnar_replay_stores_what_the_per_event_path_stores(
    tmp_path: Path, tiny_embedder: OpenClipEmbedder, fitted: Any, string_times: bool
) -> None:
    log = tmp_path / "log.parquet"
    build_log(log, tiny_embedder, string_times=string_times)
    since, until = T0 + timedelta(seconds=70), T0 + timedelta(seconds=7 * 380)
    slow_db, slow, slow_rejects = replay(tmp_path / "slow", log, tiny_embedder, fitted,
                                         columnar=False, since=since, until=until)  # fmt: skip
    expected = dump(slow_db)
    slow_db.close()  # chDB holds one database per process at a time
    fast_db, fast, fast_rejects = replay(tmp_path / "fast", log, tiny_embedder, fitted,
                                         columnar=True, since=since, until=until)  # fmt: skip
    try:
        got = dump(fast_db)
        assert len(expected["events"]) > 300
        tickers = [r for r in got["scores"] if r[1] == "tickers"]
        assert len(tickers) > 300 and 0 < sum(r[7] for r in tickers) < len(tickers)
        for key in expected:
            assert got[key] == approx_rows(expected[key]), key
        assert fast_rejects == slow_rejects
        assert len(fast_rejects) == (7 if string_times else 6)
        assert any("usage.input_tokens" in r["reason"] for r in fast_rejects)
        assert len(got["usage"]) > 10 and sum(r[7] for r in got["usage"]) > 0
        for name in ("read", "rejected", "written", "skipped_existing", "filtered_out"):
            assert getattr(fast, name) == getattr(slow, name), name
        assert fast.pre_embedded > 300  # most rows went column-wise
        users = dict(fast_db.query("SELECT event_id, user_id FROM events FINAL").result_rows)
        assert (users["c-00011"], users["c-00045"], users["c-00049"]) == ("u11", "", "e49")
    finally:
        fast_db.close()


def test_columnar_replay_resumes_from_its_checkpoint_and_is_idempotent(
    tmp_path: Path, tiny_embedder: OpenClipEmbedder, fitted: Any
) -> None:
    log = tmp_path / "log.parquet"
    build_log(log, tiny_embedder, string_times=False)
    ckpt = Checkpoint(tmp_path / "ckpt.json")
    client, first, _ = replay(tmp_path / "db", log, tiny_embedder, fitted, columnar=True,
                              checkpoint=ckpt)  # fmt: skip
    client.close()
    assert first.read == N and ckpt.done(log) == N
    client, again, _ = replay(tmp_path / "db", log, tiny_embedder, fitted, columnar=True,
                              checkpoint=Checkpoint(tmp_path / "ckpt.json"))  # fmt: skip
    assert (again.resumed_after, again.read, again.written) == (N, 0, 0)
    client.close()
    client, third, _ = replay(tmp_path / "db", log, tiny_embedder, fitted, columnar=True)
    try:
        # every stored row is skipped, and so is the repeat that the first run skipped too
        assert first.skipped_existing == 1
        assert (third.written, third.skipped_existing) == (0, first.written + 1)
        physical = client.query("SELECT count() FROM events").result_rows[0][0]
        assert physical == first.written
    finally:
        client.close()


def test_a_file_with_unknown_columns_goes_the_per_event_way(
    tiny_embedder: OpenClipEmbedder,
) -> None:
    """An unknown top-level field belongs in ``attributes``: the fast path does not guess."""
    batch = pa.RecordBatch.from_pylist([{
        "event_id": "x", "timestamp": T0, "model": "m", "model_version": "v",
        "output": {"text": "hi"}, "customer_tier": "gold",
    }])  # fmt: skip
    columns, slow, filtered = split_batch(batch, tiny_embedder.id, tiny_embedder.dim)
    assert (columns, slow, filtered) == (None, [0], 0)
    vec = np.zeros(tiny_embedder.dim).tolist()
    batch = pa.RecordBatch.from_pylist([{
        "event_id": "x", "timestamp": T0, "model": "m", "model_version": "v",
        "output": {"text": "hi"}, "embeddings": {"embedder_id": tiny_embedder.id,
                                                 "output.text": vec},
    }])  # fmt: skip
    columns, slow, _ = split_batch(batch, tiny_embedder.id, tiny_embedder.dim)
    assert columns is not None and len(columns) == 1 and slow == []
