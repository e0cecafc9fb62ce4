"""Traffic for the sampling tests: users who retry, a planted failure rate, a small version.

Every fresh answer is one of a few texts made unique; the ``tickers`` pattern signal flags
exactly the advice texts (they name a ticker), so the planted failure rate is known exactly.
A user's later events repeat their previous answer (a retry) with probability ``retry``.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from signals.live import LiveSignals
from signals.spec import Examples, SignalSpec
from signals.training import train_signal
from storage.writer import ClickHouseWriter
from streams.events import GenerationEvent, validate_event
from streams.pipeline import Pipeline
from streams.sampling import Sampler
from streams.slices import Slicer
from telltale.signal_store import ClickHouseSignalStore

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
ADVICE = ("Buy ACME shares now.", "Put your savings into TSLA stock.", "Sell bonds, buy NVDA.")
NEUTRAL = ("Paris is the capital of France.", "Boil pasta for ten minutes.", "Rain is water.",
           "The meeting is at noon.", "Cats sleep a lot.")  # fmt: skip
TICKERS = r"\b(ACME|TSLA|NVDA)\b"


def traffic(
    users: int, per_user: int, failure_rate: float, *, version: str = "v1", retry: float = 0.4,
    seed: int = 3, first_id: int = 0, unit: str = "u", attributes: dict[str, str] | None = None,
) -> list[GenerationEvent]:  # fmt: skip
    """``users × per_user`` events, shuffled, answers flagged at about ``failure_rate``; users
    are named ``{version}-{unit}{n}``, and every event carries ``attributes``."""
    rng = random.Random(seed)
    events = []
    for u in range(users):
        text = ""
        for _ in range(per_user):
            if not text or rng.random() >= retry:  # a fresh answer: its own text
                pool = ADVICE if rng.random() < failure_rate else NEUTRAL
                text = f"{pool[rng.randrange(len(pool))]} (answer {first_id + len(events)})"
            i = first_id + len(events)
            events.append(validate_event({
                "event_id": f"{version}-e{i}", "timestamp": (T0 + timedelta(seconds=i)).isoformat(),
                "model": "m", "model_version": version, "user_id": f"{version}-{unit}{u}",
                "prompt": {"text": "what now?"}, "output": {"text": text},
                "attributes": attributes or {},
            }))  # fmt: skip
    rng.shuffle(events)
    return events


def flagged_share(events: list[GenerationEvent]) -> float:
    """The planted failure rate: the share of events whose answer names a ticker."""
    return sum(re.search(TICKERS, e.output.text or "") is not None for e in events) / len(events)


def sampling_pipeline(
    ch: Any, embedder: Any, sampler: Sampler | None, writer: Any = None,
    slicer: Slicer | None = None,
) -> Pipeline:  # fmt: skip
    """A pipeline with a few-shot ``advice`` signal and the ``tickers`` pattern signal."""
    store = ClickHouseSignalStore(ch)
    advice = SignalSpec(name="advice", threshold=0.5,
                        examples=Examples(positive=ADVICE, negative=NEUTRAL[:3]))  # fmt: skip
    tickers = SignalSpec(name="tickers", kind="pattern", patterns=(TICKERS,))
    for spec in (advice, tickers):
        store.save(train_signal(spec, embedder))
    return Pipeline(embedder, LiveSignals(store, embedder.id, refresh_s=0),
                    writer or ClickHouseWriter(ch), sampler=sampler, slicer=slicer)  # fmt: skip


def run(pipeline: Pipeline, events: list[GenerationEvent], batch: int = 256) -> list[Any]:
    """``events`` through ``pipeline`` in worker-sized batches; the batch results."""
    return [pipeline.process(events[i : i + batch]) for i in range(0, len(events), batch)]
