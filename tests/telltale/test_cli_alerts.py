"""The backtest and the CLI commands (``monitor --once``, ``alerts list``, ``alerts backtest``),
driven through Typer's runner against chDB in a temp dir."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from alerts_seed import T0, traffic, webhook_server
from typer.testing import CliRunner

from alerts.delivery.backtest import backtest
from alerts.delivery.monitor import Monitor
from alerts.settings import MonitorConfig
from storage.client import connect
from storage.detections import list_detections
from storage.migrate import migrate
from telltale.cli_alerts import alerts_app, monitor

MIN = timedelta(minutes=1)


def _cli() -> typer.Typer:
    """The commands as ``telltale.cli`` wires them."""
    app = typer.Typer()
    app.command("monitor")(monitor)
    app.add_typer(alerts_app, name="alerts")
    return app


def _invoke(dsn: str, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(_cli(), [*args, "--clickhouse", dsn, "--format", "json"])
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def _seed_cutovers(path: Path) -> None:
    """``chat`` cuts over from v1 to v2 at T0+240 and v2 fails 10% instead of 2%; ``img`` cuts
    over from a to b at the same time with no change (the null case)."""
    client = connect(f"chdb://{path}")
    try:
        migrate(client)
        for model, rates in (("chat", (0.02, 0.10)), ("img", (0.03, 0.03))):
            seed = 10 if model == "chat" else 20
            old, new = ("v1", "v2") if model == "chat" else ("a", "b")
            traffic(client, model=model, version=old, start=T0, minutes=240, per_minute=30,
                    rate=rates[0], seed=seed)  # fmt: skip
            traffic(client, model=model, version=new, start=T0 + 240 * MIN, minutes=90,
                    per_minute=30, rate=rates[1], seed=seed + 1)  # fmt: skip
    finally:
        client.close()


def test_backtest_finds_the_planted_spike_and_sends_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "db"
    _seed_cutovers(path)
    # After a full cut-over the baseline is the previous version two hours earlier.
    monkeypatch.setenv("TELLTALE_MONITOR_SPIKE_BASELINE_LAGS_MINUTES", "[120]")
    with webhook_server() as hook:
        monkeypatch.setenv("TELLTALE_NOTIFY_WEBHOOK_URL", hook.url())
        report = _invoke(f"chdb://{path}", "alerts", "backtest")
        early = _invoke(f"chdb://{path}", "alerts", "backtest", "--until", "2026-11-02T11:30:00Z")
    assert hook.requests == []

    assert report["since"] == T0.isoformat()
    assert report["until"] == (T0 + 330 * MIN).isoformat()
    assert [(r["model"], r["model_version"], r["source"]) for r in report["releases"]] == [
        ("chat", "v1", "auto"), ("chat", "v2", "auto"), ("img", "a", "auto"), ("img", "b", "auto"),
    ]  # fmt: skip
    assert report["fired"] == {"release_spike": 1}
    (spike,) = report["detections"]
    assert (spike["model"], spike["model_version"], spike["signal"]) == (
        "chat", "v2", "stock_advice",
    )  # fmt: skip
    opened = datetime.fromisoformat(spike["opened_at"])
    assert T0 + 240 * MIN < opened <= T0 + 260 * MIN
    assert 0 < spike["delay_minutes"] <= 20
    assert spike["details"]["baseline_version"] == "v1"
    assert set(spike["details"]["baseline_minutes"]) == {"lag_120m"}
    assert spike["statistic"] >= spike["threshold"] == pytest.approx(100.0)
    assert 0.03 < spike["effect"] < 0.15 and "notified" not in spike
    assert early["fired"] == {} and early["detections"] == []

    client = connect(f"chdb://{path}")
    try:
        for table in ("detections", "drift_windows", "releases"):
            assert client.query(f"SELECT count() FROM {table}").result_rows[0][0] == 0, table
    finally:
        client.close()


def test_backtest_matches_what_the_monitor_records(ch: Any) -> None:
    traffic(ch, model="chat", version="v1", start=T0, minutes=150, per_minute=30, rate=0.02,
            seed=1)  # fmt: skip
    traffic(ch, model="chat", version="v2", start=T0 + 60 * MIN, minutes=45, per_minute=30,
            rate=0.12, seed=2)  # fmt: skip
    settings = MonitorConfig(lookback_minutes=600, resolve_after_minutes=30, settle_s=0)
    result = backtest(ch, settings)
    live = Monitor(ch, settings)
    for minute in range(70, 200, 13):  # irregular cycles
        live.run_once(now=T0 + minute * MIN)
    stored = list_detections(ch)
    assert [(d.detector, d.key, d.opened_at, d.resolved_at) for d in result.detections] == [
        (d.detector, d.key, d.opened_at, d.resolved_at) for d in stored
    ]
    assert len(stored) == 1 and stored[0].resolved_at == T0 + 135 * MIN


def test_cli_monitor_once_then_alerts_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - 150 * MIN
    path = tmp_path / "db"
    client = connect(f"chdb://{path}")
    try:
        migrate(client)
        traffic(client, model="chat", version="v1", start=start, minutes=150, per_minute=30,
                rate=0.02, seed=1)  # fmt: skip
        traffic(client, model="chat", version="v2", start=start + 90 * MIN, minutes=60,
                per_minute=30, rate=0.15, seed=2)  # fmt: skip
    finally:
        client.close()
    monkeypatch.setenv("TELLTALE_MONITOR_LOOKBACK_MINUTES", "300")
    monkeypatch.delenv("TELLTALE_NOTIFY_WEBHOOK_URL", raising=False)
    dsn = f"chdb://{path}"

    cycle = _invoke(dsn, "monitor", "--once")
    assert [r["model_version"] for r in cycle["registered_releases"]] == ["v1", "v2"]
    assert len(cycle["opened"]) == 1 and cycle["open_detections"] == 1
    assert cycle["notifications_sent"] == 0 and cycle["duration_s"] > 0

    listed = _invoke(dsn, "alerts", "list")["detections"]
    assert [(d["detector"], d["model_version"], d["state"], d["notified"]) for d in listed] == [
        ("release_spike", "v2", "firing", ""),
    ]
    assert listed[0]["resolved_at"] is None and listed[0]["details"]["baseline_version"] == "v1"
    assert _invoke(dsn, "alerts", "list", "--state", "resolved")["detections"] == []
    assert len(_invoke(dsn, "alerts", "list", "--state", "open")["detections"]) == 1
