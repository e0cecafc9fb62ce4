"""LiveSignals over the in-memory SignalStore: refresh, retraining between batches, the one
version that any number of workers store, and no retrain ping-pong in a rolling upgrade.

The same rules on ClickHouse: tests/signals/test_retrain_once.py and
tests/telltale/test_cli_signals.py.
"""

from __future__ import annotations

import logging
import random
import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from signals.fitted import FittedSignal
from signals.live import LiveSignals, Retrain, retrainer
from signals.open_clip_embedder import OpenClipEmbedder
from signals.spec import Examples, SignalSpec
from signals.store import InMemorySignalStore, RetrainOrigin
from signals.training import fit_signal, train_signal
from telltale.sample_data import advice_text, neutral_text

OLD, NEW = "embedder-old", "embedder-new"
COOLDOWN_S = 600.0


def fitted_on(embedder_id: str, name: str = "advice", seed: int = 1) -> FittedSignal:
    rng = np.random.default_rng(seed)
    pos = rng.normal(1.0, 1.0, (6, 16)).astype(np.float32)
    neg = rng.normal(-1.0, 1.0, (6, 16)).astype(np.float32)
    return fit_signal(SignalSpec(name=name), pos, neg, embedder_id)


def retrain_on(store: InMemorySignalStore, embedder_id: str, calls: list[int]) -> Retrain:
    """A retrain that fits on fixed vectors for ``embedder_id`` and stores the result."""

    def retrain(old: FittedSignal) -> FittedSignal | None:
        calls.append(old.version)
        return store.save_retrained(old, fitted_on(embedder_id, old.name, seed=old.version))

    return retrain


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def test_a_saved_signal_is_applied_after_the_refresh_or_an_invalidate() -> None:
    store = InMemorySignalStore()
    live = LiveSignals(store, NEW, refresh_s=3600)
    assert live().signals == ()
    store.save(fitted_on(NEW))
    assert live().signals == ()  # read at most every refresh_s
    live.invalidate()
    assert [(s.name, s.version) for s in live().signals] == [("advice", 1)]
    stored = live.add(fitted_on(NEW, seed=2), author="a human")  # stores and re-reads
    assert stored.version == 2
    assert [s.version for s in live().signals] == [2]
    assert store.versions("advice") == [(1, NEW, ""), (2, NEW, "a human")]
    assert store.delete("advice") and not store.delete("missing")
    live.invalidate()
    assert live().signals == () and store.latest() == []


def test_a_signal_of_another_embedder_is_retrained_between_batches_once() -> None:
    store = InMemorySignalStore()
    store.save(fitted_on(OLD))
    calls: list[int] = []
    live = LiveSignals(store, NEW, refresh_s=0, retrain=retrain_on(store, NEW, calls))
    assert live().signals == ()  # a batch never trains
    assert calls == [] and [s.version for s in live.stale] == [1]
    done = live.retrain_stale()
    assert [(s.version, s.embedder_id) for s in done] == [(2, NEW)]
    assert [(s.version, s.embedder_id) for s in live().signals] == [(2, NEW)]
    assert live.retrain_stale() == [] and calls == [1]
    assert store.versions("advice") == [(1, OLD, ""), (2, NEW, "auto-retrain from v1")]
    assert store.retrained_from(done[0]) == RetrainOrigin(1, OLD)


def test_three_workers_retraining_at_once_store_one_version() -> None:
    store = InMemorySignalStore()
    store.save(fitted_on(OLD))
    calls: list[int] = []
    workers = [LiveSignals(store, NEW, 3600, retrain_on(store, NEW, calls)) for _ in range(3)]
    for live in workers:
        live()  # each sees v1 as stale before any retrains it
    barrier = threading.Barrier(len(workers))
    results: list[list[tuple[int, str]]] = []

    def run(live: LiveSignals) -> None:
        barrier.wait()
        results.append([(s.version, s.embedder_id) for s in live.retrain_stale()])

    threads = [threading.Thread(target=run, args=(live,)) for live in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert calls == [1, 1, 1]  # all three trained...
    assert results == [[(2, NEW)]] * 3  # ...and all three got the one stored version
    assert [v for v, _, _ in store.versions("advice")] == [1, 2]
    weights = {live().signals[0].weights for live in workers}
    assert len(weights) == 1


def test_a_newer_signal_stored_meanwhile_wins_over_the_retrain() -> None:
    store = InMemorySignalStore()
    old = store.save(fitted_on(OLD))
    store.save(fitted_on("embedder-other"), author="a human")  # v2 on a third embedder
    assert store.save_retrained(old, fitted_on(NEW)) is None
    assert [v for v, _, _ in store.versions("advice")] == [1, 2]


def test_a_rolling_upgrade_does_not_retrain_back_and_forth(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Workers on the old and the new embedder at once: the new ones retrain v1 to v2; the
    old ones leave v2 alone (unapplied, with a warning) instead of retraining it back to v3,
    which the new ones would retrain to v4..."""
    store = InMemorySignalStore()
    store.save(fitted_on(OLD))
    clock = Clock()
    calls: list[int] = []
    new = LiveSignals(store, NEW, 0, retrain_on(store, NEW, calls),
                      retrain_cooldown_s=COOLDOWN_S, clock=clock)  # fmt: skip
    old = LiveSignals(store, OLD, 0, retrain_on(store, OLD, calls),
                      retrain_cooldown_s=COOLDOWN_S, clock=clock)  # fmt: skip
    assert [s.version for s in old().signals] == [1]  # applied until someone retrains it
    assert [s.version for s in new.retrain_stale()] == [2]
    with caplog.at_level(logging.WARNING, logger="signals.live"):
        for _ in range(5):  # many refreshes and maintenance rounds during the upgrade
            clock.now += timedelta(seconds=60)
            assert old.retrain_stale() == [] and new.retrain_stale() == []
            assert old().signals == () and old.held == [("advice", 2)]
            assert [s.version for s in new().signals] == [2]
    assert calls == [1]
    assert [v for v, _, _ in store.versions("advice")] == [1, 2]
    held = [r for r in caplog.records if "rolling upgrade" in r.getMessage()]
    assert len(held) == 1  # said once, not every refresh
    # After the cool-down the old embedder is taken as wanted (a roll-back): retrained back.
    clock.now += timedelta(seconds=COOLDOWN_S)
    assert [(s.version, s.embedder_id) for s in old.retrain_stale()] == [(3, OLD)]
    assert old.held == [] and [s.version for s in old().signals] == [3]


def test_a_human_version_on_another_embedder_is_retrained_at_once() -> None:
    """The cool-down holds back only retrains of automatic retrains away from this worker's
    embedder; a new version a human trained elsewhere is retrained as usual."""
    store = InMemorySignalStore()
    clock = Clock()
    store.save(fitted_on(NEW))
    store.save(fitted_on(OLD), author="a human")
    calls: list[int] = []
    live = LiveSignals(store, NEW, 0, retrain_on(store, NEW, calls),
                       retrain_cooldown_s=COOLDOWN_S, clock=clock)  # fmt: skip
    assert [s.version for s in live.retrain_stale()] == [3] and live.held == []


def test_a_signal_that_cannot_be_retrained_is_logged_and_not_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = InMemorySignalStore()
    store.save(fitted_on(OLD))
    calls: list[int] = []

    def failing(old: FittedSignal) -> FittedSignal | None:
        calls.append(old.version)
        raise ValueError("an example image is gone")

    live = LiveSignals(store, NEW, 0, failing)
    with caplog.at_level(logging.ERROR, logger="signals.live"):
        assert live.retrain_stale() == []
    assert "an example image is gone" in caplog.text
    assert live.retrain_stale() == [] and calls == [1]
    assert live().signals == () and live.stale == []


def test_without_a_retrain_a_signal_of_another_embedder_is_left_out() -> None:
    store = InMemorySignalStore()
    store.save(fitted_on(OLD))
    store.save(fitted_on(NEW, name="other"))
    live = LiveSignals(store, NEW, 0)
    assert [s.name for s in live().signals] == ["other"]
    assert live.stale == [] and live.retrain_stale() == []


def test_the_real_retrainer_trains_on_the_new_embedder_and_stores_in_any_store(
    tiny_embedder: OpenClipEmbedder,
) -> None:
    rng = random.Random(4)
    other = OpenClipEmbedder(model_name="telltale-tiny", pretrained=None, seed=9)
    spec = SignalSpec(name="advice", examples=Examples(
        positive=tuple(advice_text(rng) for _ in range(4)),
        negative=tuple(neutral_text(rng) for _ in range(4))))  # fmt: skip
    store = InMemorySignalStore()
    store.save(train_signal(spec, other))
    live = LiveSignals(store, tiny_embedder.id, 0, retrainer(store, tiny_embedder))
    [done] = live.retrain_stale()
    assert (done.version, done.embedder_id, done.spec) == (2, tiny_embedder.id, spec)
    scores = live().score("output.text", tiny_embedder.embed_texts([advice_text(rng)]))
    assert scores.probabilities.shape == (1, 1)
