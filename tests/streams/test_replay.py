"""Historical replay: formats, mapping, time filters, rejects, idempotence, resume, fast path."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from signals.live import LiveSignals
from signals.open_clip_embedder import OpenClipEmbedder
from storage.errors import StorageUnavailable
from storage.queries import table_counts
from storage.writer import ClickHouseWriter
from streams.events import GenerationEvent
from streams.pipeline import Pipeline
from streams.replay import (
    Checkpoint,
    RejectWriter,
    Replayer,
    Vectors,
    apply_mapping,
    parse_mapping,
)
from telltale.signal_store import ClickHouseSignalStore

T0 = datetime(2026, 9, 1, tzinfo=UTC)


def record(i: int, **extra: Any) -> dict[str, Any]:
    return {"event_id": f"r{i:05d}", "timestamp": (T0 + timedelta(minutes=i)).isoformat(),
            "model": "chat", "model_version": "v1", "output": {"text": f"answer {i % 7}"},
            **extra}  # fmt: skip


def write_jsonl(path: Path, lines: list[str], gz: bool = False) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


class Store:
    """The real pipeline as a replay sink, optionally failing on one batch."""

    def __init__(self, ch: Any, embedder: OpenClipEmbedder, fail_on_batch: int = 0) -> None:
        self.pipeline = Pipeline(
            embedder, LiveSignals(ClickHouseSignalStore(ch), embedder.id, 60), ClickHouseWriter(ch)
        )
        self.batches = 0
        self.fail_on_batch = fail_on_batch
        self.embedded_fields = 0

    def __call__(
        self, batch: list[GenerationEvent], vectors: Vectors
    ) -> tuple[int, int, list[tuple[str, str]]]:
        self.batches += 1
        if self.batches == self.fail_on_batch:
            raise StorageUnavailable("simulated outage mid-replay")
        result = self.pipeline.process(batch, vectors)
        return (
            result.written,
            result.skipped_existing,
            [(e.event_id, r) for e, r in result.rejected],
        )


def test_mapping_parsing_and_application() -> None:
    mapping = parse_mapping(["timestamp=ts", "output.text=response.content", "model=llm"])
    data = {"ts": "2026-01-01T00:00:00Z", "response": {"content": "hi", "tokens": 3},
            "llm": "m", "id": 1}  # fmt: skip
    mapped = apply_mapping(data, mapping)
    assert mapped == {"timestamp": "2026-01-01T00:00:00Z", "output": {"text": "hi"},
                      "response": {"tokens": 3}, "model": "m", "id": 1}  # fmt: skip
    assert data["response"] == {"content": "hi", "tokens": 3}  # input not mutated
    with pytest.raises(ValueError, match="FIELD=SOURCE"):
        parse_mapping(["nonsense"])


def test_replay_gzip_with_rejects_filters_and_idempotence(
    ch: Any, tiny_embedder: OpenClipEmbedder, tmp_path: Path
) -> None:
    lines = [json.dumps(record(i)) for i in range(30)]
    lines[4] = "{broken"
    lines[9] = json.dumps({**record(9), "timestamp": "not a time"})
    log = write_jsonl(tmp_path / "a.jsonl.gz", lines, gz=True)
    rejects_path = tmp_path / "rejects.jsonl"
    store = Store(ch, tiny_embedder)
    rejects = RejectWriter(rejects_path)
    stats = Replayer(store, rejects, batch_size=8, since=T0 + timedelta(minutes=2),
                     until=T0 + timedelta(minutes=28)).replay([log])  # fmt: skip
    rejects.close()
    assert (stats.read, stats.rejected, stats.filtered_out, stats.written) == (30, 2, 4, 24)
    reasons = [json.loads(line) for line in rejects_path.read_text().splitlines()]
    assert [(r["line"], r["file"]) for r in reasons] == [(5, str(log)), (10, str(log))]
    assert "not valid JSON" in reasons[0]["reason"] and "timestamp" in reasons[1]["reason"]
    stored = ch.query("SELECT min(timestamp), max(timestamp) FROM events").result_rows[0]
    assert stored == (T0 + timedelta(minutes=2), T0 + timedelta(minutes=27))

    again = Replayer(Store(ch, tiny_embedder), RejectWriter(tmp_path / "r2.jsonl"),
                     batch_size=8).replay([log])  # fmt: skip
    assert (again.written, again.skipped_existing) == (4, 24)  # only the filtered-out ones
    assert table_counts(ch).events == 28


def test_replay_resumes_from_checkpoint_after_interruption(
    ch: Any, tiny_embedder: OpenClipEmbedder, tmp_path: Path
) -> None:
    log = write_jsonl(tmp_path / "b.jsonl", [json.dumps(record(i)) for i in range(50)])
    checkpoint = Checkpoint(tmp_path / "ckpt.json")
    failing = Store(ch, tiny_embedder, fail_on_batch=3)
    with pytest.raises(StorageUnavailable):
        Replayer(failing, RejectWriter(tmp_path / "r.jsonl"), checkpoint=checkpoint,
                 batch_size=10).replay([log])  # fmt: skip
    assert Checkpoint(tmp_path / "ckpt.json").done(log) == 20
    assert table_counts(ch).events == 20
    resumed = Store(ch, tiny_embedder)
    stats = Replayer(
        resumed,
        RejectWriter(tmp_path / "r.jsonl"),
        checkpoint=Checkpoint(tmp_path / "ckpt.json"),
        batch_size=10,
    ).replay([log])
    assert (stats.resumed_after, stats.read, stats.written, stats.skipped_existing) == (
        20,
        30,
        30,
        0,
    )
    assert table_counts(ch).events == 50
    # a changed file starts over (and idempotence keeps counts exact)
    write_jsonl(log, [json.dumps(record(i)) for i in range(55)])
    stats = Replayer(
        Store(ch, tiny_embedder),
        RejectWriter(tmp_path / "r.jsonl"),
        checkpoint=Checkpoint(tmp_path / "ckpt.json"),
        batch_size=10,
    ).replay([log])
    assert (stats.resumed_after, stats.written, stats.skipped_existing) == (0, 5, 50)


def test_parquet_with_mapping_and_preembedded_fast_path(
    ch: Any, tiny_embedder: OpenClipEmbedder, tmp_path: Path
) -> None:
    texts = [f"answer {i}" for i in range(12)]
    vectors = tiny_embedder.embed_texts(texts)
    table = pa.table({
        "id": [f"p{i}" for i in range(12)],
        "ts": [T0 + timedelta(seconds=i) for i in range(12)],
        "model": ["chat"] * 12, "model_version": ["v1"] * 12,
        "response": [{"content": t} for t in texts],
        "embeddings": [{"embedder_id": tiny_embedder.id if i < 8 else "other/model",
                        "output.text": vectors[i].tolist()} for i in range(12)],
    })  # fmt: skip
    path = tmp_path / "c.parquet"
    pq.write_table(table, path)
    calls: list[int] = []
    original = tiny_embedder.embed_texts

    def counting(texts: list[str]) -> Any:
        calls.append(len(texts))
        return original(texts)

    tiny_embedder.embed_texts = counting  # type: ignore[method-assign]
    try:
        stats = Replayer(
            Store(ch, tiny_embedder), RejectWriter(tmp_path / "r.jsonl"),
            embedder_id=tiny_embedder.id, batch_size=100,
            mapping={"event_id": "id", "timestamp": "ts", "output.text": "response.content"},
        ).replay([path])  # fmt: skip
    finally:
        del tiny_embedder.embed_texts
    assert (stats.written, stats.rejected, stats.pre_embedded) == (12, 0, 8)
    assert calls == [4]  # only the 4 events embedded by another model went through the model
    stored = ch.query("SELECT event_id, vector FROM embeddings WHERE event_id = 'p3'").result_rows[
        0
    ][1]
    assert stored == pytest.approx(vectors[3].tolist(), abs=1e-6)
    ts = ch.query("SELECT timestamp FROM events WHERE event_id = 'p5'").result_rows[0][0]
    assert ts == T0 + timedelta(seconds=5)


def test_pacing_follows_event_time(tmp_path: Path) -> None:
    log = write_jsonl(tmp_path / "d.jsonl", [json.dumps(record(i)) for i in range(4)])
    waits: list[float] = []
    received: list[int] = []

    def sink(batch: list[GenerationEvent], _: Vectors) -> tuple[int, int, list[tuple[str, str]]]:
        received.append(len(batch))
        return len(batch), 0, []

    Replayer(sink, RejectWriter(tmp_path / "r.jsonl"), speed=60.0, batch_size=10,
             sleep=waits.append).replay([log])  # fmt: skip
    # events are one minute apart; at 60× real time each is due one second after the last
    assert len(waits) == 3 and all(0.9 < w <= 3.01 for w in waits)
    assert received == [4]


# Every depth from 850 to 1,000: json.loads parses those below a depth that depends on the
# stack (about 950), and validation's json.dumps of the unknown field overflowed near it.
DEEP = [*range(850, 1_001), 5_000]


def deep_line(i: int, depth: int) -> str:
    """An event line whose unknown field ``x`` is nested ``depth`` levels deep."""
    return json.dumps(record(i))[:-1] + ', "x": ' + "[" * depth + "1" + "]" * depth + "}"


def test_replay_rejects_lines_nested_too_deep_and_moves_on(
    ch: Any, tiny_embedder: OpenClipEmbedder, tmp_path: Path
) -> None:
    """The probe's log: lines nested ~1,000 deep between good ones. Each deep line is a
    reject with the reason, the good lines are stored, the checkpoint moves past all of it,
    and a rerun (checkpoint or not) does the same instead of dying on the same line."""
    lines, deep_at = [], []
    for i, depth in enumerate(DEEP):
        lines.append(json.dumps(record(i)))
        lines.append(deep_line(1_000 + i, depth))
        deep_at.append(len(lines))
    lines.append(json.dumps(record(999)))
    log = write_jsonl(tmp_path / "deep.jsonl", lines)
    good = len(DEEP) + 1
    checkpoint = tmp_path / "ckpt.json"

    def replay(rejects: Path, ckpt: Checkpoint | None) -> Any:
        writer = RejectWriter(rejects)
        try:
            return Replayer(Store(ch, tiny_embedder), writer, checkpoint=ckpt,
                            batch_size=7).replay([log])  # fmt: skip
        finally:
            writer.close()

    stats = replay(tmp_path / "r1.jsonl", Checkpoint(checkpoint))
    assert (stats.read, stats.written, stats.rejected) == (len(lines), good, len(DEEP))
    rejected = [json.loads(x) for x in (tmp_path / "r1.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejected] == deep_at
    assert {r["reason"] for r in rejected} == {"JSON nested deeper than 64 levels"}
    assert Checkpoint(checkpoint).done(log) == len(lines)
    assert table_counts(ch).events == good

    resumed = replay(tmp_path / "r2.jsonl", Checkpoint(checkpoint))
    assert (resumed.resumed_after, resumed.read) == (len(lines), 0)
    again = replay(tmp_path / "r3.jsonl", None)  # from the top: the same rejects, nothing new
    assert (again.written, again.skipped_existing, again.rejected) == (0, good, len(DEEP))
    assert len((tmp_path / "r3.jsonl").read_text().splitlines()) == len(DEEP)


def test_parquet_rows_nested_too_deep_are_rejected(
    ch: Any, tiny_embedder: OpenClipEmbedder, tmp_path: Path
) -> None:
    # A struct column 70 deep (Parquet itself stops at 100 levels of schema, a list taking two)
    kind: pa.DataType = pa.int64()
    value: Any = 1
    for _ in range(70):
        kind, value = pa.struct([("a", kind)]), {"a": value}
    rows = [record(i) for i in range(6)]
    table = pa.table({
        "event_id": [r["event_id"] for r in rows], "timestamp": [r["timestamp"] for r in rows],
        "model": ["chat"] * 6, "model_version": ["v1"] * 6,
        "output": [r["output"] for r in rows],
        "x": pa.array([value if i in (1, 4) else None for i in range(6)], kind),
    })  # fmt: skip
    path = tmp_path / "deep.parquet"
    pq.write_table(table, path)
    for columnar in (False, True):
        rejects = tmp_path / f"r-{columnar}.jsonl"
        store = Store(ch, tiny_embedder)
        writer = RejectWriter(rejects)
        stats = Replayer(store, writer, columnar=store.pipeline if columnar else None,
                         batch_size=4).replay([path])  # fmt: skip
        writer.close()
        assert (stats.read, stats.rejected) == (6, 2)
        rejected = [json.loads(x) for x in rejects.read_text().splitlines()]
        assert [(r["line"], r["reason"]) for r in rejected] == [
            (2, "JSON nested deeper than 64 levels"), (5, "JSON nested deeper than 64 levels")
        ]  # fmt: skip
    assert table_counts(ch).events == 4
