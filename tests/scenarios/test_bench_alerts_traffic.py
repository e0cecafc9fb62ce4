"""The two traffic-realism benchmarks of issue 10 run end to end in their quick modes, and their
figures hang together (each bench is deterministic given its seed):

* ``bench/alerts_traffic_release.py``: the release test;
* ``bench/alerts_traffic_cusum_drift.py``: the seasonal CUSUM and the drift test.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "alerts_traffic_release.py"


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


@pytest.mark.slow
def test_quick_cusum_drift_benchmark_reports_every_row() -> None:
    script = ROOT / "bench" / "alerts_traffic_cusum_drift.py"
    done = subprocess.run(
        [sys.executable, str(script), "--quick", "--json"],
        capture_output=True, text=True, timeout=600, check=True, cwd=ROOT,
    )  # fmt: skip
    result = json.loads(done.stdout)
    names = [r["scenario"] for r in result["cusum_null"]]
    assert len(names) == 11 and {"iid", "retry storms 1/h", "low traffic 0.2/min"} <= set(names)
    for row in result["cusum_null"] + result["drift_null"]:
        assert row["low"] <= row["rate"] <= row["high"]
        assert row["meets"] == (row["high"] <= 2 * row["promise"])
    changes = {r["shift_pp"]: r for r in result["cusum_change"]}
    assert set(changes) == {1.0, 2.0, 5.0}
    assert all(r["detected"] + r["false_before"] == r["runs"] for r in changes.values())
    assert changes[5.0]["median_delay_min"] < changes[1.0]["median_delay_min"]
    # The previous CUSUM pages on the daily cycle; the previous drift reference fires on it.
    assert result["old_cusum_daily_cycle_alarms_per_day"]["median"] > 1
    old_drift = next(r for r in result["drift_null"] if "previous 24 h" in r["scenario"])
    assert old_drift["days_with_alarm"] == old_drift["runs"]
    drift = next(r for r in result["drift_change"] if "600/h" in r["scenario"])
    assert drift["detected"] == drift["runs"] and drift["median_delay_h"] <= 3


def test_release_delay_bench_reports_every_row(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 22's delay table: telltale vs the textbook mSPRT vs the oracle on the same streams."""
    spec = importlib.util.spec_from_file_location(
        "bench_alerts_release_delays", ROOT / "bench" / "alerts_release_delays.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    argv = ["--json", "--runs", "3", "--null-runs", "2", "--horizon-days", "1"]
    assert bench.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    rows = {row["scenario"]: row for row in result["changes"]}
    assert len(rows) == 15 and "1% -> 9%, 0.33/min" in rows and "+1 pp, 2/min" in rows
    for row in rows.values():
        assert 0.0 <= row["telltale_found"] <= 1.0 and 0.0 <= row["msprt_found"] <= 1.0
        if row["p80_ratio"] and row["msprt_p80_h"]:
            assert row["p80_ratio"] == pytest.approx(
                row["telltale_p80_h"] / row["msprt_p80_h"], abs=0.01
            )
    # The oracle needs about 6.5 h for 2% -> 12% at 0.33 units a minute; both tests find it
    # within the day in every run.
    big = rows["2% -> 12%, 0.33/min"]
    assert big["oracle_h"] == pytest.approx(6.5, abs=0.2)
    assert big["telltale_found"] == 1.0 and big["msprt_found"] == 1.0
    assert len(result["null"]) == 6
