"""Replay with embedding ahead: batch k+1's texts go to the model (on the ahead thread) while
batch k is stored; what is stored, rejected and checkpointed is what replay stored before,
and neither the checkpoint nor the progress ever names a batch that is not stored."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from signals import EmbedAhead, FieldEmbedders, TextEmbedder, Windows
from signals.live import LiveSignals
from signals.open_clip_embedder import OpenClipEmbedder
from storage.errors import StorageUnavailable
from storage.queries import table_counts
from storage.writer import ClickHouseWriter
from streams.events import GenerationEvent
from streams.pipeline import Pipeline
from streams.replay import Checkpoint, RejectWriter, Replayer, ReplayStats, Vectors
from telltale.signal_store import ClickHouseSignalStore

T0 = datetime(2026, 9, 1, tzinfo=UTC)
Result = tuple[int, int, list[tuple[str, str]]]


class _Threads:
    """The real text tower, recording the threads that called the model."""

    def __init__(self, inner: TextEmbedder) -> None:
        self.inner, self.id, self.dim = inner, inner.id, inner.dim
        self.threads: list[str] = []
        self.texts: list[str] = []

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_windows(texts).documents()

    def embed_windows(self, texts: Sequence[str]) -> Windows:
        self.threads.append(threading.current_thread().name)
        self.texts.extend(texts)
        return self.inner.embed_windows(texts)


class _Store:
    """The real pipeline as the sink, with the order of calls recorded (and one failing)."""

    def __init__(self, ch: Any, text: TextEmbedder, tiny: OpenClipEmbedder, fail_on: int = 0):
        embedders = FieldEmbedders(tiny, text)
        signals = LiveSignals(ClickHouseSignalStore(ch), embedders.ids, 60)
        self.pipeline = Pipeline(embedders, signals, ClickHouseWriter(ch))
        self.calls: list[str] = []
        self.queued = 0
        self.fail_on = fail_on

    def ahead(self, batch: list[GenerationEvent], vectors: Vectors) -> None:
        self.calls.append(f"ahead {batch[0].event_id}")
        self.queued += self.pipeline.embed_ahead(batch, vectors)

    def __call__(self, batch: list[GenerationEvent], vectors: Vectors) -> Result:
        self.calls.append(f"store {batch[0].event_id}")
        if len(self.stores) == self.fail_on:
            raise StorageUnavailable("simulated outage mid-replay")
        result = self.pipeline.process(batch, vectors)
        return (
            result.written,
            result.skipped_existing,
            [(e.event_id, r) for e, r in result.rejected],
        )

    @property
    def stores(self) -> list[str]:
        return [c for c in self.calls if c.startswith("store")]


def _line(prefix: str, i: int, carried: list[float] | None, embedder_id: str) -> str:
    data: dict[str, Any] = {
        "event_id": f"{prefix}{i:04d}", "timestamp": (T0 + timedelta(minutes=i)).isoformat(),
        "model": "chat", "model_version": "v1",
        "prompt": {"text": f"question {i % 5}"}, "output": {"text": f"answer {i} of the log"},
    }  # fmt: skip
    if carried is not None:
        data["embeddings"] = {"embedder_id": embedder_id, "output.text": carried}
    return json.dumps(data)


def _log(path: Path, prefix: str, n: int, dim: int, embedder_id: str) -> Path:
    carried = [1.0] + [0.0] * (dim - 1)
    lines = [_line(prefix, i, carried if i % 6 == 0 else None, embedder_id) for i in range(n)]
    lines[7] = "{broken"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _stored(ch: Any, prefix: str) -> dict[tuple[str, str], list[float]]:
    rows = ch.query(
        "SELECT event_id, field, vector FROM embeddings FINAL "
        "WHERE startsWith(event_id, {p:String})",
        parameters={"p": prefix},
    ).result_rows
    return {(e[len(prefix) :], f): list(v) for e, f, v in rows}


def test_replay_ahead_stores_what_replay_stored_with_the_model_on_the_ahead_thread(
    ch: Any, tiny_embedder: OpenClipEmbedder, tmp_path: Path
) -> None:
    text = FieldEmbedders(tiny_embedder).text
    plain_model, ahead_model = _Threads(text), _Threads(text)
    plain = _Store(ch, plain_model, tiny_embedder)
    embed_ahead = EmbedAhead(ahead_model)
    ahead = _Store(ch, embed_ahead, tiny_embedder)
    embedder_id, dim = plain.pipeline.embedder_id, plain.pipeline.dim
    assert ahead.pipeline.embedder_id == embedder_id
    runs: dict[str, ReplayStats] = {}
    for prefix, store, hook in (("p", plain, None), ("a", ahead, ahead.ahead)):
        log = _log(tmp_path / f"{prefix}.jsonl", prefix, 45, dim, embedder_id)
        rejects = RejectWriter(tmp_path / f"{prefix}-rejects.jsonl")
        since = T0 + timedelta(minutes=2)
        runs[prefix] = Replayer(store, rejects, embedder_id=embedder_id, batch_size=8,
                                since=since, ahead=hook).replay([log])  # fmt: skip
        rejects.close()
    embed_ahead.close()
    assert runs["a"] == runs["p"]
    assert (runs["a"].written, runs["a"].rejected, runs["a"].filtered_out) == (42, 1, 2)
    p_rejects = [json.loads(x) for x in (tmp_path / "p-rejects.jsonl").read_text().splitlines()]
    a_rejects = [json.loads(x) for x in (tmp_path / "a-rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in a_rejects] == [
        (r["line"], r["reason"]) for r in p_rejects
    ]
    # the same rows and vectors, the carried ones as carried
    p_stored, a_stored = _stored(ch, "p"), _stored(ch, "a")
    assert sorted(a_stored) == sorted(p_stored) and len(a_stored) == 2 * 42
    for key, vector in p_stored.items():
        np.testing.assert_allclose(a_stored[key], vector, atol=1e-5)
    assert a_stored[("0006", "output.text")] == [1.0] + [0.0] * (dim - 1)
    # batch k+1 is queued before batch k is stored; the last one is stored at the end
    firsts = ["a0002", "a0011", "a0019", "a0027", "a0035", "a0043"]
    expected = ["ahead a0002"]
    for before, after in itertools.pairwise(firsts):
        expected += [f"ahead {after}", f"store {before}"]
    assert ahead.calls == [*expected, "store a0043"]
    # every text was embedded ahead, the carried ones never; the model ran ahead only
    events = [i for i in range(2, 45) if i != 7]
    asked = [f"question {i % 5}" for i in events] + [f"answer {i} of the log" for i in events
                                                      if i % 6]  # fmt: skip
    assert embed_ahead.answered == len(asked) == 77
    assert set(ahead_model.texts) == set(asked)
    assert ahead.queued == embed_ahead.queued == len(ahead_model.texts)
    assert ahead_model.threads and all(t.startswith("telltale-ahead") for t in ahead_model.threads)
    assert plain_model.threads and not any(
        t.startswith("telltale-ahead") for t in plain_model.threads
    )


def test_interrupted_replay_ahead_resumes_without_skipping_a_batch(
    ch: Any, tiny_embedder: OpenClipEmbedder, tmp_path: Path
) -> None:
    embedder_id = FieldEmbedders(tiny_embedder).id
    log = _log(tmp_path / "b.jsonl", "b", 50, tiny_embedder.dim, embedder_id)
    checkpoint_path = tmp_path / "ckpt.json"
    claimed: list[tuple[int, int, float]] = []

    def on_progress(source: str, fraction: float, stats: ReplayStats) -> None:
        # what the checkpoint and the progress claim is stored, when they claim it
        done = Checkpoint(checkpoint_path).done(Path(source))
        claimed.append((done, stats.written, fraction))
        assert table_counts(ch).events == stats.written

    embed_ahead = EmbedAhead(FieldEmbedders(tiny_embedder).text)
    failing = _Store(ch, embed_ahead, tiny_embedder, fail_on=3)
    with pytest.raises(StorageUnavailable):
        Replayer(failing, RejectWriter(tmp_path / "r.jsonl"),
                 checkpoint=Checkpoint(checkpoint_path), embedder_id=embedder_id,
                 batch_size=10, ahead=failing.ahead,
                 on_progress=on_progress).replay([log])  # fmt: skip
    # batches 1 and 2 stored (lines 1-21, line 8 broken), batch 3 failed, batch 4 only queued
    assert failing.calls == ["ahead b0000", "ahead b0011", "store b0000", "ahead b0021",
                             "store b0011", "ahead b0031", "store b0021"]  # fmt: skip
    assert [(done, written) for done, written, _ in claimed] == [(11, 10), (21, 20)]
    assert Checkpoint(checkpoint_path).done(log) == 21
    assert table_counts(ch).events == 20
    resumed = _Store(ch, embed_ahead, tiny_embedder)
    stats = Replayer(resumed, RejectWriter(tmp_path / "r.jsonl"),
                     checkpoint=Checkpoint(checkpoint_path), embedder_id=embedder_id,
                     batch_size=10, ahead=resumed.ahead).replay([log])  # fmt: skip
    embed_ahead.close()
    assert (stats.resumed_after, stats.read, stats.written, stats.skipped_existing) == (
        21, 29, 29, 0
    )  # fmt: skip
    assert table_counts(ch).events == 49 and Checkpoint(checkpoint_path).done(log) == 50
    stored = {r[0] for r in ch.query("SELECT event_id FROM events FINAL").result_rows}
    assert stored == {f"b{i:04d}" for i in range(50) if i != 7}


def test_pacing_and_the_columnar_path_do_not_embed_ahead(tmp_path: Path) -> None:
    lines = [_line("c", i, None, "x") for i in range(5)]
    log = tmp_path / "c.jsonl"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    calls: list[str] = []

    def sink(batch: list[GenerationEvent], _: Vectors) -> Result:
        calls.append(f"store {len(batch)}")
        return len(batch), 0, []

    def hook(batch: list[GenerationEvent], _: Vectors) -> None:
        calls.append("ahead")

    Replayer(sink, RejectWriter(tmp_path / "r.jsonl"), speed=60.0, batch_size=2,
             sleep=lambda _: None, ahead=hook).replay([log])  # fmt: skip
    assert calls == ["store 2", "store 2", "store 1"]  # each batch stored as soon as read
    calls.clear()

    def failing_hook(batch: list[GenerationEvent], _: Vectors) -> None:
        calls.append("ahead")
        raise RuntimeError("model gone")

    stats = Replayer(sink, RejectWriter(tmp_path / "r.jsonl"), batch_size=2,
                     ahead=failing_hook).replay([log])  # fmt: skip
    assert stats.written == 5  # a failing hook only costs the overlap
    assert calls == ["ahead", "ahead", "store 2", "ahead", "store 2", "store 1"]


def test_embed_ahead_leaves_out_fields_given_as_vectors(
    ch: Any, tiny_embedder: OpenClipEmbedder
) -> None:
    events = [
        GenerationEvent.model_validate(json.loads(_line("g", i, None, "x"))) for i in range(3)
    ]
    given = {"g0000": {"output.text": [0.0]}, "g0001": {"prompt.text": [0.0], "output.text": [0.0]}}
    for carried, queued in ((None, 6), (given, 3)):
        embed_ahead = EmbedAhead(FieldEmbedders(tiny_embedder).text)
        pipeline = _Store(ch, embed_ahead, tiny_embedder).pipeline
        assert pipeline.embed_ahead(events, carried) == queued
        embed_ahead.close()
