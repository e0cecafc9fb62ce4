"""The signal workflow: stored-event examples, MLP, retraining on embedder change, back-fill,
suggestions and labels."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from chat_log import chat_events, store_events
from typer.testing import CliRunner

from signals.bank import SignalBank
from signals.errors import TrainingError
from signals.labeling import suggest
from signals.live import LiveSignals, retrainer
from signals.open_clip_embedder import OpenClipEmbedder
from signals.spec import EventRef, Examples, SignalSpec, load_spec
from signals.training import fit_signal, train_signal
from storage.queries import failure_rates, table_counts
from telltale.backfill import backfill
from telltale.cli import app
from telltale.sample_data import advice_text, neutral_text
from telltale.signal_store import ClickHouseEmbeddings, ClickHouseSignalStore, stored_examples

T0 = datetime(2026, 10, 1, tzinfo=UTC)


def test_mlp_signal_scores_like_its_own_forward_pass() -> None:
    rng = np.random.default_rng(3)
    pos = rng.normal(1, 1, (12, 16)).astype(np.float32)
    neg = rng.normal(-1, 1, (12, 16)).astype(np.float32)
    mlp = fit_signal(SignalSpec(name="m", classifier="mlp", hidden_units=4), pos, neg, "emb")
    lin = fit_signal(SignalSpec(name="l"), pos, neg, "emb")
    assert mlp.is_mlp and len(mlp.hidden_bias) == 4 and len(mlp.weights) == 4
    assert mlp.metrics["roc_auc"] > 0.9
    x = rng.normal(0, 1.5, (30, 16)).astype(np.float32)
    scored = SignalBank([mlp, lin], "emb").score("output.text", x)
    assert [s.name for s in scored.signals] == ["l", "m"]
    h = np.maximum(x @ np.array(mlp.hidden_weights) + np.array(mlp.hidden_bias), 0)
    expected = 1 / (1 + np.exp(-(h @ np.array(mlp.weights) + mlp.bias)))
    np.testing.assert_allclose(scored.probabilities[:, 1], expected, rtol=1e-4, atol=1e-6)


def test_stored_events_as_examples_and_failure_paths(
    ch: Any, tiny_embedder: OpenClipEmbedder
) -> None:
    rng = random.Random(1)
    events = chat_events(20, rng)
    store_events(ch, tiny_embedder, events)
    lookup = stored_examples(ch)
    spec = SignalSpec(name="advice", examples=Examples(
        positive=(EventRef(event_id="c0000"), EventRef(event_id="c0005"), advice_text(rng)),
        negative=(EventRef(event_id="c0001"), neutral_text(rng))))  # fmt: skip
    fitted = train_signal(spec, tiny_embedder, lookup=lookup)
    assert (fitted.n_positive, fitted.n_negative) == (3, 2)
    # the stored vector is used as is (a short text: one window, the vector)
    stored = lookup.vectors(["c0000"], "output.text", tiny_embedder)["c0000"]
    assert stored.shape == (1, tiny_embedder.dim)
    np.testing.assert_allclose(stored[0],
                               tiny_embedder.embed_texts([events[0].output.text or ""])[0],
                               atol=1e-5)  # fmt: skip

    unknown = spec.model_copy(update={"examples": Examples(
        positive=(EventRef(event_id="nope"), "a"), negative=("b", "c"))})  # fmt: skip
    with pytest.raises(TrainingError, match=r"unknown event id.*'nope'"):
        train_signal(unknown, tiny_embedder, lookup=lookup)
    with pytest.raises(TrainingError, match="no event store"):
        train_signal(spec, tiny_embedder)
    image = SignalSpec(name="wm", modality="image", examples=Examples(
        positive=("not an image", "also not"), negative=("x", "y")))  # fmt: skip
    with pytest.raises(TrainingError, match=r"modality image.*positive example 1"):
        train_signal(image, tiny_embedder)
    image_of_text_event = SignalSpec(name="wm", modality="image", examples=Examples(
        positive=(EventRef(event_id="c0000"), EventRef(event_id="c0005")),
        negative=(EventRef(event_id="c0001"), EventRef(event_id="c0002"))))  # fmt: skip
    with pytest.raises(TrainingError, match=r"no output\.image"):
        train_signal(image_of_text_event, tiny_embedder, lookup=lookup)


def test_signal_of_another_embedder_is_retrained_automatically(
    ch: Any, tiny_embedder: OpenClipEmbedder
) -> None:
    rng = random.Random(2)
    other = OpenClipEmbedder(model_name="telltale-tiny", pretrained=None, seed=9)
    spec = SignalSpec(name="advice", examples=Examples(
        positive=tuple(advice_text(rng) for _ in range(4)),
        negative=tuple(neutral_text(rng) for _ in range(4))))  # fmt: skip
    ClickHouseSignalStore(ch).save(train_signal(spec, other))
    live = LiveSignals(
        ClickHouseSignalStore(ch),
        tiny_embedder.id,
        0,
        retrain=retrainer(ClickHouseSignalStore(ch), tiny_embedder, stored_examples(ch)),
    )
    # the batch path only notes the stale signal; training happens between batches
    assert live().signals == () and [s.version for s in live.stale] == [1]
    [retrained] = live.retrain_stale()
    bank = live()
    [signal] = bank.signals
    assert signal == retrained
    assert (signal.version, signal.embedder_id) == (2, tiny_embedder.id)
    rows = ch.query("SELECT version, author FROM signals ORDER BY version").result_rows
    assert rows == [(1, ""), (2, "auto-retrain from v1")]
    assert live().signals == bank.signals  # not retrained twice


def test_backfill_scores_history_once(ch: Any, tiny_embedder: OpenClipEmbedder) -> None:
    rng = random.Random(4)
    events = chat_events(60, rng)
    store_events(ch, tiny_embedder, events)  # stored before the signal exists
    assert failure_rates(ch) == []
    spec = SignalSpec(name="advice", examples=Examples(
        positive=tuple(advice_text(rng) for _ in range(8)),
        negative=tuple(neutral_text(rng) for _ in range(8))))  # fmt: skip
    fitted = ClickHouseSignalStore(ch).save(train_signal(spec, tiny_embedder))
    seen: list[int] = []
    first = backfill(ch, fitted, until=T0 + timedelta(minutes=50), chunk=16, progress=seen.append)
    assert first.scored == 50 and sum(seen) == 50 and seen[0] == 16
    rest = backfill(ch, fitted, chunk=16)
    assert rest.scored == 10  # only what the first run left out
    assert backfill(ch, fitted).scored == 0
    rates = failure_rates(ch, signal="advice")
    assert sum(r.events for r in rates) == 60
    assert {r.model_version for r in rates} == {"v1", "v2"}
    planted = sum(1 for e in events if "share" in (e.output.text or "").lower()
                  or "stock" in (e.output.text or "").lower())  # fmt: skip
    assert planted > 0
    assert table_counts(ch).scores == 60


def test_suggest_finds_uncertain_and_similar_events(
    ch: Any, tiny_embedder: OpenClipEmbedder
) -> None:
    rng = random.Random(6)
    store_events(ch, tiny_embedder, chat_events(40, rng))
    spec = SignalSpec(name="advice", examples=Examples(
        positive=(EventRef(event_id="c0000"), advice_text(rng)),
        negative=(neutral_text(rng), neutral_text(rng))))  # fmt: skip
    fitted = train_signal(spec, tiny_embedder, lookup=stored_examples(ch))
    found = suggest(ClickHouseEmbeddings(ch), fitted, tiny_embedder, stored_examples(ch), limit=5)
    uncertain = [s for s in found if s.reason == "uncertain"]
    similar = [s for s in found if s.reason == "similar_to_positive"]
    assert len(uncertain) == 5 and len(similar) == 5
    assert "c0000" not in {s.event_id for s in found}  # already an example
    margins = [abs(s.score - fitted.threshold) for s in uncertain]
    assert margins == sorted(margins)
    assert all(s.content for s in found)
    # neighbours of the advice examples are mostly advice (every 5th event is)
    advice_like = sum(1 for s in similar if int(s.event_id[1:]) % 5 == 0)
    assert advice_like >= 3


def test_cli_signal_workflow(tiny_env: dict[str, str], tmp_path: Path,
                             tiny_embedder: OpenClipEmbedder, minilm: Any) -> None:  # fmt: skip
    from signals.embedders import FieldEmbedders
    from storage.client import connect
    from storage.migrate import migrate

    db = tmp_path / "db"
    client = connect(f"chdb://{db}")
    migrate(client)
    # stored as the CLI embeds: text with the default MiniLM, images with the tiny CLIP
    store_events(client, FieldEmbedders(tiny_embedder, minilm), chat_events(30, random.Random(8)))
    client.close()
    runner = CliRunner()

    def run(*args: str) -> Any:
        result = runner.invoke(app, [*args, "--clickhouse", f"chdb://{db}", "--format", "json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    spec = Path(__file__).resolve().parents[2] / "examples" / "stock_advice.yaml"
    assert run("signals", "add", str(spec))["version"] == 1
    filled = run("signals", "backfill", "stock_advice")
    assert filled["scored"] == 30
    assert run("signals", "backfill", "stock_advice")["scored"] == 0
    report = run("signals", "eval", "stock_advice")
    assert report["observed"]["events"] == 30 and set(report["observed"]["score_quantiles"]) == {
        "p10", "p50", "p90", "p99"}  # fmt: skip
    suggestions = run("signals", "suggest", "stock_advice", "--limit", "3")["suggestions"]
    assert suggestions
    labelled = run("signals", "label", "stock_advice", suggestions[0]["event_id"], "--negative")
    negatives = len(load_spec(spec).examples.negative)
    assert labelled["version"] == 2 and labelled["n_negative"] == negatives + 1
    assert run("signals", "rm", "stock_advice") == {"removed": "stock_advice"}
    assert run("signals", "list")["signals"] == []
    bad = runner.invoke(app, ["signals", "eval", "missing", "--clickhouse", f"chdb://{db}"])
    assert bad.exit_code != 0 and "no signal named" in bad.output
