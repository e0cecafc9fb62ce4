"""``telltale report`` on replayed history (issue 13, item 6): without ``--since/--until`` the
report covers the data's own span (at most its last 24 hours), not the wall clock's, and
"Signals that changed most since the last release" shows the release of a log replayed from
September with no ``releases`` row (no monitor ran). The log is the slice scenario of
``log_generators``; its score rows are written with the planted outcome, as in
``test_slices``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from log_generators import NEW, OLD, slice_regression_events
from typer.testing import CliRunner

from storage.client import connect
from storage.migrate import migrate
from storage.rows import EventRow, ScoreRow, WriteBatch
from storage.writer import ClickHouseWriter
from streams.events import validate_event
from streams.slices import SliceConfig, Slicer
from telltale.cli import app


def _replayed_database(path: Path) -> None:
    client = connect(f"chdb://{path}")
    migrate(client)
    slicer = Slicer(SliceConfig(keys=("locale", "customer_tier")))
    batch = WriteBatch()
    for payload in slice_regression_events(per_minute=6, seed=2):
        event = validate_event(payload)
        failed = not (event.output.text or "").startswith("Here is a short answer")
        batch.scores.append(ScoreRow(
            event.event_id, "stock_advice", 1, event.timestamp, event.model,
            event.model_version, 0.9 if failed else 0.1, failed, slicer.values(event),
        ))  # fmt: skip
        batch.events.append(EventRow(
            event.event_id, event.timestamp, event.model, event.model_version, app=event.app,
            output_text=event.output.text or "", attributes=dict(event.attributes),
        ))  # fmt: skip
    ClickHouseWriter(client).write(batch)
    assert not client.query("SELECT count() FROM releases").result_rows[0][0]
    client.close()


def test_report_defaults_to_the_last_day_of_data(tmp_path: Path) -> None:
    _replayed_database(tmp_path / "db")
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, [
        "report", "--out", str(out), "--clickhouse", f"chdb://{tmp_path / 'db'}",
        "--format", "json",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    panels: dict[str, Any] = {p["panel"]: p for p in json.loads(result.stdout)["panels"]}
    html = out.read_text(encoding="utf-8")
    assert "2026-09-14" in html  # the data's day, not today's
    assert panels["Failure rate by signal and model version"]["rows"] > 0
    changed = panels["Signals that changed most since the last release"]
    assert changed["rows"] > 0
    assert panels["Failure rate by slice"]["rows"] > 0
    # The six hours of data, in buckets that hold a median of 30 events per model version: at
    # six events a minute, shared by two versions after the release, 15 minutes (Grafana's rule
    # alone would give one minute, full width, or two, half width).
    assert panels["Failure rate by signal and model version"]["interval_s"] == 900
    assert panels["Failure rate by slice over time"]["interval_s"] == 900
    assert len(html) > 20_000  # not the empty 7 kB report of a wall-clock range (43 kB)
    # The slice table leads with the regressed slice of the new version.
    first_row = html.split("<h3>Failure rate by slice</h3>", 1)[1].split("</tr>", 2)[1]
    assert (NEW in first_row and "locale=de" in first_row) or "customer_tier=free" in first_row
    assert OLD in html
