"""The CLI contract, driven in-process through Typer's runner against chDB in a temp dir."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from telltale.cli import app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


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
            return " ".join(result.output.split())  # the error, unwrapped
        return result.stdout

    return invoke


def test_migrate_then_current(run) -> None:  # type: ignore[no-untyped-def]
    from storage.schema import MIGRATIONS

    applied = [m.version for m in MIGRATIONS]
    first = json.loads(run("migrate", "--format", "json"))
    assert first["applied"] == applied
    assert first["retention_days"]["events"] == 30  # the default retention, now a TTL
    assert json.loads(run("migrate", "--format", "json")) == {**first, "applied": []}


def test_signals_add_list_and_versions(run) -> None:  # type: ignore[no-untyped-def]
    added = json.loads(
        run("signals", "add", str(EXAMPLES / "stock_advice.yaml"), "--format", "json")
    )
    assert added["name"] == "stock_advice" and added["version"] == 1
    # a text signal: embedded by the default text model, the bundled MiniLM with real weights
    assert added["embedder_id"].startswith("st/all-MiniLM-L6-v2/")
    assert added["degenerate"] is False
    assert set(added["metrics"]) >= {"precision", "recall", "f1", "roc_auc"}
    run("signals", "add", str(EXAMPLES / "stock_advice.yaml"))
    run("signals", "add", str(EXAMPLES / "jailbreak.yaml"))
    listed = json.loads(run("signals", "list", "--format", "json"))["signals"]
    assert [(s["name"], s["version"], s["field"]) for s in listed] == [
        ("jailbreak_attempt", 1, "prompt.text"),
        ("stock_advice", 2, "output.text"),
    ]


def test_a_text_signal_never_loads_clip_weights(  # type: ignore[no-untyped-def]
    run, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Weights open_clip cannot find: a text signal is trained and stored all the same, since
    # only the image field needs CLIP and it is built on first use.
    monkeypatch.setenv("TELLTALE_EMBEDDER_PRETRAINED", "no-such-weights")
    added = json.loads(
        run("signals", "add", str(EXAMPLES / "stock_advice.yaml"), "--format", "json")
    )
    assert added["version"] == 1 and added["embedder_id"].startswith("st/all-MiniLM-L6-v2/")


def test_the_lazy_clip_embedder_has_its_id_at_once_and_its_errors_at_first_use() -> None:
    from signals.errors import EmbedderError
    from signals.open_clip_embedder import EmbedderConfig, LazyOpenClipEmbedder, OpenClipEmbedder

    tiny = EmbedderConfig(model_name="telltale-tiny", pretrained=None)
    lazy = LazyOpenClipEmbedder(tiny)
    eager = OpenClipEmbedder(tiny)
    assert lazy.id == eager.id and not lazy.loaded
    assert (lazy.embed_texts(["a cat"]) == eager.embed_texts(["a cat"])).all() and lazy.loaded
    broken = LazyOpenClipEmbedder(tiny.model_copy(update={"pretrained": "no-such-weights"}))
    assert broken.id.endswith("/no-such-weights")
    with pytest.raises(EmbedderError, match="no-such-weights"):
        broken.embed_texts(["a cat"])


def test_signals_add_reports_spec_errors(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nthreshold: 7\n")
    run("signals", "add", str(bad), ok=False)
    few = tmp_path / "few.yaml"
    few.write_text("name: x\nexamples:\n  positive: [a]\n  negative: [b, c]\n")
    run("signals", "add", str(few), ok=False)


def test_signals_add_takes_a_json_spec_with_escaped_emoji(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import yaml

    # json.dumps escapes each emoji as a surrogate pair; YAML used to hand the two halves to
    # the tokenizer, which raised TypeError. Pairs are joined; a lone half is a spec error.
    spec = yaml.safe_load((EXAMPLES / "stock_advice.yaml").read_text(encoding="utf-8"))
    spec["examples"]["positive"] = [f"{t} \U0001f680" for t in spec["examples"]["positive"]]
    emoji = tmp_path / "emoji.yaml"
    emoji.write_text(json.dumps(spec))
    assert "\\ud83d\\ude80" in emoji.read_text()
    added = json.loads(run("signals", "add", str(emoji), "--format", "json"))
    assert added["name"] == "stock_advice" and added["version"] == 1
    lone = tmp_path / "lone.yaml"
    lone.write_text(json.dumps(spec).replace("\\ude80", "", 1))
    refused = run("signals", "add", str(lone), ok=False)
    assert "examples.positive.0: lone UTF-16 surrogate" in refused


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


def test_replay_of_a_log_with_a_line_nested_1000_deep_exits_0(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The probe's log: before, `telltale replay` died on the deep line with a traceback on
    every rerun (exit 1, no checkpoint, no reject); now the line is a reject and the rest is
    stored."""

    def line(i: int) -> str:
        return json.dumps({"event_id": f"d{i}", "timestamp": f"2026-10-01T10:{i:02d}:00Z",
                           "model": "chat", "model_version": "v1",
                           "output": {"text": f"answer {i}"}})  # fmt: skip

    deep = [line(50 + d)[:-1] + ', "x": ' + "[" * d + "]" * d + "}" for d in range(900, 1001)]
    lines = [line(0), *deep, line(1), "[" * 5000, line(2)]
    log = tmp_path / "deep.jsonl"
    log.write_text("\n".join(lines) + "\n")
    rejects, checkpoint = tmp_path / "rejects.jsonl", tmp_path / "checkpoint.json"
    args = ("replay", str(log), "--reject-file", str(rejects), "--checkpoint", str(checkpoint),
            "--format", "json")  # fmt: skip
    first = json.loads(run(*args))
    assert (first["read"], first["written"], first["rejected"]) == (len(lines), 3, len(deep) + 1)
    reasons = [json.loads(x) for x in rejects.read_text().splitlines()]
    assert [r["line"] for r in reasons] == [*range(2, len(deep) + 2), len(deep) + 3]
    assert {r["reason"] for r in reasons} == {"JSON nested deeper than 64 levels"}
    assert json.loads(checkpoint.read_text())[str(log.resolve())]["done"] == len(lines)
    resumed = json.loads(run(*args))
    assert (resumed["resumed_after"], resumed["read"]) == (len(lines), 0)
    again = json.loads(run(*args, "--restart"))
    assert (again["skipped_existing"], again["rejected"]) == (3, len(deep) + 1)


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


def _spec(path: Path, name: str, positive: list[str], negative: list[str], extra: str = "") -> Path:
    path.write_text(
        json.dumps({"name": name, "examples": {"positive": positive, "negative": negative}})[:-1]
        + (f", {extra}" if extra else "")
        + "}"
    )
    return path


def test_degenerate_signals_are_refused_forced_and_judged(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # labels that mean nothing: the same answers on both sides
    answers = [f"Here is a short answer about topic {i}: it depends on your situation."
               for i in range(8)]  # fmt: skip
    noise = _spec(tmp_path / "noise.yaml", "noise", answers, answers)
    refused = run("signals", "add", str(noise), ok=False)
    assert "refused as degenerate" in refused and "not clearly above chance" in refused
    assert "8+8 examples" in refused and "0.67" in refused and "--force" in refused
    assert json.loads(run("signals", "list", "--format", "json"))["signals"] == []

    forced = json.loads(run("signals", "add", str(noise), "--force", "--format", "json"))
    assert forced["degenerate"] is True and "chance" in forced["degenerate_reason"]
    judged = json.loads(run("signals", "eval", "noise", "--format", "json"))
    assert judged["verdict"]["degenerate"] is True and judged["degenerate"] is True
    [listed] = json.loads(run("signals", "list", "--format", "json"))["signals"]
    assert listed["degenerate"] is True

    # a clear signal whose fixed threshold flags every stored answer
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps({
        "event_id": f"e{i}", "timestamp": f"2026-10-01T10:{i:02d}:00Z", "model": "chat",
        "model_version": "v1", "output": {"text": f"The weather on day {i} is mild and dry."},
    }) for i in range(30)))  # fmt: skip
    run("replay", str(log))
    picks = [f"You should buy {t} shares today, it will double." for t in
             ("NVDA", "TSLA", "AAPL", "AMZN", "META", "COIN")]  # fmt: skip
    calm = ["Index funds spread risk across many companies.", "Rain falls from clouds.",
            "Boil pasta for ten minutes.", "Paris is the capital of France.",
            "Sleep eight hours a night.", "Write tests before you refactor."]  # fmt: skip
    eager = _spec(tmp_path / "eager.yaml", "eager", picks, calm, '"threshold": 0.0001')
    refused = run("signals", "add", str(eager), ok=False)
    assert "flags 100% of 30 stored output.text events" in refused
    sound = _spec(tmp_path / "sound.yaml", "sound", picks, calm)
    added = json.loads(run("signals", "add", str(sound), "--format", "json"))
    assert added["degenerate"] is False
    verdict = json.loads(run("signals", "eval", "sound", "--format", "json"))["verdict"]
    assert verdict["degenerate"] is False and verdict["cv_f1"] >= 0.77
