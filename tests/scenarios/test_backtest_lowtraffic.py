"""The backtest on a three-day, ten-events-an-hour log (``tests/support/lowtraffic_log.py``): the
release's jump from 2% to 12% is found within a day, the 35% topic drift is found, nothing opens
before the changes, and the JSON keeps its shape."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import typer
from lowtraffic_log import DRIFT_AT, RELEASE, START, write_log
from typer.testing import CliRunner

from storage.client import connect
from storage.migrate import migrate
from telltale.cli_alerts import alerts_app


def test_backtest_finds_the_release_jump_at_ten_events_an_hour(tmp_path: Path) -> None:
    path = tmp_path / "db"
    client = connect(f"chdb://{path}")
    try:
        migrate(client)
        written = write_log(client)
    finally:
        client.close()
    assert 600 < written["chat"] < 900 and 600 < written["support"] < 900  # ~10 an hour

    app = typer.Typer()
    app.add_typer(alerts_app, name="alerts")
    result = CliRunner().invoke(
        app, ["alerts", "backtest", "--clickhouse", f"chdb://{path}", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)

    assert START <= datetime.fromisoformat(report["since"]) < START + timedelta(hours=1)
    support_drift = []
    for d in report["detections"]:
        assert {"detector", "key", "opened_at", "resolved_at", "details"} <= set(d)
        # Nothing opens before the change, and the release and degradation tests open nothing
        # on the model that did not change.
        assert datetime.fromisoformat(d["opened_at"]) > RELEASE, d
        if d["detector"] == "prompt_drift" and d["model"] == "support":
            support_drift.append(d)
        else:
            assert d["model"] == "chat", d
    # The drift test now tests ~10 prompts an hour (count windows, issue-10b); its promise on an
    # unchanged model is a false-alarm rate (alpha = 1% a day per model), not none in any one
    # log. This seed's log holds one window (11-05 19:00-22:00) where `support`'s topic mix
    # really is extreme (a chi-square test on the topic labels alone gives p = 0.0002) and the
    # drift test opens once there; seeds 1-10 open nothing on `support`. More than one incident
    # on it in one three-day log would be far outside the promise.
    assert len(support_drift) <= 1, support_drift
    drift = [d for d in report["detections"]
             if d["detector"] == "prompt_drift" and d["model"] == "chat"]  # fmt: skip
    assert len(drift) == 1  # one sustained shift, one incident (hysteresis)
    assert DRIFT_AT < datetime.fromisoformat(drift[0]["opened_at"]) < DRIFT_AT + timedelta(days=1)
    spikes = [d for d in report["detections"] if d["detector"] == "release_spike"]
    assert [(d["key"], d["signal"]) for d in spikes] == [("model=chat/v2", "watermark")]
    opened = datetime.fromisoformat(spikes[0]["opened_at"])
    assert opened < RELEASE + timedelta(days=1)  # a verdict within a day
    assert spikes[0]["details"]["baseline_version"] == "v1"
    # Weekdays against weekdays: a day earlier, or two where that hour had no traffic.
    assert "lag_1440m" in spikes[0]["details"]["baseline_minutes"]
    assert set(spikes[0]["details"]["baseline_minutes"]) <= {"lag_1440m", "lag_2880m"}
    print("release spike opened", opened - RELEASE, "after the release")
