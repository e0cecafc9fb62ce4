"""The alert mechanisms that production traffic needs, each on the real ClickHouse engine (chDB):
independent units, like-with-like lagged baselines, late rows recomputed, one incident per
release across its signals, degenerate signals skipped."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from alerts.delivery.backtest import backtest
from alerts.delivery.monitor import Monitor
from alerts.settings import MonitorConfig
from storage.client import connect
from storage.detections import list_detections
from storage.migrate import migrate
from storage.rows import EventRow, ScoreRow, WriteBatch
from storage.series import unit_counts
from storage.writer import ClickHouseWriter
from telltale.cli_alerts import alerts_app

MIN = timedelta(minutes=1)
FRIDAY = datetime(2026, 11, 6, tzinfo=UTC)  # a Friday; the 9th is a Monday


def _write(
    client: Any,
    *,
    model: str,
    version: str,
    start: datetime,
    minutes: int,
    per_minute: int,
    rates: dict[str, float],
    seed: int,
    users: bool = False,
) -> None:
    """``per_minute`` independent requests a minute, each signal failing at its own rate."""
    rng = np.random.default_rng(seed)
    batch = WriteBatch()
    for m in range(minutes):
        for i in range(per_minute):
            at = start + timedelta(minutes=m, seconds=(i * 59) // per_minute)
            eid = f"{model}-{version}-{seed}-{m}-{i}"
            batch.events.append(
                EventRow(eid, at, model, version, prompt_text=f"q{seed}.{m}.{i}",
                         user_id=f"u{seed}.{m}.{i}" if users else "")
            )  # fmt: skip
            for signal, rate in rates.items():
                flagged = bool(rng.random() < rate)
                batch.scores.append(
                    ScoreRow(eid, signal, 1, at, model, version, 0.9 * flagged, flagged)
                )
    ClickHouseWriter(client).write(batch)


def _storm(
    client: Any, *, model: str, version: str, start: datetime, copies: int, user: str,
    session: str = "", prompt: str = "make it again", signal: str = "stock_advice",
) -> None:  # fmt: skip
    """One user retrying one failing request ``copies`` times, a few seconds apart."""
    batch = WriteBatch()
    for c in range(copies):
        at = start + timedelta(seconds=7 * c)
        eid = f"storm-{user}-{session}-{start.isoformat()}-{c}"
        batch.events.append(EventRow(eid, at, model, version, prompt_text=prompt, user_id=user,
                                     session_id=session))  # fmt: skip
        batch.scores.append(ScoreRow(eid, signal, 1, at, model, version, 0.95, True))
    ClickHouseWriter(client).write(batch)


# -- independent units ---------------------------------------------------------------------------


def test_repeats_of_one_request_count_as_one_unit(ch: Any) -> None:
    t0 = FRIDAY + timedelta(hours=9)
    _storm(ch, model="chat", version="v2", start=t0, copies=30, user="alice")  # 3.5 minutes
    _storm(ch, model="chat", version="v2", start=t0, copies=5, user="bob", session="s1")
    _storm(ch, model="chat", version="v2", start=t0, copies=4, user="bob", session="s2")
    _storm(ch, model="chat", version="v2", start=t0, copies=3, user="carol", prompt="other")
    # Anonymous events with the same prompt are each their own unit.
    _storm(ch, model="chat", version="v2", start=t0, copies=6, user="")
    # A repeat outside the window is a new unit.
    _storm(ch, model="chat", version="v2", start=t0 + 30 * MIN, copies=2, user="alice")

    counts = unit_counts(ch, t0, t0 + 60 * MIN, repeat_window_minutes=10)
    series = counts[("chat", "v2", "stock_advice")]
    # alice once, bob once per session, carol once, six anonymous events, alice again later.
    assert series == {t0: (1 + 2 + 1 + 6, 1 + 2 + 1 + 6), t0 + 30 * MIN: (1, 1)}
    raw = unit_counts(ch, t0, t0 + 60 * MIN, repeat_window_minutes=1)
    assert sum(n for n, _ in raw[("chat", "v2", "stock_advice")].values()) > 10


def test_a_sticky_retry_storm_does_not_page_on_a_canary(ch: Any) -> None:
    t0 = FRIDAY + timedelta(hours=8)
    for model, seed in (("chat", 1), ("anon", 3)):
        _write(ch, model=model, version="v1", start=t0, minutes=180, per_minute=20,
               rates={"stock_advice": 0.02}, seed=seed, users=True)  # fmt: skip
        _write(ch, model=model, version="v2", start=t0 + 60 * MIN, minutes=120, per_minute=20,
               rates={"stock_advice": 0.02}, seed=seed + 1, users=True)  # fmt: skip
    # Four users hammer a failing request on v2 of both models: 4 x 35 copies. On ``anon`` the
    # copies carry no user or session, so nothing says they are repeats of one request.
    for i, minute in enumerate((70, 95, 120, 150)):
        at = t0 + minute * MIN
        _storm(ch, model="chat", version="v2", start=at, copies=35, user=f"s{i}")
        _storm(ch, model="anon", version="v2", start=at, copies=35, user="")
    report = backtest(ch, MonitorConfig(lookback_minutes=600, resolve_after_minutes=30))
    assert [(d.detector, d.model) for d in report.detections] == [("release_spike", "anon")]


# -- like with like ------------------------------------------------------------------------------


def test_after_a_cutover_a_monday_is_compared_with_a_weekday_not_the_weekend(ch: Any) -> None:
    # v1 serves Friday to Sunday, 08:00-12:00; weekends fail twice as rarely (other users).
    for day, rate in ((0, 0.04), (1, 0.02), (2, 0.02)):
        _write(ch, model="chat", version="v1", start=FRIDAY + timedelta(days=day, hours=8),
               minutes=240, per_minute=10, rates={"stock_advice": rate}, seed=10 + day)  # fmt: skip
    # Monday: v2 replaces v1 and fails exactly as v1 did on Friday.
    monday = FRIDAY + timedelta(days=3, hours=8)
    _write(ch, model="chat", version="v2", start=monday, minutes=240, per_minute=10,
           rates={"stock_advice": 0.04}, seed=20)  # fmt: skip
    settings = MonitorConfig(lookback_minutes=10_000)
    assert backtest(ch, settings).detections == []

    # The same data with the old rule (a day earlier, whatever day that is) pages: Sunday.
    sunday_rule = settings.model_copy(update={"release_spike_baseline_lags_minutes": [1_440],
                                              "release_spike_weekend_days": []})  # fmt: skip
    (wrong,) = backtest(ch, sunday_rule).detections
    assert wrong.details["baseline_minutes"] == {"lag_1440m": 240}

    # A real regression on Monday is found against Friday (three days earlier).
    _write(ch, model="chat", version="v2", start=monday, minutes=240, per_minute=10,
           rates={"stock_advice": 0.15}, seed=21)  # fmt: skip
    (found,) = backtest(ch, settings).detections
    assert set(found.details["baseline_minutes"]) == {"lag_4320m"}
    assert monday < found.opened_at < monday + 240 * MIN
    dispersion = found.details["signals"][0]["dispersion"]
    assert dispersion["icc"] >= 0.0 and dispersion["day_cv"] >= 0.05


def test_lagged_baseline_reads_as_of_the_same_lateness(ch: Any) -> None:
    t0 = FRIDAY + timedelta(hours=9)
    rows = []
    for i in range(10):
        at = t0 + timedelta(seconds=5 * i)
        late = i >= 6  # four rows land ten minutes late
        rows.append([f"e{i}", at, "chat", "v1", f"q{i}", at + timedelta(minutes=10 if late else 0)])
    ch.insert("events", rows, column_names=["event_id", "timestamp", "model", "model_version",
                                            "prompt_text", "ingested_at"])  # fmt: skip
    ch.insert("signal_scores", [[f"e{i}", "sig", 1, r[1], "chat", "v1", 0.0, 0]
                                for i, r in enumerate(rows)],
              column_names=["event_id", "signal", "signal_version", "timestamp", "model",
                            "model_version", "score", "flagged"])  # fmt: skip
    full = unit_counts(ch, t0, t0 + MIN)
    early = unit_counts(ch, t0, t0 + MIN, as_of=t0 + 2 * MIN)
    assert full[("chat", "v1", "sig")] == {t0: (10, 0)}
    assert early[("chat", "v1", "sig")] == {t0: (6, 0)}
    # Rows a day late are back-fills (a replay), never hidden.
    assert unit_counts(ch, t0, t0 + MIN, as_of=t0 - 2 * MIN, backfill_after_s=300)[
        ("chat", "v1", "sig")
    ] == {t0: (4, 0)}


# -- late rows -----------------------------------------------------------------------------------


def test_late_rows_are_counted_where_they_belong(ch: Any) -> None:
    start = datetime.now(UTC).replace(second=0, microsecond=0) - 180 * MIN
    _write(ch, model="chat", version="v1", start=start, minutes=170, per_minute=20,
           rates={"stock_advice": 0.02}, seed=31)  # fmt: skip
    # The v2 canary's failures have not arrived yet: its successes are all in.
    _write(ch, model="chat", version="v2", start=start + 60 * MIN, minutes=90, per_minute=20,
           rates={"stock_advice": 0.0}, seed=32)  # fmt: skip
    now = datetime.now(UTC)  # after the writes: their rows are ingested by now
    monitor = Monitor(ch, MonitorConfig(lookback_minutes=600, settle_max_s=600))
    first = monitor.run_once(now=now)
    assert first.engine.opened == [] and not first.recomputed
    assert first.ingest_lag is not None and first.ingest_lag.p99_s is not None
    assert first.settle_s == pytest.approx(600.0)  # the rows are ~hours late: capped
    # Now the failures land (12% of v2's units), in minutes already processed.
    rng = np.random.default_rng(33)
    batch = WriteBatch()
    for m in range(60, 150):
        for i in range(3):
            at = start + timedelta(minutes=m, seconds=2 * i + 1)
            eid = f"late-{m}-{i}"
            batch.events.append(EventRow(eid, at, "chat", "v2", prompt_text=f"late {m}.{i}"))
            flagged = bool(rng.random() < 0.9)
            batch.scores.append(ScoreRow(eid, "stock_advice", 1, at, "chat", "v2", 0.9, flagged))
    ClickHouseWriter(ch).write(batch)
    second = monitor.run_once(now=datetime.now(UTC))
    assert second.recomputed and second.late_rows == 270
    assert len(second.engine.opened) == 1
    (row,) = list_detections(ch)
    assert row.opened_at < now - 60 * MIN  # where the failures belong, not when they landed
    third = monitor.run_once(now=datetime.now(UTC))
    assert not third.recomputed and third.late_rows == 0 and third.engine.opened == []


# -- one incident per release --------------------------------------------------------------------


def test_a_release_regressing_several_signals_opens_one_incident(ch: Any) -> None:
    t0 = FRIDAY + timedelta(hours=8)
    signals = {f"sig{i}": 0.02 for i in range(6)}
    _write(ch, model="chat", version="v1", start=t0, minutes=150, per_minute=30,
           rates=signals, seed=41)  # fmt: skip
    worse = {**signals, "sig1": 0.12, "sig3": 0.10, "sig4": 0.15}
    _write(ch, model="chat", version="v2", start=t0 + 60 * MIN, minutes=90, per_minute=30,
           rates=worse, seed=42)  # fmt: skip
    report = backtest(ch, MonitorConfig(lookback_minutes=600, resolve_after_minutes=30))
    (incident,) = report.detections
    assert incident.key == "model=chat/v2"
    named = incident.signal.split(",")
    assert sorted(named) == ["sig1", "sig3", "sig4"]
    assert [s["signal"] for s in incident.details["signals"]] == named
    # Family-wise: each signal is tested at alpha / 6 (Bonferroni on the e-values).
    assert incident.details["family_size"] == 6
    assert incident.threshold == pytest.approx(600.0)
    assert all(s["e_value"] >= 600.0 for s in incident.details["signals"])


# -- degenerate signals --------------------------------------------------------------------------


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(alerts_app, name="alerts")
    return app


def test_degenerate_signals_are_skipped_and_listed(tmp_path: Path) -> None:
    path = tmp_path / "db"
    client = connect(f"chdb://{path}")
    try:
        migrate(client)
        t0 = FRIDAY + timedelta(hours=8)
        rates = {"stock_advice": 0.02, "flags_everything": 0.02}
        _write(client, model="chat", version="v1", start=t0, minutes=150, per_minute=30,
               rates=rates, seed=51)  # fmt: skip
        _write(client, model="chat", version="v2", start=t0 + 60 * MIN, minutes=90,
               per_minute=30, rates={**rates, "flags_everything": 0.9}, seed=52)  # fmt: skip
        columns = ["name", "version", "kind", "embedder_id", "definition", "fitted", "author",
                   "degenerate", "degenerate_reason"]  # fmt: skip
        client.insert("signals", [
            ["flags_everything", 1, "few_shot", "e", "{}", "{}", "", 0, ""],
            ["flags_everything", 2, "few_shot", "e", "{}", "{}", "", 1,
             "cross-validated F1 0.67 at threshold 0.005: flags every event"],
            ["stock_advice", 1, "few_shot", "e", "{}", "{}", "", 0, ""],
        ], column_names=columns)  # fmt: skip
        settings = MonitorConfig(lookback_minutes=600, resolve_after_minutes=30)
        report = backtest(client, settings)
        assert report.detections == []
        assert set(report.engine.skipped_signals) == {"flags_everything"}
        # Marked healthy again (a new version), it is monitored and its jump found.
        client.insert("signals", [["flags_everything", 3, "few_shot", "e", "{}", "{}", "", 0,
                                   ""]], column_names=columns)  # fmt: skip
        (found,) = backtest(client, settings).detections
        assert found.signal == "flags_everything"
        client.insert("signals", [["flags_everything", 4, "few_shot", "e", "{}", "{}", "", 1,
                                   "degenerate again"]], column_names=columns)  # fmt: skip
    finally:
        client.close()
    result = CliRunner().invoke(
        _cli(), ["alerts", "list", "--clickhouse", f"chdb://{path}", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["skipped_signals"] == [
        {"signal": "flags_everything", "reason": "degenerate again"}
    ]
    assert set(document["ingest_lag"]) >= {"p50_s", "p99_s", "events"}
    text = CliRunner().invoke(_cli(), ["alerts", "list", "--clickhouse", f"chdb://{path}"])
    assert "flags_everything is degenerate (degenerate again)" in text.output
