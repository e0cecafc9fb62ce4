"""Embedding ahead (the worker's overlap of the next batch's model with this batch's write):
the pipeline queues only the texts of events the sampler would draw, every text it then embeds
comes from the job ahead, and what is stored is what the model returns for those texts."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from signals import EmbedAhead, FieldEmbedders, TextEmbedder, Windows
from signals.open_clip_embedder import OpenClipEmbedder
from streams.batch_io import Outcome
from streams.sampling import Sampler, SamplingConfig
from streams.settings import WorkerConfig
from streams.worker import _Runtime


class _Threads:
    """The real text tower, recording the threads that called the model."""

    def __init__(self, inner: TextEmbedder) -> None:
        self.inner, self.id, self.dim = inner, inner.id, inner.dim
        self.threads: list[str] = []
        self.texts: set[str] = set()

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_windows(texts).documents()

    def embed_windows(self, texts: Sequence[str]) -> Windows:
        self.threads.append(threading.current_thread().name)
        self.texts.update(texts)
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
    model.texts.clear()
    events = traffic(120, 4, 0.2)
    queued = 0
    for start in range(0, len(events), 128):
        batch = events[start : start + 128]
        queued += pipeline.embed_ahead(batch)
        run(pipeline, batch, batch=128)
    scored = {r[0] for r in ch.query("SELECT DISTINCT event_id FROM signal_scores").result_rows}
    assert 0 < len(scored) < len(events)
    drawn = [e for e in events if e.event_id in scored]
    # the model saw exactly the texts of the drawn events, each queued once per kept job
    assert model.texts == {t for e in drawn for t in (e.prompt.text, e.output.text) if t}
    assert len(model.texts) <= queued == ahead.queued
    # every model call was a job ahead: the pipeline itself embedded nothing
    assert model.threads and all(t.startswith("telltale-ahead") for t in model.threads)
    assert ahead.answered == 2 * len(drawn)  # every text the pipeline asked for
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
    partition: int = 0
    offset: int = 0
    key: bytes | None = None


@dataclass(frozen=True)
class _Taken:
    message: _Message


def _send() -> Any:
    async def send(key: bytes | None, value: bytes) -> None:
        raise AssertionError("nothing is dead-lettered here")

    return send


def test_the_worker_queues_a_taken_batch_and_counts_each_event_seen_once(
    ch: Any, tiny_embedder: OpenClipEmbedder
) -> None:
    from sampled_traffic import sampling_pipeline, traffic

    from streams.metrics import WorkerMetrics

    ahead = EmbedAhead(FieldEmbedders(tiny_embedder).text)
    pipeline = sampling_pipeline(ch, FieldEmbedders(tiny_embedder, ahead), None)
    metrics = WorkerMetrics()
    letters: list[bytes] = []

    async def dead_letter(key: bytes | None, value: bytes) -> None:
        letters.append(value)

    runtime = _Runtime(WorkerConfig(), lambda: pipeline, dead_letter, None, None, None, None,
                       metrics)  # fmt: skip
    events = traffic(3, 2, 0.0)
    batch = [_Taken(_Message("generations", e.model_dump_json().encode())) for e in events]
    batch.insert(1, _Taken(_Message("generations", b"{not json")))
    runtime.embed_ahead(batch)
    assert ahead.queued == 0  # nothing queued before the pipeline is built
    runtime.pipeline()
    runtime.embed_ahead(batch)
    texts = {t for e in events for t in (e.prompt.text, e.output.text) if t}
    assert ahead.queued == len(texts)
    ahead.embed_texts(sorted(texts))
    runtime.embed_ahead(batch[:1])  # reports what the batch used
    samples = {(s.name, tuple(s.labels.values())): s.value
               for m in metrics.registry.collect() for s in m.samples}  # fmt: skip
    assert samples[("telltale_worker_ahead_texts_total", ("queued",))] == len(texts)
    assert samples[("telltale_worker_ahead_texts_total", ("used",))] == len(texts)
    seen = sum(v for (name, _), v in samples.items()
               if name == "telltale_worker_events_seen_total")  # fmt: skip
    assert seen == 0  # the ahead decode counts nothing: the batch's own decode does
    # ... which takes what the ahead decode kept (the invalid record's error too) instead of
    # parsing and validating every record again, and counts each event once
    assert len(runtime.decoded) == len(batch)
    from streams.worker import _record

    outcome = asyncio.run(runtime.handler.handle([_record(t) for t in batch]))
    assert outcome is Outcome.ACKNOWLEDGE and len(runtime.decoded) == 0
    samples = {(s.name, tuple(s.labels.values())): s.value
               for m in metrics.registry.collect() for s in m.samples}  # fmt: skip
    seen = sum(v for (name, _), v in samples.items()
               if name == "telltale_worker_events_seen_total")  # fmt: skip
    assert seen == len(events)
    stored = ch.query("SELECT count() FROM events FINAL").result_rows[0][0]
    assert stored == len(events)
    assert len(letters) == 1 and b"{not json" in letters[0]  # the kept error, dead-lettered
    off = _Runtime(WorkerConfig(embed_ahead=False), lambda: pipeline, _send(), None, None, None)
    off.pipeline()
    fresh = traffic(2, 2, 0.0, first_id=50)
    off.embed_ahead([_Taken(_Message("generations", e.model_dump_json().encode()))
                     for e in fresh])  # fmt: skip
    assert ahead.queued == len(texts)
    ahead.close()


def test_nothing_is_queued_for_texts_the_cache_remembers_or_a_batch_stored_already(
    ch: Any, tiny_embedder: OpenClipEmbedder
) -> None:
    from sampled_traffic import sampling_pipeline, traffic

    from signals import EmbeddingCache

    ahead = EmbedAhead(FieldEmbedders(tiny_embedder).text)
    pipeline = sampling_pipeline(ch, FieldEmbedders(tiny_embedder, ahead), None)
    pipeline._cache = EmbeddingCache()  # the worker's default: an LRU
    events = traffic(4, 2, 0.0)
    assert pipeline.embed_ahead(events) > 0
    pipeline.process(events)
    pipeline.process(events)  # redelivered: every event is stored already
    assert pipeline.embed_ahead(traffic(4, 2, 0.0, first_id=100)) == 0
    pipeline.process(traffic(4, 2, 0.0, first_id=200))  # a fresh batch: embedding resumes
    assert pipeline.embed_ahead(traffic(4, 2, 0.0, first_id=300)) > 0
    repeats = [e.model_copy(update={"event_id": f"again-{e.event_id}"}) for e in events]
    assert pipeline.embed_ahead(repeats) == 0  # the LRU remembers every text
    ahead.close()


def test_the_worker_wiring_embeds_ahead_unless_turned_off(
    ch: Any, tiny_env: dict[str, str], monkeypatch: Any
) -> None:
    from telltale.settings import Settings
    from telltale.wiring import make_parts

    assert isinstance(make_parts(Settings(), ch, worker=True).embedders.text, EmbedAhead)
    assert not isinstance(make_parts(Settings(), ch).embedders.text, EmbedAhead)
    monkeypatch.setenv("TELLTALE_WORKER_EMBED_AHEAD", "false")
    assert not isinstance(make_parts(Settings(), ch, worker=True).embedders.text, EmbedAhead)
