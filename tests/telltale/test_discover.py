"""Failure-mode discovery: the ranking on synthetic vectors, and the whole path on a generated
log (replay → discover → a starting spec from the cluster → a trained signal), through the CLI
on the real ClickHouse engine with the tiny open_clip model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from log_generators import discovery_events
from typer.testing import CliRunner

from signals.discovery import discover_clusters
from telltale.cli import app


def test_a_new_far_cluster_that_grew_ranks_first() -> None:
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(6, 24)) * 3
    reference = np.vstack([c + rng.normal(size=(150, 24)) for c in centres])
    recent = np.vstack([c + rng.normal(size=(145, 24)) for c in centres])
    planted = centres[0] * -2.5 + rng.normal(size=(27, 24)) * 0.5  # 3 % of recent, new
    clusters, bulk = discover_clusters(np.vstack([recent, planted]), reference, k=10, seed=1)
    top = clusters[0]
    members = set(top.recent_members)
    planted_ids = set(range(len(recent), len(recent) + len(planted)))
    assert len(members & planted_ids) >= 0.9 * len(planted_ids)
    assert len(members - planted_ids) <= 0.1 * len(members)
    assert top.reference_share < 0.01 and top.growth > 2
    assert [c.rank for c in clusters] == list(range(1, len(clusters) + 1))
    assert set(bulk) <= set(range(len(reference)))  # negatives come from the reference bulk
    # An old cluster is not new: without growth a far cluster still ranks, by distance.
    far = discover_clusters(np.vstack([recent, planted]), None, k=10, seed=1)[0]
    assert far[0].distance == max(c.distance for c in far)


def test_empty_input_finds_nothing() -> None:
    assert discover_clusters(np.zeros((0, 8)), None) == ([], ())


@pytest.mark.slow
def test_discover_ranks_a_planted_format_in_its_top_three(
    tiny_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELLTALE_SLICE_KEYS", "locale,customer_tier")
    log = tmp_path / "discovery.jsonl"
    events = list(discovery_events(per_hour=30, seed=11))
    log.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    planted = {e["event_id"] for e in events if e["attributes"]["planted"] == "1"}
    assert 10 <= len(planted) <= 40  # about 3 % of the last day's 720 outputs

    dsn = f"chdb://{tmp_path / 'db'}"
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(app, [*args, "--clickhouse", dsn])
        assert result.exit_code == 0, result.output
        return result.stdout

    import random

    from telltale.sample_data import advice_text, neutral_text

    rng = random.Random(5)
    spec = tmp_path / "stock_advice.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "stock_advice", "target": "output", "modality": "text",
        "examples": {"positive": [advice_text(rng) for _ in range(12)],
                     "negative": [neutral_text(rng) for _ in range(12)]},
    }), encoding="utf-8")  # fmt: skip
    run("signals", "add", str(spec))
    run("replay", str(log), "--checkpoint", str(tmp_path / "ckpt.json"),
        "--reject-file", str(tmp_path / "rejects.jsonl"), "--format", "json")  # fmt: skip
    found = json.loads(run("discover", "--format", "json"))["clusters"]
    assert 3 <= len(found) <= 10

    def planted_share(cluster: dict[str, object]) -> float:
        ids = [e["event_id"] for e in cluster["examples"]]  # type: ignore[index, union-attr]
        return sum(i in planted for i in ids) / len(ids)

    hit = next(c for c in found if planted_share(c) >= 0.8)
    assert hit["rank"] <= 3, [(c["rank"], planted_share(c)) for c in found]
    assert hit["reference_share"] < 0.01 < hit["recent_share"]
    assert "stock_advice" in hit["signal_scores"]  # current signal scores of its members
    texts = [e["text"] for e in hit["examples"]]
    assert len(set(texts)) == len(texts)  # de-duplicated

    spec_path = tmp_path / "tool_call_leak.yaml"
    run("signals", "add", "--from-cluster", hit["cluster_id"], "tool_call_leak",
        "--out", str(spec_path))  # fmt: skip
    spec = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    positives = [p["event_id"] for p in spec["examples"]["positive"]]
    negatives = [n["event_id"] for n in spec["examples"]["negative"]]
    assert len(positives) >= 5 and len(negatives) >= 5
    assert sum(p in planted for p in positives) >= 0.8 * len(positives)
    assert not set(negatives) & planted
    trained = json.loads(run("signals", "add", str(spec_path), "--format", "json"))
    assert trained["name"] == "tool_call_leak" and trained["metrics"]["f1"] > 0.8
