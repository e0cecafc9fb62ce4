"""Weak supervision: labelling functions, the Dawid-Skene label model, training on weak labels
cross-validated on gold only, and the CLI (`signals train --weak`, `suggest`) on real storage."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from chat_log import chat_events, store_events
from typer.testing import CliRunner

from signals.errors import SpecError, TrainingError
from signals.open_clip_embedder import OpenClipEmbedder
from signals.spec import parse_spec
from signals.training import fit_signal
from signals.weak import ABSTAIN, LabelModel, WeakExamples, apply_labelling_functions, majority_vote
from signals.weak_fit import WeakPool, train_weak_signal
from telltale.cli import app


def synthetic_votes(
    rng: np.random.Generator, n: int, prior: float, sources: list[tuple[float, float, float, float]]
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and conditionally independent votes. Per source: P(vote 1 | failure),
    P(abstain | failure), P(vote 0 | fine), P(abstain | fine)."""
    y = (rng.random(n) < prior).astype(int)
    votes = np.empty((n, len(sources)), dtype=np.int8)
    for j, (hit, abstain_fail, miss, abstain_fine) in enumerate(sources):
        u = rng.random(n)
        on_fail = np.where(u < hit, 1, np.where(u < hit + abstain_fail, ABSTAIN, 0))
        on_fine = np.where(u < miss, 0, np.where(u < miss + abstain_fine, ABSTAIN, 1))
        votes[:, j] = np.where(y == 1, on_fail, on_fine)
    return y, votes


SOURCES = [
    (0.60, 0.40, 0.00, 0.99),  # a pattern: fires on 60 % of failures, 1 % of fine answers
    (0.10, 0.30, 0.55, 0.44),  # a zero-shot query: top share / bottom share
    (0.80, 0.00, 0.95, 0.00),  # another signal: flagged or not
    (0.60, 0.00, 0.65, 0.00),  # a poor one
]


def true_accuracies(y: np.ndarray, votes: np.ndarray) -> list[float]:
    return [float(np.mean(votes[votes[:, j] != ABSTAIN, j] == y[votes[:, j] != ABSTAIN]))
            for j in range(votes.shape[1])]  # fmt: skip


@pytest.mark.parametrize("seed", range(5))
def test_the_label_model_estimates_each_sources_accuracy_from_agreements_alone(seed: int) -> None:
    # Over seeds 0-9 at this size the worst source's error was 0.004-0.059 (0.07 is the bound)
    # and Dawid-Skene beat majority vote by 0.011-0.018.
    y, votes = synthetic_votes(np.random.default_rng(seed), 20_000, 0.08, SOURCES)
    model = LabelModel.fit(votes)  # no labels at all
    estimated = model.accuracies()
    assert np.max(np.abs(estimated - true_accuracies(y, votes))) < 0.07, estimated
    assert abs(model.prior - y.mean()) < 0.015
    ds = np.mean((model.predict(votes) >= 0.5) == (y == 1))
    mv = np.mean((majority_vote(votes) > 0.5) == (y == 1))
    # the poor source outvotes the good ones under majority vote; weighed, it does not
    assert ds > mv + 0.008, (ds, mv)


def test_gold_labels_fix_which_class_is_which() -> None:
    """Sources that mostly mean the opposite of what they say: from agreements alone the two
    classes are interchangeable (the model takes the side where sources mean what they say);
    a few gold labels settle it."""
    inverted = [(0.2, 0.0, 0.25, 0.0), (0.3, 0.0, 0.3, 0.0), (0.25, 0.0, 0.2, 0.0)]
    rng = np.random.default_rng(3)
    y, votes = synthetic_votes(rng, 3000, 0.4, inverted)
    gold_y, gold_votes = synthetic_votes(rng, 40, 0.4, inverted)
    unanchored = LabelModel.fit(votes)
    anchored = LabelModel.fit(votes, gold_votes, gold_y.astype(float))
    assert np.all(unanchored.accuracies() > 0.5)
    assert np.max(np.abs(anchored.accuracies() - true_accuracies(y, votes))) < 0.05
    assert np.mean((anchored.predict(votes) >= 0.5) == (y == 1)) > 0.8


def test_labelling_functions_vote_and_abstain_by_their_kind() -> None:
    spec = parse_spec({"name": "s", "examples": {"positive": ["a", "b"], "negative": ["c", "d"]},
                       "labelling_functions": [
                           {"keywords": ["buy"]},
                           {"keywords": ["index fund"], "votes": "negative"},
                           {"query": "q", "top": 0.25, "bottom": 0.5},
                           {"feedback": True},
                       ]})  # fmt: skip
    texts = ["Buy ACME now.", "An index fund is fine.", None, "Hello."]
    groups = [np.array([v], dtype=np.float32) for v in ([1, 0], [0, 1], [0.7, 0.7], [-1, 0])]
    votes = apply_labelling_functions(spec.labelling_functions, groups, texts,
                                      queries={"q": np.array([1.0, 0.0], dtype=np.float32)},
                                      feedback=[-1, None, 1, None])  # fmt: skip
    assert votes.tolist() == [
        [1, ABSTAIN, 1, 1],  # keyword: failure; top cosine; negative feedback
        [ABSTAIN, 0, 0, ABSTAIN],  # the "negative" keyword matches: fine; bottom cosine
        [ABSTAIN, ABSTAIN, ABSTAIN, 0],  # no stored text; middle cosine; positive feedback
        [ABSTAIN, ABSTAIN, 0, ABSTAIN],
    ]


@pytest.mark.parametrize(
    ("functions", "message"),
    [
        ([{"patterns": ["(unclosed"]}], "not a valid regular expression at position"),
        ([{"keywords": ["x"], "query": "y"}], "exactly one of signal"),
        ([{}], "exactly one of signal"),
        ([{"query": "y", "top": 0.6, "bottom": 0.6}], "must not exceed 1"),
        ([{"signal": "s"}], "cannot name the signal it trains"),
    ],
)
def test_bad_labelling_functions_are_refused(functions: list[Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec({"name": "s", "labelling_functions": functions})


def test_labelling_functions_train_few_shot_logistic_signals_only() -> None:
    for extra in ({"kind": "zero_shot", "query": "q"}, {"classifier": "mlp"}):
        with pytest.raises(SpecError, match="few_shot logistic signal only"):
            parse_spec({"name": "s", **extra, "labelling_functions": [{"feedback": True}]})


def test_weak_labels_carry_a_signal_that_gold_alone_cannot_learn() -> None:
    """3+3 gold examples in 32 dimensions, a failure along one of them: too few to find it.
    300 weakly labelled events (label probabilities 0.85 / 0.15, so a share are wrong) do."""
    rng = np.random.default_rng(11)
    dim = 32

    def draw(n: int, label: int) -> np.ndarray:
        x = rng.normal(0, 1, (n, dim))
        x[:, 0] += 1.5 if label else -1.5
        return x.astype(np.float32)

    spec = parse_spec({"name": "s", "threshold": 0.5})
    gold_pos, gold_neg = draw(3, 1), draw(3, 0)
    labels = (rng.random(300) < 0.3).astype(int)
    pool = [draw(1, int(label)) for label in labels]
    noisy = np.where(rng.random(300) < 0.1, 1 - labels, labels)  # 10 % of weak labels wrong
    weak = WeakExamples(tuple(f"e{i}" for i in range(300)), pool,
                        np.where(noisy == 1, 0.85, 0.15))  # fmt: skip
    test_y = np.array([1] * 500 + [0] * 500)
    test_x = np.concatenate([draw(500, 1), draw(500, 0)])

    def accuracy(fitted: Any) -> float:
        logits = test_x @ np.array(fitted.weights) + fitted.bias
        return float(np.mean((logits >= np.log(fitted.threshold / (1 - fitted.threshold)))
                             == (test_y == 1)))  # fmt: skip

    plain = fit_signal(spec, gold_pos, gold_neg, "e", 1)
    weakly = fit_signal(spec, gold_pos, gold_neg, "e", 1, weak=weak)
    assert accuracy(weakly) > accuracy(plain) + 0.05, (accuracy(plain), accuracy(weakly))
    assert accuracy(weakly) > 0.8


def test_the_weak_version_is_kept_only_where_gold_cross_validation_prefers_it(
    tiny_embedder: OpenClipEmbedder,
) -> None:
    rng = random.Random(5)
    spec = parse_spec({"name": "stock", "examples": {
        "positive": ["Buy ACME shares now.", "Sell bonds, buy NVDA.", "Load up on TSLA calls."],
        "negative": ["Paris is in France.", "Boil pasta for ten minutes.", "Tea needs hot water."],
    }, "labelling_functions": [{"keywords": ["buy", "load up"]}, {"examples": True}]})  # fmt: skip
    texts = [rng.choice(["Buy GME today.", "Load up on AMD.", "Rain is likely.", "Soup is hot."])
             for _ in range(40)]  # fmt: skip
    groups = [v[None, :] for v in tiny_embedder.embed_texts(texts)]
    pool = WeakPool(tuple(f"e{i}" for i in range(40)), groups, list(texts), [None] * 40)
    fitted = train_weak_signal(spec, tiny_embedder, pool, {})
    m = fitted.metrics
    assert m["weak_events"] == 40 and m["weak_used"] in (0.0, 1.0)
    assert {"plain_f1", "weak_f1", "plain_roc_auc", "weak_roc_auc", "lf0_accuracy",
            "lf1_accuracy", "lf0_coverage", "label_model_prior"} <= set(m)  # fmt: skip
    kept = "weak" if m["weak_used"] else "plain"
    assert m["f1"] == m[f"{kept}_f1"]
    if m["weak_used"]:
        assert (m["weak_f1"], m["weak_roc_auc"]) > (m["plain_f1"], m["plain_roc_auc"])
    # the keyword votes on exactly the texts with "buy" / "load up"
    assert m["lf0_coverage"] == pytest.approx(
        sum(t.startswith(("Buy", "Load")) for t in texts) / 40
    )
    with pytest.raises(TrainingError, match="no stored events"):
        train_weak_signal(spec, tiny_embedder, WeakPool((), [], [], []), {})


def test_cli_trains_with_weak_labels_suggests_disputed_events_and_refuses_missing_sources(
    tiny_env: dict[str, str], tmp_path: Path, tiny_embedder: OpenClipEmbedder, minilm: Any
) -> None:
    from signals.embedders import FieldEmbedders
    from storage.client import connect
    from storage.migrate import migrate

    db = tmp_path / "db"
    client = connect(f"chdb://{db}")
    migrate(client)
    store_events(client, FieldEmbedders(tiny_embedder, minilm), chat_events(60, random.Random(4)))
    client.close()
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(app, [*args, "--clickhouse", f"chdb://{db}", "--format", "json"])

    example = Path(__file__).resolve().parents[2] / "examples" / "stock_advice.yaml"
    spec = yaml.safe_load(example.read_text(encoding="utf-8"))
    missing = tmp_path / "missing.yaml"
    missing.write_text(yaml.safe_dump(spec | {"labelling_functions": [{"signal": "nope"}]}))
    refused = invoke("signals", "add", str(missing))
    assert refused.exit_code != 0
    assert "labelling function 'signal:nope' names signal 'nope', which is not registered" in (
        " ".join(refused.output.split())
    )
    functions = [{"keywords": ["buy", "shares", "load up"]}, {"examples": True},
                 {"query": "recommends buying a specific stock", "top": 0.2}]  # fmt: skip
    weak_spec = tmp_path / "weak.yaml"
    weak_spec.write_text(yaml.safe_dump(spec | {"labelling_functions": functions}))
    added = invoke("signals", "add", str(weak_spec))
    assert added.exit_code == 0, added.output
    trained = invoke("signals", "train", "stock_advice", "--weak")
    assert trained.exit_code == 0, trained.output
    doc = json.loads(trained.stdout)
    assert doc["version"] == 2
    m = doc["metrics"]
    assert m["weak_events"] == 60 and 0.0 < m["weak_failure_share"] < 1.0
    assert {"plain_f1", "weak_f1", "lf0_accuracy", "lf1_accuracy", "lf2_accuracy"} <= set(m)
    suggested = invoke("signals", "suggest", "stock_advice", "--limit", "3")
    assert suggested.exit_code == 0, suggested.output
    reasons = [s["reason"] for s in json.loads(suggested.stdout)["suggestions"]]
    assert reasons.count("labellers_disagree") == 3
    plain = invoke("signals", "add", str(example))
    assert plain.exit_code == 0, plain.output
    no_functions = invoke("signals", "train", "stock_advice", "--weak")
    assert no_functions.exit_code != 0 and "names no labelling_functions" in no_functions.output


def test_a_signal_of_another_field_or_embedder_is_refused_as_a_labelling_function(
    tiny_embedder: OpenClipEmbedder,
) -> None:
    from signals.weak_fit import label_pool

    rng = np.random.default_rng(0)
    dim = tiny_embedder.dim

    def fitted(name: str, target: str, embedder_id: str) -> Any:
        spec = parse_spec({"name": name, "target": target, "threshold": 0.5})
        pos, neg = rng.normal(1, 1, (3, dim)), rng.normal(-1, 1, (3, dim))
        return fit_signal(spec, pos.astype(np.float32), neg.astype(np.float32), embedder_id, 1)

    other = fitted("other", "output", "another/embedder")
    prompt = fitted("asks", "prompt", tiny_embedder.id)
    pool = WeakPool(("e1",), [rng.normal(size=(1, dim)).astype(np.float32)], ["t"], [None])
    for named, message in ((other, "was trained on another/embedder"), (prompt, "reads prompt")):
        spec = parse_spec({"name": "s", "labelling_functions": [{"signal": named.name}]})
        with pytest.raises(TrainingError, match=message):
            label_pool(spec, tiny_embedder, pool, {named.name: named})
