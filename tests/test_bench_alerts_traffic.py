"""The release-test traffic benchmark runs end to end in its quick mode, and its figures hang
together (the bench is deterministic given its seed)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "alerts_traffic_release.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_alerts_traffic_release", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_quick_mode_runs_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    bench = _load()
    assert bench.main(["--quick", "--json", "--null-runs", "6", "--change-runs", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    nulls = {row["scenario"]: row for row in result["null"]}
    assert len(nulls) == 20 and all(row["runs"] == 6 for row in nulls.values())
    for row in nulls.values():
        assert row["ci_low"] <= row["rate"] <= row["ci_high"]
        assert row["meets"] == (row["ci_high"] <= 2 * row["promise"])
    # Six runs cannot show a 1% rate is met; they can show the old read of late rows is not.
    assert nulls["late rows 30% of successes, no as-of (contrast)"]["alarms"] >= 3
    assert nulls["late rows 30% of successes"]["alarms"] == 0
    changes = {row["scenario"]: row for row in result["changes"]}
    big = changes["+5 pp, canary 50%, 200/min"]
    assert big["detected"] == 3 and big["oracle_minutes"] == pytest.approx(1.7, abs=0.1)
    assert big["p80_minutes"] / big["oracle_minutes"] == pytest.approx(big["p80_ratio"])


def test_wilson_interval_and_oracle() -> None:
    bench = _load()
    low, high = bench.wilson(0, 200)
    assert low == 0.0 and 0.018 < high < 0.02
    low, high = bench.wilson(10, 100)
    assert 0.05 < low < 0.1 < high < 0.18
    # +1 pp on 2%, alpha 0.01 one-sided, 80% power: about 4,900 events a side.
    assert bench.oracle_minutes(0.02, 0.03, 0.01, 200) == pytest.approx(24.5, abs=0.5)
