from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from pathlib import Path

import pytest

from telltale import demo
from telltale.demo import run_demo


def test_demo_runs_and_is_idempotent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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
    # every signal was audited from the planted truth: each row has a corrected rate whose
    # interval holds the planted rate (the demo's signals are good; the audit is 80 labels)
    for r in first["rates"]:
        assert r["corrected_low"] <= r["corrected_rate"] <= r["corrected_high"]
        assert r["corrected_low"] <= r["planted_rate"] <= r["corrected_high"], r
    second = run_demo(dsn, events_per_version=30)
    assert (second["written"], second["skipped_existing"]) == (0, 120)
    assert [s["version"] for s in second["signals"]] == [1, 1]  # no retraining on a re-run
    # a re-run reuses the stored audit: the same corrected figures
    assert [r["corrected_rate"] for r in second["rates"]] == [
        r["corrected_rate"] for r in first["rates"]
    ]
    # Hours later the same events are still the demo's: the table follows their stored times.

    class FiveHoursLater(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> FiveHoursLater:
            later = datetime.now(tz) + timedelta(hours=5)
            return cls.fromtimestamp(later.timestamp(), tz)

    monkeypatch.setattr(demo, "datetime", FiveHoursLater)
    third = run_demo(dsn, events_per_version=30)
    assert (third["written"], third["skipped_existing"]) == (0, 120)
    assert {(r["signal"], r["model_version"]): r["events"] for r in third["rates"]} == {
        key: 30 for key in by_key
    }
