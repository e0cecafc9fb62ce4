"""Embedding ahead (the worker's overlap of the next batch's model with this batch's write):
the pipeline queues only the texts of events the sampler would draw, every text it then embeds
comes from the job ahead, and what is stored is what the model returns for those texts."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from signals import EmbedAhead, FieldEmbedders, TextEmbedder, Windows
from signals.open_clip_embedder import OpenClipEmbedder
from streams.sampling import Sampler, SamplingConfig
from streams.settings import WorkerConfig
from streams.worker import _Runtime


class _Threads:
    """The real text tower, recording the threads that called the model."""

    def __init__(self, inner: TextEmbedder) -> None:
        self.inner, self.id, self.dim = inner, inner.id, inner.dim
        self.threads: list[str] = []

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_windows(texts).documents()

    def embed_windows(self, texts: Sequence[str]) -> Windows:
        self.threads.append(threading.current_thread().name)
        return self.inner.embed_windows(texts)


def test_the_pipeline_embeds_ahead_only_what_it_will_score(
    ch: Any, tiny_embedder: OpenClipEmbedder
) -> None:
    from sampled_traffic import run, sampling_pipeline, traffic

    model = _Threads(FieldEmbedders(tiny_embedder).text)
    ahead = EmbedAhead(model)
    embedders = FieldEmbedders(tiny_embedder, ahead)
    sampler = Sampler(SamplingConfig(rate=0.25, version_floor_per_min=0), clock=lambda: 0.0)
    pipeline = sampling_pipeline(ch, embedders, sampler)
    model.threads.clear()  # training the signals embedded their examples
    events = traffic(120, 4, 0.2)
    queued = 0
    for start in range(0, len(events), 128):
        batch = events[start : start + 128]
        queued += pipeline.embed_ahead(batch)
        run(pipeline, batch, batch=128)
    scored = {r[0] for r in ch.query("SELECT DISTINCT event_id FROM signal_scores").result_rows}
    assert 0 < len(scored) < len(events)
    drawn = [e for e in events if e.event_id in scored]
    assert queued == sum(bool(e.prompt.text) + bool(e.output.text) for e in drawn)
    # every model call was a job ahead: the pipeline itself embedded nothing
    assert model.threads and all(t.startswith("telltale-ahead") for t in model.threads)
    assert ahead.answered == queued
    stored = dict(ch.query(
        "SELECT event_id, vector FROM embeddings FINAL WHERE field = 'output.text'"
    ).result_rows)  # fmt: skip
    by_id = {e.event_id: e for e in drawn}
    ids = sorted(stored)
    expected = tiny_embedder.embed_texts([by_id[i].output.text or "" for i in ids])
    np.testing.assert_allclose(np.array([stored[i] for i in ids]), expected, atol=1e-5)
    ahead.close()


@dataclass(frozen=True)
class _Message:
    topic: str
    value: bytes


@dataclass(frozen=True)
class _Taken:
    message: _Message


def test_the_worker_queues_a_taken_batch_and_skips_what_does_not_decode(
    ch: Any, tiny_embedder: OpenClipEmbedder
) -> None:
    from sampled_traffic import sampling_pipeline, traffic

    ahead = EmbedAhead(FieldEmbedders(tiny_embedder).text)
    pipeline = sampling_pipeline(ch, FieldEmbedders(tiny_embedder, ahead), None)

    async def send(key: bytes | None, value: bytes) -> None:
        raise AssertionError("nothing is dead-lettered here")

    runtime = _Runtime(WorkerConfig(), lambda: pipeline, send, None, None, None)
    events = traffic(3, 2, 0.0)
    batch = [_Taken(_Message("generations", e.model_dump_json().encode())) for e in events]
    batch.insert(1, _Taken(_Message("generations", b"{not json")))
    runtime.embed_ahead(batch)
    assert ahead.answered == 0  # nothing queued before the pipeline is built
    runtime.pipeline()
    runtime.embed_ahead(batch)
    texts = [t for e in events for t in (e.prompt.text, e.output.text) if t]
    ahead.embed_texts(texts)
    assert ahead.answered == len(texts)
    off = _Runtime(WorkerConfig(embed_ahead=False), lambda: pipeline, send, None, None, None)
    off.pipeline()
    before = ahead.answered
    off.embed_ahead([_Taken(_Message("generations", json.dumps({"x": 1}).encode()))])
    assert ahead.answered == before
    ahead.close()
