"""Pins the public API of each package: a change here is a deliberate API change."""

from __future__ import annotations

import importlib

import pytest

EXPECTED = {
    "signals": {
        "DuplicateSignal",
        "EmbeddingCache",
        "FieldEmbedders",
        "LruVectorCache",
        "SentenceEmbedder",
        "TextEmbedder",
        "TextEmbedderConfig",
        "Verdict",
        "Windows",
        "judge",
        "Embedder",
        "EmbedderConfig",
        "EmbedderError",
        "EmbedderMismatch",
        "Examples",
        "FieldScores",
        "FittedSignal",
        "ImageError",
        "ImagePolicy",
        "Modality",
        "OpenClipEmbedder",
        "SignalBank",
        "SignalError",
        "InMemorySignalStore",
        "LiveSignals",
        "SignalStore",
        "SignalSpec",
        "SpecError",
        "Target",
        "TrainingError",
        "fit_signal",
        "load_image",
        "load_spec",
        "parse_spec",
        "train_signal",
    },
    "storage": {
        "BackPressure",
        "ClickHouseWriter",
        "EmbeddingRow",
        "EventRow",
        "MigrationError",
        "RateRow",
        "ScoreRow",
        "StorageError",
        "StorageUnavailable",
        "TableCounts",
        "WriteBatch",
        "connect",
        "failure_rates",
        "migrate",
        "redact_dsn",
        "table_counts",
    },
    "streams": {
        "BatchResult",
        "DeadLetter",
        "EmitError",
        "Emitter",
        "GenerationEvent",
        "InvalidEvent",
        "Output",
        "Pipeline",
        "Prompt",
        "StreamError",
        "decode_event",
        "encode_event",
    },
}


@pytest.mark.parametrize("package", sorted(EXPECTED))
def test_exported_names(package: str) -> None:
    module = importlib.import_module(package)
    assert set(module.__all__) == EXPECTED[package]
    for name in module.__all__:
        assert hasattr(module, name), name


def test_lower_packages_do_not_import_upward() -> None:
    """signals knows nothing of Kafka or ClickHouse; storage knows nothing of torch."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    forbidden = {
        "signals": {
            "streams",
            "storage",
            "telltale",
            "alerts",
            "dashboards",
            "kafka",
            "faust",
            "clickhouse_connect",
            "chdb",
        },
        "storage": {"signals", "streams", "telltale", "alerts", "dashboards", "torch", "open_clip"},
        "streams": {"telltale", "alerts", "dashboards"},
    }
    for package, banned in forbidden.items():
        for path in (root / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                for name in names:
                    assert name.split(".")[0] not in banned, f"{path}: imports {name}"
