"""A changed embedder produces exactly one new signal version, however many workers run.

Three workers (three :class:`LiveSignals`, each with its own retrainer, over one ClickHouse
database as in production) all see version 1, trained on the old embedder, before any of them
retrains it: the race that used to store versions 2, 3 and 4 (each worker took the next free
version number). The retrained version's number now follows from the version it replaces.
"""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from signals.live import LiveSignals, retrainer
from signals.open_clip_embedder import OpenClipEmbedder
from signals.spec import Examples, SignalSpec
from signals.training import train_signal
from telltale.sample_data import advice_text, neutral_text
from telltale.signal_store import ClickHouseSignalStore, stored_examples

WORKERS = 3


@pytest.fixture
def old_signal(ch: Any) -> None:
    rng = random.Random(11)
    old = OpenClipEmbedder(model_name="telltale-tiny", pretrained=None, seed=5)
    spec = SignalSpec(name="advice", examples=Examples(
        positive=tuple(advice_text(rng) for _ in range(4)),
        negative=tuple(neutral_text(rng) for _ in range(4))))  # fmt: skip
    ClickHouseSignalStore(ch).save(train_signal(spec, old))


def worker(ch: Any, embedder: OpenClipEmbedder, refresh_s: float = 3600) -> LiveSignals:
    store = ClickHouseSignalStore(ch)
    retrain = retrainer(store, embedder, stored_examples(ch))
    return LiveSignals(store, embedder.id, refresh_s, retrain)


def versions(ch: Any) -> list[tuple[int, str, str]]:
    rows = ch.query("SELECT version, embedder_id, author FROM signals FINAL ORDER BY version")
    return [(int(v), str(e), str(a)) for v, e, a in rows.result_rows]


def test_three_workers_that_all_see_the_old_version_store_one_new_version(
    ch: Any, tiny_embedder: OpenClipEmbedder, old_signal: None
) -> None:
    workers = [worker(ch, tiny_embedder) for _ in range(WORKERS)]
    for live in workers:  # every worker's batches run without the signal, and without training
        assert live().signals == ()
        assert [(s.name, s.version) for s in live.stale] == [("advice", 1)]
    assert len(versions(ch)) == 1
    stored = [live.retrain_stale() for live in workers]  # each retrains what it saw: v1
    assert [[s.version for s in done] for done in stored] == [[2]] * WORKERS
    old_id = versions(ch)[0][1]
    assert versions(ch) == [(1, old_id, ""), (2, tiny_embedder.id, "auto-retrain from v1")]
    applied = [live().signals for live in workers]
    assert all([(s.name, s.version) for s in bank] == [("advice", 2)] for bank in applied)
    weights = {bank[0].model_dump_json(include={"weights", "bias", "threshold"})
               for bank in applied}  # fmt: skip
    assert len(weights) == 1  # every worker scores with the same model
    assert [s.version for s in ClickHouseSignalStore(ch).latest()] == [2]


def test_concurrent_retrains_on_threads_store_one_new_version(
    ch: Any, tiny_embedder: OpenClipEmbedder, old_signal: None
) -> None:
    """The same with the three retrains running at once (one chDB client, as the engine allows
    one database per process; each call is serialised by the client, not by telltale)."""
    workers = [worker(ch, tiny_embedder) for _ in range(WORKERS)]
    for live in workers:
        live()
    barrier = threading.Barrier(WORKERS)
    results: list[list[int]] = []
    lock = threading.Lock()

    def run(live: LiveSignals) -> None:
        barrier.wait()
        done = live.retrain_stale()
        with lock:
            results.append([s.version for s in done])

    threads = [threading.Thread(target=run, args=(live,)) for live in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(results) == [[2]] * WORKERS
    assert [v for v, _, _ in versions(ch)] == [1, 2]


def test_workers_on_the_old_embedder_do_not_retrain_back_during_a_rolling_upgrade(
    ch: Any, tiny_embedder: OpenClipEmbedder, old_signal: None
) -> None:
    """A worker still on the old embedder sees v2, retrained away from its embedder by a
    worker on the new one: it leaves v2 unapplied instead of storing v3 back on the old one."""
    old = worker(ch, OpenClipEmbedder(model_name="telltale-tiny", pretrained=None, seed=5), 0)
    new = worker(ch, tiny_embedder, 0)
    assert [s.version for s in old().signals] == [1]
    assert [s.version for s in new.retrain_stale()] == [2]
    for _ in range(3):
        assert old.retrain_stale() == [] and new.retrain_stale() == []
    assert old().signals == () and old.held == [("advice", 2)]
    assert [s.version for s in new().signals] == [2]
    old_id = versions(ch)[0][1]
    assert versions(ch) == [(1, old_id, ""), (2, tiny_embedder.id, "auto-retrain from v1")]
