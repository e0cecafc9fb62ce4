from __future__ import annotations

from pathlib import Path

from telltale.demo import run_demo


def test_demo_runs_and_is_idempotent(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'demo'}"
    first = run_demo(dsn, events_per_version=30)
    assert first["written"] == 120 and first["skipped_existing"] == 0
    signals = {s["name"] for s in first["signals"]}
    assert signals == {"stock_advice", "stock_watermark"}
    by_key = {(r["signal"], r["model_version"]): r for r in first["rates"]}
    assert set(by_key) == {
        ("stock_advice", "2026.10"),
        ("stock_advice", "2026.11"),
        ("stock_watermark", "v5"),
        ("stock_watermark", "v6"),
    }
    assert all(r["events"] == 30 for r in first["rates"])
    second = run_demo(dsn, events_per_version=30)
    assert (second["written"], second["skipped_existing"]) == (0, 120)
    assert [s["version"] for s in second["signals"]] == [1, 1]  # no retraining on a re-run
