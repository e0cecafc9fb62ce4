from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from signals.live import LiveSignals
from signals.open_clip_embedder import OpenClipEmbedder
from signals.spec import Examples, SignalSpec
from signals.training import train_signal
from storage.queries import failure_rates, table_counts
from storage.writer import ClickHouseWriter
from streams.events import GenerationEvent, validate_event
from streams.pipeline import Pipeline
from telltale.sample_data import advice_text, image_base64, neutral_text, render_image
from telltale.signal_store import ClickHouseSignalStore

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
POSITIVE = ("Buy ACME shares now.", "Put your savings into TSLA stock.", "Sell bonds, buy NVDA.")
NEGATIVE = ("Paris is the capital of France.", "Boil pasta for ten minutes.", "Rain is water.")


def event(
    i: int,
    text: str | None = None,
    image: str | None = None,
    prompt: str = "hi",
    version: str = "v1",
) -> GenerationEvent:
    output: dict[str, str] = {}
    if text is not None:
        output["text"] = text
    if image is not None:
        output["image"] = image
    return validate_event(
        {
            "event_id": f"e{i}",
            "timestamp": (T0 + timedelta(seconds=i)).isoformat(),
            "model": "m",
            "model_version": version,
            "prompt": {"text": prompt},
            "output": output,
        }
    )


def make_pipeline(ch: Any, embedder: OpenClipEmbedder) -> Pipeline:
    advice = SignalSpec(
        name="advice", threshold=0.5, examples=Examples(positive=POSITIVE, negative=NEGATIVE)
    )
    rng = random.Random(0)
    watermark = SignalSpec(
        name="watermark",
        modality="image",
        examples=Examples(
            positive=tuple(image_base64(render_image(rng, True, 96)) for _ in range(6)),
            negative=tuple(image_base64(render_image(rng, False, 96)) for _ in range(6)),
        ),
    )
    for s in (advice, watermark):
        ClickHouseSignalStore(ch).save(train_signal(s, embedder))
    return Pipeline(
        embedder,
        LiveSignals(ClickHouseSignalStore(ch), embedder.id, refresh_s=0),
        ClickHouseWriter(ch),
    )


def test_pipeline_writes_events_embeddings_and_scores_once(
    ch: Any, tiny_embedder: OpenClipEmbedder
) -> None:
    pipeline = make_pipeline(ch, tiny_embedder)
    rng = random.Random(1)
    events = [event(i, text=POSITIVE[i % 3] if i % 4 == 0 else NEGATIVE[i % 3]) for i in range(40)]
    events += [
        event(100 + i, image=image_base64(render_image(rng, i % 2 == 0, 96))) for i in range(6)
    ]
    result = pipeline.process(events)
    assert (result.written, result.skipped_existing, result.rejected) == (46, 0, [])
    counts = table_counts(ch)
    # 46 prompts + 40 output texts + 6 output images; one score per (event, applicable signal)
    assert (counts.events, counts.embeddings, counts.scores) == (46, 92, 46)
    rates = {r.signal: r for r in failure_rates(ch)}
    assert (rates["advice"].events, rates["advice"].failures) == (40, 10)
    assert rates["watermark"].events == 6

    again = pipeline.process([*events, events[0]])
    assert (again.written, again.skipped_existing, again.duplicates_in_batch) == (0, 46, 1)
    assert table_counts(ch) == counts


def test_bad_image_is_rejected_with_reason_and_others_written(
    ch: Any, tiny_embedder: OpenClipEmbedder
) -> None:
    pipeline = make_pipeline(ch, tiny_embedder)
    result = pipeline.process([event(1, text="fine"), event(2, image="data:image/png;base64,!!")])
    assert result.written == 1
    [(rejected, reason)] = result.rejected
    assert rejected.event_id == "e2" and "invalid base64" in reason
    assert table_counts(ch).events == 1


def test_new_signal_applies_from_next_batch_with_its_version(
    ch: Any, tiny_embedder: OpenClipEmbedder
) -> None:
    writer = ClickHouseWriter(ch)
    pipeline = Pipeline(
        tiny_embedder, LiveSignals(ClickHouseSignalStore(ch), tiny_embedder.id, refresh_s=0), writer
    )
    pipeline.process([event(1, text="first")])
    assert failure_rates(ch) == []
    rng = random.Random(3)
    spec = SignalSpec(
        name="advice",
        examples=Examples(
            positive=tuple(advice_text(rng) for _ in range(4)),
            negative=tuple(neutral_text(rng) for _ in range(4)),
        ),
    )
    ClickHouseSignalStore(ch).save(train_signal(spec, tiny_embedder))
    ClickHouseSignalStore(ch).save(train_signal(spec, tiny_embedder))  # version 2
    pipeline.process([event(2, text="second")])
    versions = ch.query("SELECT DISTINCT signal_version FROM signal_scores").result_rows
    assert versions == [(2,)]
    assert [s.version for s in ClickHouseSignalStore(ch).latest()] == [2]


def test_signals_of_another_embedder_are_not_applied(
    ch: Any, tiny_embedder: OpenClipEmbedder
) -> None:
    other = OpenClipEmbedder(model_name="telltale-tiny", pretrained=None, seed=7)
    spec = SignalSpec(name="advice", examples=Examples(positive=POSITIVE, negative=NEGATIVE))
    ClickHouseSignalStore(ch).save(train_signal(spec, other))
    pipeline = Pipeline(
        tiny_embedder,
        LiveSignals(ClickHouseSignalStore(ch), tiny_embedder.id, 0),
        ClickHouseWriter(ch),
    )
    assert pipeline.process([event(1, text="x")]).scores == 0


def test_a_sampling_pipeline_stores_every_event_and_scores_whole_users(
    ch: Any, tiny_embedder: OpenClipEmbedder
) -> None:
    from prometheus_client import CollectorRegistry
    from sampled_traffic import run, sampling_pipeline, traffic

    from streams.metrics import MeteredWriter, SignalCounters, VersionCap
    from streams.sampling import Sampler, SamplingConfig

    counters = SignalCounters(CollectorRegistry(), "t", VersionCap(), "the test")
    sampler = Sampler(SamplingConfig(rate=0.25, version_floor_per_min=30), clock=lambda: 0.0)
    pipeline = sampling_pipeline(ch, tiny_embedder, sampler, MeteredWriter(ch, counters))
    big = traffic(200, 5, 0.2)
    small = traffic(6, 2, 0.2, version="v2", seed=4)  # 12 events a minute, under the floor
    results = run(pipeline, big[:300] + small + big[300:])
    assert sum(r.written for r in results) == len(big) + len(small)

    p = dict(ch.query("SELECT event_id, inclusion_probability FROM events FINAL").result_rows)
    scored = {r[0] for r in ch.query("SELECT DISTINCT event_id FROM signal_scores").result_rows}
    embedded = {r[0] for r in ch.query("SELECT DISTINCT event_id FROM embeddings").result_rows}
    assert len(p) == len(big) + len(small) and embedded == scored
    assert sum(r.unsampled for r in results) == len(p) - len(scored)
    # the same user is in or out together
    drawn = {e.user_id: e.event_id in scored for e in big}
    assert all(drawn[e.user_id] == (e.event_id in scored) for e in big)
    assert 0.15 < sum(drawn.values()) / len(drawn) < 0.35
    assert all(p[e.event_id] == pytest.approx(0.25) for e in big)
    # the small version is scored whole, at probability 1
    assert all(e.event_id in scored and p[e.event_id] == 1.0 for e in small)
    # every score row carries its event's probability
    rows = ch.query("SELECT event_id, inclusion_probability FROM signal_scores FINAL").result_rows
    assert all(q == p[e] for e, q in rows)
    # the worker's counters: every event seen once, scored only when drawn
    registry = counters.events_scored
    total = sum(s.value for m in registry.collect() for s in m.samples
                if s.name.endswith("_total"))  # fmt: skip
    assert total == len(scored)


def test_a_sampler_at_its_defaults_changes_nothing(
    ch: Any, tiny_embedder: OpenClipEmbedder
) -> None:
    from sampled_traffic import run, sampling_pipeline, traffic

    from streams.sampling import Sampler, SamplingConfig

    pipeline = sampling_pipeline(ch, tiny_embedder, Sampler(SamplingConfig()))
    events = traffic(40, 3, 0.2)
    results = run(pipeline, events, batch=64)
    assert sum(r.unsampled for r in results) == 0
    counts = table_counts(ch)
    assert counts.events == len(events) and counts.scores == 2 * len(events)
    probabilities = ch.query(
        "SELECT DISTINCT inclusion_probability FROM signal_scores FINAL UNION DISTINCT "
        "SELECT DISTINCT inclusion_probability FROM events FINAL"
    ).result_rows
    assert probabilities == [(1.0,)]
    rates = {r.signal: r for r in failure_rates(ch)}
    assert rates["tickers"].events == len(events)
