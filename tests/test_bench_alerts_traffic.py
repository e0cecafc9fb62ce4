"""The traffic-realism benchmark of the CUSUM and the drift test runs end to end in its quick
mode and reports every row of its matrix with coherent figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_benchmark_reports_every_row() -> None:
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
