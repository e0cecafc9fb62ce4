"""A small chat log (advice vs neutral answers) and storing it through the real pipeline."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from signals.live import LiveSignals
from storage.writer import ClickHouseWriter
from streams.events import GenerationEvent, validate_event
from streams.pipeline import Pipeline
from telltale.sample_data import advice_text, neutral_text
from telltale.signal_store import ClickHouseSignalStore

T0 = datetime(2026, 10, 1, tzinfo=UTC)


def chat_events(n: int, rng: random.Random, every: int = 5) -> list[GenerationEvent]:
    return [
        validate_event({
            "event_id": f"c{i:04d}", "timestamp": (T0 + timedelta(minutes=i)).isoformat(),
            "model": "chat", "model_version": "v1" if i < n // 2 else "v2",
            "prompt": {"text": "any tips?"},
            "output": {"text": advice_text(rng) if i % every == 0 else neutral_text(rng)},
        })
        for i in range(n)
    ]  # fmt: skip


def store_events(ch: Any, embedder: Any, events: list[GenerationEvent]) -> None:
    """Through the pipeline, with one open_clip embedder or per-field embedders."""
    from signals.embedders import as_field_embedders

    ids = as_field_embedders(embedder).ids
    pipeline = Pipeline(
        embedder, LiveSignals(ClickHouseSignalStore(ch), ids, 0), ClickHouseWriter(ch)
    )
    assert pipeline.process(events).written == len(events)
