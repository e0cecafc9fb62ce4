"""Background negatives: a text signal trains against a sample of stored traffic of its field.

On real chDB through the real pipeline: the stored windows are used (and counted in the
metrics) by ``train_signal`` and the retrainer alike, the signal's own stored examples are left
out, the same store gives the same signal, and an empty store trains exactly as without one.
On synthetic windows: the confound background negatives exist for (a harmless sentence that
only the positives drawn contain) is learnt without them and not with them.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from signals import BACKGROUND_WINDOWS, TrafficSample, fit_signal, retrainer, train_signal
from signals.bank import SignalBank
from signals.live import LiveSignals
from signals.open_clip_embedder import OpenClipEmbedder
from signals.spec import EventRef, Examples, SignalSpec
from signals.windows import Windows
from storage.writer import ClickHouseWriter
from streams.events import GenerationEvent, validate_event
from streams.pipeline import Pipeline
from telltale.sample_data import advice_text, neutral_text
from telltale.signal_store import ClickHouseSignalStore, stored_examples

T0 = datetime(2026, 10, 1, tzinfo=UTC)


def store_chat(ch: Any, embedder: OpenClipEmbedder, n: int, rng: random.Random) -> None:
    """``n`` chat answers (every fifth one advice) stored through the real pipeline."""
    events: list[GenerationEvent] = [
        validate_event({
            "event_id": f"c{i:04d}", "timestamp": (T0 + timedelta(minutes=i)).isoformat(),
            "model": "chat", "model_version": "v1", "prompt": {"text": "any tips?"},
            "output": {"text": advice_text(rng) if i % 5 == 0 else neutral_text(rng)},
        })
        for i in range(n)
    ]  # fmt: skip
    pipeline = Pipeline(
        embedder, LiveSignals(ClickHouseSignalStore(ch), embedder.id, 0), ClickHouseWriter(ch)
    )
    assert pipeline.process(events).written == n


def _spec(rng: random.Random, refs: tuple[str, ...] = ()) -> SignalSpec:
    return SignalSpec(name="advice", examples=Examples(
        positive=(*(EventRef(event_id=r) for r in refs), *(advice_text(rng) for _ in range(4))),
        negative=tuple(neutral_text(rng) for _ in range(4))))  # fmt: skip


def test_stored_traffic_is_background_for_add_and_retrain(
    ch: Any, tiny_embedder: OpenClipEmbedder
) -> None:
    store_chat(ch, tiny_embedder, 40, random.Random(5))
    lookup = stored_examples(ch)
    assert isinstance(lookup, TrafficSample)
    spec = _spec(random.Random(6), refs=("c0000", "c0005"))

    fitted = train_signal(spec, tiny_embedder, lookup=lookup)
    # 40 stored short texts (one window each), the signal's own two examples left out
    assert fitted.metrics["background_offered"] == 38
    # the examples' cross-validation decides whether the final fit uses them (all or none)
    assert fitted.metrics["background_windows"] in (0, 38)
    sample = lookup.background("output.text", tiny_embedder, BACKGROUND_WINDOWS, {"c0000"})
    assert sample.shape == (39, tiny_embedder.dim)
    assert lookup.background("output.text", tiny_embedder, 10, set()).shape == (
        10,
        tiny_embedder.dim,
    )
    assert (
        train_signal(spec, tiny_embedder, lookup=lookup, background_windows=10).metrics[
            "background_windows"
        ]
        == 10
    )

    # the same store gives the same signal; the background changes the model
    again = train_signal(spec, tiny_embedder, lookup=lookup)
    assert again.weights == fitted.weights and again.threshold == fitted.threshold
    alone = train_signal(spec, tiny_embedder, lookup=lookup, background_windows=0)
    assert "background_windows" not in alone.metrics
    if fitted.metrics["background_windows"]:
        assert not np.allclose(alone.weights, fitted.weights)
    else:
        assert alone.weights == fitted.weights

    # the retrainer (a signal of another embedder, retrained onto the stored one) does the same
    other = OpenClipEmbedder(model_name="telltale-tiny", pretrained=None, seed=9)
    store = ClickHouseSignalStore(ch)
    old = store.save(train_signal(spec, other, lookup=lookup))
    assert old.metrics["background_offered"] == 0  # nothing stored under that embedder
    retrained = retrainer(store, tiny_embedder, lookup)(old)
    assert retrained is not None and retrained.embedder_id == tiny_embedder.id
    assert retrained.metrics["background_offered"] == 38
    assert retrained.weights == fitted.weights


def test_empty_store_trains_as_without_one(ch: Any, tiny_embedder: OpenClipEmbedder) -> None:
    spec = _spec(random.Random(7))
    with_store = train_signal(spec, tiny_embedder, lookup=stored_examples(ch))
    without = train_signal(spec, tiny_embedder)
    assert with_store.metrics["background_offered"] == 0
    assert with_store.metrics["background_windows"] == 0
    assert with_store.weights == without.weights
    assert with_store.bias == without.bias and with_store.threshold == without.threshold
    assert {k: v for k, v in with_store.metrics.items() if not k.startswith("background")} == (
        without.metrics
    )


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def test_background_unlearns_a_harmless_sentence_only_the_positives_contain() -> None:
    """Answers are bags of sentence vectors: harmless sentence types, and in a failing answer
    one failure sentence. Every positive drawn also holds the harmless type 0, which no
    negative drawn holds; the held-out harmless answers that hold type 0 are the hard ones.
    The background, like stored traffic, holds every harmless type and 3 % failing answers."""
    rng = np.random.default_rng(0)
    dim, types = 48, 12
    harmless = _unit(rng.normal(size=(types, dim)))
    failure = _unit(rng.normal(size=dim))

    def answer(failing: bool, with_zero: bool) -> np.ndarray:
        kinds = list(rng.choice(np.arange(1, types), size=3, replace=False))
        rows = [harmless[k] for k in kinds] + ([harmless[0]] if with_zero else [])
        rows += [failure] if failing else []
        return _unit(np.array(rows) + rng.normal(0, 0.15, (len(rows), dim)))

    positives = [answer(True, True) for _ in range(8)]
    negatives = [answer(False, False) for _ in range(8)]
    traffic = [answer(rng.random() < 0.03, rng.random() < 0.3) for _ in range(300)]
    background = np.concatenate(traffic)
    hard_negatives = [answer(False, True) for _ in range(60)]
    failing = [answer(True, bool(rng.random() < 0.5)) for _ in range(60)]

    def rates(fitted: Any) -> tuple[float, float]:
        bank = SignalBank([fitted], "synthetic")
        flagged = bank.score_windows(
            "output.text", Windows.of([*hard_negatives, *failing], dim)
        ).flagged[:, 0]
        return float(flagged[:60].mean()), float(flagged[60:].mean())

    spec = SignalSpec(name="failure")
    false_alarms, recall = rates(fit_signal(spec, positives, negatives, "synthetic"))
    assert false_alarms > 0.5  # without background, type 0 is taken for the failure
    fitted = fit_signal(spec, positives, negatives, "synthetic", background=background)
    assert fitted.metrics["background_windows"] == len(background)  # kept by the CV
    false_alarms, recall = rates(fitted)
    # measured: 0.97 false alarms without background, 0.15 with it (recall 1.00 / 0.93)
    assert false_alarms <= 0.25 and recall >= 0.9

    # traffic where most answers fail teaches that the failure is harmless: the examples'
    # cross-validation sees it and the signal trains without that background
    failing_traffic = np.concatenate([answer(rng.random() < 0.6, False) for _ in range(300)])
    refused = fit_signal(spec, positives, negatives, "synthetic", background=failing_traffic)
    assert refused.metrics["background_offered"] == len(failing_traffic)
    assert refused.metrics["background_windows"] == 0
