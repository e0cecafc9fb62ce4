"""Retention: per-table TTLs set by ``telltale migrate``, on the real engine (chDB).

Rows of three ages go into every table that has a retention: 2 days (kept everywhere), 20 days
(past the content tables' 10, within the scores' 30) and 40 days (past every retention). The
per-minute aggregates, filled by their materialized views from writes through the real
writer, must still count the old minutes after the rows they counted are gone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from storage.cluster import render
from storage.dead_letters import DeadLetterRow, record_dead_letters
from storage.errors import MigrationError
from storage.migrate import migrate
from storage.retention import RETENTION_COLUMNS, apply_retention, current_retention
from storage.rows import EmbeddingRow, EventRow, ScoreRow, WriteBatch
from storage.writer import ClickHouseWriter

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
AGES = (2, 20, 40)
CONTENT = {"events", "embeddings", "embedding_cache", "dead_letters", "discovered_clusters"}
RETENTION = {table: 10 if table in CONTENT else 30 for table in RETENTION_COLUMNS}
"""Content 10 days, everything else 30: the 20-day rows tell the two apart."""
AGGREGATES = ("failure_rates_1m", "failure_rates_by_slice_1m", "events_1m")


def at(age: int) -> datetime:
    return NOW - timedelta(days=age)


def write_events(ch: Any) -> None:
    """Three events per age through the writer (one flagged), so the views fill."""
    batch = WriteBatch()
    for age in AGES:
        for i in range(3):
            event_id, ts = f"e{age}-{i}", at(age) + timedelta(seconds=i)
            batch.events.append(
                EventRow(event_id, ts, "m", "v1", prompt_text="private", user_id="u")
            )
            batch.embeddings.append(
                EmbeddingRow(event_id, "output.text", "emb", ts, "m", "v1", [0.1, 0.2], [[0.3]])
            )
            batch.scores.append(
                ScoreRow(event_id, "sig", 1, ts, "m", "v1", 0.9, i == 0, {"app": "chat"})
            )
    assert ClickHouseWriter(ch).write(batch) == len(AGES) * 3


def insert_other_tables(ch: Any) -> None:
    """One row per age into each table of per-event data the writer does not fill; the row's
    other time columns (``recorded_at`` and the like) default to now, so only the retention
    column can expire it."""
    record_dead_letters(ch, [DeadLetterRow("generations", 0, age, "bad json", 10, at(age))
                             for age in AGES])  # fmt: skip
    ch.insert("embedding_cache",
              [[f"k{age}", "emb", "output.text", [[1.0]], at(age)] for age in AGES],
              column_names=["key", "embedder_id", "field", "windows", "created_at"])  # fmt: skip
    ch.insert("feedback", [[f"f{age}", f"e{age}-0", -1, "thumbs", "u", at(age), "awful"]
                           for age in AGES],
              column_names=["feedback_id", "event_id", "value", "kind", "user_id", "timestamp",
                            "comment"])  # fmt: skip
    ch.insert("audit_samples", [["a", "sig", 1, f"e{age}-0", "v1", "high", 3, 1, 0.9, 1, at(age)]
                                for age in AGES],
              column_names=["audit_id", "signal", "signal_version", "event_id", "model_version",
                            "band", "stratum_size", "stratum_drawn", "score", "flagged",
                            "drawn_at"])  # fmt: skip
    ch.insert("audit_labels", [["sig", 1, f"e{age}-0", 1, "ann", "human", at(age)] for age in AGES],
              column_names=["signal", "signal_version", "event_id", "label", "labeller", "source",
                            "labelled_at"])  # fmt: skip
    ch.insert("discovered_clusters", [[f"c{age}", at(age), "m", "output.text", "emb",
                                       [f"e{age}-0"], ["private"], at(age), at(age)]
                                      for age in AGES],
              column_names=["cluster_id", "run_at", "model", "field", "embedder_id", "examples",
                            "example_texts", "window_start", "window_end"])  # fmt: skip


def ages_left(ch: Any, table: str) -> set[int]:
    column = RETENTION_COLUMNS[table]
    rows = ch.query(
        f"SELECT DISTINCT dateDiff('day', {column}, {{now:DateTime64(3, 'UTC')}}) FROM {table}",
        parameters={"now": NOW},
    )
    return {int(r[0]) for r in rows.result_rows}


def aggregate_counts(ch: Any) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "failure_rates_1m": ch.query(
            "SELECT minute, uniqExactMerge(events), uniqExactIfMerge(failures) "
            "FROM failure_rates_1m GROUP BY minute ORDER BY minute"
        ).result_rows,
        "failure_rates_by_slice_1m": ch.query(
            "SELECT minute, slice_value, uniqExactMerge(events), uniqExactIfMerge(failures) "
            "FROM failure_rates_by_slice_1m GROUP BY minute, slice_value ORDER BY minute"
        ).result_rows,
        "events_1m": ch.query(
            "SELECT minute, uniqExactMerge(events) FROM events_1m GROUP BY minute ORDER BY minute"
        ).result_rows,
    }


def force_ttl(ch: Any, tables: list[str]) -> None:
    for table in tables:
        ch.command(f"OPTIMIZE TABLE {table} FINAL")  # TTL deletes rows when parts merge


def ttl_clause(ch: Any, table: str) -> str:
    """The table TTL in ``SHOW CREATE TABLE`` ('' when none), on its own line there."""
    create = str(ch.query(f"SHOW CREATE TABLE {table}").result_rows[0][0])
    [clause] = [line for line in create.splitlines() if line.startswith("TTL ")] or ["TTL "]
    return clause.removeprefix("TTL ")


def test_old_rows_expire_recent_rows_stay_and_rates_keep_their_counts(ch: Any) -> None:
    apply_retention(ch, {"embedding_cache": 0})  # from no TTL anywhere (migration 14 set one)
    write_events(ch)
    insert_other_tables(ch)
    before = aggregate_counts(ch)
    assert [row[1:] for row in before["failure_rates_1m"]] == [(3, 1)] * len(AGES)
    assert {t: ages_left(ch, t) for t in RETENTION_COLUMNS} == {
        t: set(AGES) for t in RETENTION_COLUMNS
    }

    assert migrate(ch, retention=RETENTION) == []  # the schema was current: only TTLs change
    assert ttl_clause(ch, "events") == "toDateTime(timestamp) + toIntervalDay(10)"
    assert ttl_clause(ch, "audit_labels") == "toDateTime(labelled_at) + toIntervalDay(30)"
    force_ttl(ch, [*RETENTION_COLUMNS, *AGGREGATES])

    for table in RETENTION_COLUMNS:
        expected = {2} if table in CONTENT else {2, 20}
        assert ages_left(ch, table) == expected, table
    assert ch.query("SELECT count() FROM events WHERE prompt_text = 'private'").result_rows == [
        (3,)
    ]
    # the aggregates outlive the events they counted: every minute, every count, unchanged
    assert aggregate_counts(ch) == before
    for table in AGGREGATES:
        assert ttl_clause(ch, table) == "", table


def test_changing_the_setting_changes_the_ttl_and_0_removes_it(ch: Any) -> None:
    assert ttl_clause(ch, "events") == ""
    migrate(ch, retention={"events": 30, "dead_letters": 14})
    assert ttl_clause(ch, "events") == "toDateTime(timestamp) + toIntervalDay(30)"
    assert ttl_clause(ch, "dead_letters") == "toDateTime(failed_at) + toIntervalDay(14)"
    # the same settings again: no ALTER at all (nothing changed), and no error
    assert apply_retention(ch, {"events": 30, "dead_letters": 14}) == {}
    assert migrate(ch, retention={"events": 30, "dead_letters": 14}) == []

    assert apply_retention(ch, {"events": 7, "dead_letters": 14}) == {"events": 7}
    assert ttl_clause(ch, "events") == "toDateTime(timestamp) + toIntervalDay(7)"
    assert apply_retention(ch, {"events": 0, "dead_letters": None}) == {
        "events": None,
        "dead_letters": None,
    }
    assert ttl_clause(ch, "events") == "" and ttl_clause(ch, "dead_letters") == ""
    # removing a TTL that is not there is a no-op (ClickHouse itself would refuse REMOVE TTL)
    assert apply_retention(ch, {"events": 0}) == {}
    migrate(ch, retention={"events": 0})
    # a table not named keeps what it has: the cache's 30 days from migration 14
    assert current_retention(ch, ["embedding_cache", "events"]) == {
        "embedding_cache": 30,
        "events": None,
    }


def test_a_ttl_set_by_hand_is_replaced_by_the_setting(ch: Any) -> None:
    ch.command("ALTER TABLE feedback MODIFY TTL toDateTime(recorded_at) + INTERVAL 5 DAY")
    assert current_retention(ch, ["feedback"]) == {"feedback": None}  # not telltale's
    assert apply_retention(ch, {"feedback": 90}) == {"feedback": 90}
    assert ttl_clause(ch, "feedback") == "toDateTime(timestamp) + toIntervalDay(90)"
    ch.command("ALTER TABLE feedback MODIFY TTL toDateTime(recorded_at) + INTERVAL 5 DAY")
    assert apply_retention(ch, {"feedback": 0}) == {"feedback": None}
    assert ttl_clause(ch, "feedback") == ""


@pytest.mark.parametrize(
    "days",
    [
        {"failure_rates_1m": 7},  # an aggregate: no retention
        {"events": 7, "events_1m": 30},
        {"events": -1},
        {"events": 36_501},
        {"events": True},
        {"events": 7.5},
        {"events": "7; DROP TABLE events"},
    ],
)
def test_bad_retentions_are_refused_before_anything_changes(ch: Any, days: Any) -> None:
    with pytest.raises(ValueError, match="retention"):
        apply_retention(ch, days)
    assert ttl_clause(ch, "events") == ""


def test_a_missing_table_is_a_migration_error(ch: Any) -> None:
    ch.command("DROP TABLE discovered_clusters")
    with pytest.raises(MigrationError, match="discovered_clusters does not exist"):
        apply_retention(ch, {"discovered_clusters": 30})


class RecordingClient:
    """Answers ``system.tables`` as a cluster node would (local tables, no TTL yet) and
    records the statements it is sent."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    def query(self, sql: str, parameters: dict[str, Any]) -> Any:
        names = parameters.get("names") or [parameters["name"]]
        rows = [(n, "ReplicatedReplacingMergeTree('/p', '{replica}') ORDER BY x") for n in names]
        return type("Result", (), {"result_rows": rows})()

    def command(self, sql: str) -> None:
        self.commands.append(sql)


def test_on_a_cluster_the_ttl_goes_on_the_local_shards(ch: Any) -> None:
    client = RecordingClient()
    assert apply_retention(client, {"events": 30, "feedback": 0}, cluster="prod") == {  # type: ignore[arg-type]
        "events": 30
    }
    assert client.commands == [
        "ALTER TABLE events_local ON CLUSTER prod "
        "MODIFY TTL toDateTime(timestamp) + INTERVAL 30 DAY"
    ]
    [remove] = render("ALTER TABLE feedback REMOVE TTL", "prod")
    assert remove == "ALTER TABLE feedback_local ON CLUSTER prod REMOVE TTL"
    for sql in (*client.commands, remove):  # ClickHouse parses what a cluster would be sent
        formatted = ch.query("SELECT formatQuery({sql:String})", parameters={"sql": sql})
        assert "ON CLUSTER prod" in formatted.result_rows[0][0]


# --- settings and the CLI ------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    import os

    for key in list(os.environ):
        if key.startswith("TELLTALE_"):
            monkeypatch.delenv(key)
    yield monkeypatch


def test_retention_settings_from_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    from telltale.settings import SettingsError, load_settings

    defaults = load_settings().retention.days()
    assert set(defaults) == set(RETENTION_COLUMNS)  # every table with a retention is configurable
    assert defaults == {
        "events": 30, "embeddings": 30, "embedding_cache": 30, "signal_scores": 400,
        "dead_letters": 14, "feedback": 90, "audit_samples": 400, "audit_labels": 400,
        "discovered_clusters": 30,
    }  # fmt: skip

    clean_env.setenv("TELLTALE_RETENTION_EVENTS_DAYS", "7")
    clean_env.setenv("TELLTALE_RETENTION_SIGNAL_SCORES_DAYS", "0")
    clean_env.setenv("TELLTALE_RETENTION_DISCOVERED_CLUSTERS_DAYS", "3")
    days = load_settings().retention.days()
    assert days["events"] == 7 and days["signal_scores"] == 0 and days["discovered_clusters"] == 3
    assert days["embeddings"] == 30

    clean_env.setenv("TELLTALE_RETENTION_EMBEDDINGS_DAYS", "-1")
    clean_env.setenv("TELLTALE_RETENTION_FEEDBACK_DAYS", "a month")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert "TELLTALE_RETENTION_EMBEDDINGS_DAYS" in str(raised.value)
    assert "TELLTALE_RETENTION_FEEDBACK_DAYS" in str(raised.value)


def test_telltale_migrate_applies_the_settings(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from telltale.cli import app

    def migrate_json() -> dict[str, Any]:
        dsn = f"chdb://{tmp_path / 'db'}"
        result = CliRunner().invoke(app, ["migrate", "--clickhouse", dsn, "--format", "json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    first = migrate_json()
    assert first["applied"] and first["retention_days"]["events"] == 30
    assert first["retention_days"]["signal_scores"] == 400
    clean_env.setenv("TELLTALE_RETENTION_EVENTS_DAYS", "0")
    clean_env.setenv("TELLTALE_RETENTION_SIGNAL_SCORES_DAYS", "365")
    second = migrate_json()
    assert second["applied"] == []
    assert second["retention_days"]["events"] is None
    assert second["retention_days"]["signal_scores"] == 365
    assert migrate_json() == second
