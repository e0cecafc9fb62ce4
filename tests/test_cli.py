"""The CLI contract, driven in-process through Typer's runner against chDB in a temp dir."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from telltale.cli import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def run(tiny_env: dict[str, str], tmp_path: Path):  # type: ignore[no-untyped-def]
    dsn = f"chdb://{tmp_path / 'db'}"
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True) -> str:
        result = runner.invoke(app, [*args, "--clickhouse", dsn])
        if ok:
            assert result.exit_code == 0, result.output
        else:
            assert result.exit_code != 0
        return result.stdout

    return invoke


def test_migrate_then_current(run) -> None:  # type: ignore[no-untyped-def]
    from storage.schema import MIGRATIONS

    expected = [m.version for m in MIGRATIONS]
    assert json.loads(run("migrate", "--format", "json")) == {"applied": expected}
    assert json.loads(run("migrate", "--format", "json")) == {"applied": []}


def test_signals_add_list_and_versions(run) -> None:  # type: ignore[no-untyped-def]
    added = json.loads(
        run("signals", "add", str(EXAMPLES / "stock_advice.yaml"), "--format", "json")
    )
    assert added["name"] == "stock_advice" and added["version"] == 1
    assert added["embedder_id"] == "open_clip/telltale-tiny/random-seed0"
    assert set(added["metrics"]) >= {"precision", "recall", "f1", "roc_auc"}
    run("signals", "add", str(EXAMPLES / "stock_advice.yaml"))
    run("signals", "add", str(EXAMPLES / "jailbreak.yaml"))
    listed = json.loads(run("signals", "list", "--format", "json"))["signals"]
    assert [(s["name"], s["version"], s["field"]) for s in listed] == [
        ("jailbreak_attempt", 1, "prompt.text"),
        ("stock_advice", 2, "output.text"),
    ]


def test_signals_add_reports_spec_errors(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nthreshold: 7\n")
    run("signals", "add", str(bad), ok=False)
    few = tmp_path / "few.yaml"
    few.write_text("name: x\nexamples:\n  positive: [a]\n  negative: [b, c]\n")
    run("signals", "add", str(few), ok=False)


def test_replay_is_idempotent_and_rejects_bad_lines(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("signals", "add", str(EXAMPLES / "stock_advice.yaml"))
    log = tmp_path / "log.jsonl.gz"
    lines = [
        json.dumps(
            {
                "event_id": f"r{i}",
                "timestamp": f"2026-10-01T10:{i:02d}:00Z",
                "model": "chat",
                "model_version": "v1",
                "output": {"text": "Buy NVDA stock now." if i < 3 else "Rain is wet."},
            }
        )
        for i in range(10)
    ]
    lines.insert(4, "{not json")
    log.write_bytes(gzip.compress("\n".join(lines).encode()))
    rejects = tmp_path / "rejects.jsonl"
    checkpoint = str(tmp_path / "checkpoint.json")
    first = json.loads(
        run(
            "replay",
            str(log),
            "--reject-file",
            str(rejects),
            "--checkpoint",
            checkpoint,
            "--format",
            "json",
        )
    )
    assert (first["read"], first["written"], first["rejected"]) == (11, 10, 1)
    [reject] = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert reject["line"] == 5 and "not valid JSON" in reject["reason"]
    resumed = json.loads(
        run(
            "replay",
            str(log),
            "--reject-file",
            str(rejects),
            "--checkpoint",
            checkpoint,
            "--format",
            "json",
        )
    )
    assert (resumed["resumed_after"], resumed["read"]) == (11, 0)  # the checkpoint says done
    again = json.loads(
        run(
            "replay",
            str(log),
            "--reject-file",
            str(rejects),
            "--checkpoint",
            checkpoint,
            "--restart",
            "--format",
            "json",
        )
    )
    assert (again["written"], again["skipped_existing"]) == (0, 10)
    assert len(rejects.read_text().splitlines()) == 2  # the re-read bad line, once per full run
    rates = json.loads(run("rates", "--format", "json", "--bucket", "hour"))["rates"]
    assert [(r["events"], r["bucket"]) for r in rates] == [(10, "2026-10-01T10:00:00+00:00")]
    assert (
        json.loads(run("rates", "--format", "json", "--since", "2026-10-02T00:00:00Z"))["rates"]
        == []
    )


def test_releases_add_and_bad_time(run) -> None:  # type: ignore[no-untyped-def]
    out = json.loads(
        run(
            "releases", "add", "chat", "v2", "--at", "2026-11-20T09:00:00+01:00", "--format", "json"
        )
    )
    assert out["released_at"] == "2026-11-20T08:00:00+00:00"
    run("releases", "add", "chat", "v3", "--at", "last tuesday", ok=False)


def test_json_output_is_a_single_document(run) -> None:  # type: ignore[no-untyped-def]
    out = run("rates", "--format", "json")
    assert out.count("\n") == 1 and json.loads(out) == {"rates": []}
