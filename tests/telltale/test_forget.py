"""`telltale forget` (issue 21, item 4): two users' rows leave every table, everyone else's stay,
aggregate rates keep their counts, the erasure is logged without the id, and a second run
deletes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from stored_values import every_stored_value
from typer.testing import CliRunner

from signals.cache import EmbeddingCache
from signals.live import LiveSignals
from signals.open_clip_embedder import OpenClipEmbedder
from storage import record_feedback
from storage.client import connect
from storage.discovery import ClusterRow, save_clusters
from storage.embedding_cache import ClickHouseVectorCache
from storage.migrate import migrate
from storage.writer import ClickHouseWriter
from streams.events import validate_event
from streams.feedback import validate_feedback
from streams.pipeline import Pipeline
from streams.pseudonyms import Pseudonyms
from telltale.cli import app
from telltale.signal_store import ClickHouseSignalStore
from telltale.wiring import feedback_rows

KEY = "forget-test-key-0123456789abcdef"
T0 = datetime(2026, 11, 20, tzinfo=UTC)
USERS = ["ana@north.example.net", "bo@south.example.net", "cy@east.example.net"]


def populate(db: Path, embedder: OpenClipEmbedder) -> None:
    client = connect(f"chdb://{db}")
    migrate(client)
    ids = Pseudonyms(SecretStr(KEY))
    cache = EmbeddingCache(shared=ClickHouseVectorCache(client))
    pipeline = Pipeline(embedder, LiveSignals(ClickHouseSignalStore(client), embedder.id, 0),
                        ClickHouseWriter(client), cache=cache, pseudonyms=ids)  # fmt: skip
    events = [validate_event({
        "event_id": f"{user[:2]}-{i}", "timestamp": (T0 + timedelta(minutes=i)).isoformat(),
        "model": "chat", "model_version": "v1",
        "prompt": {"text": f"{user[:2]} asks question {i}"},
        "output": {"text": f"private answer {i} for {user[:2]}"},
        "user_id": user, "session_id": f"{user[:2]}-session",
    }) for user in USERS for i in range(6)]  # fmt: skip
    assert pipeline.process(events).written == 18
    feedback = [validate_feedback({"event_id": "an-0", "value": -1, "user_id": "support@x.net",
                                   "timestamp": T0.isoformat()}),
                validate_feedback({"event_id": "cy-1", "value": 1, "user_id": USERS[0],
                                   "timestamp": T0.isoformat(), "comment": "ana rates cy"}),
                validate_feedback({"event_id": "cy-2", "value": -1, "user_id": "support@x.net",
                                   "timestamp": T0.isoformat()})]  # fmt: skip
    record_feedback(client, feedback_rows(feedback, ids))
    client.insert("audit_samples", [["a1", "s", 1, "an-1", "v1", "flagged", 10, 2, 0.9, 1],
                                    ["a1", "s", 1, "cy-3", "v1", "flagged", 10, 2, 0.9, 1]],
                  column_names=["audit_id", "signal", "signal_version", "event_id",
                                "model_version", "band", "stratum_size", "stratum_drawn",
                                "score", "flagged"])  # fmt: skip
    client.insert("audit_labels", [["s", 1, "bo-2", 1, "h", "audit"], ["s", 1, "cy-3", 0, "h",
                                                                        "audit"]],
                  column_names=["signal", "signal_version", "event_id", "label", "labeller",
                                "source"])  # fmt: skip
    save_clusters(client, [
        ClusterRow(f"c{k}", T0, "chat", "output.text", embedder.id, k, 3, 0.5, 0.1, 5.0, 0.2,
                   1.0, examples, tuple(f"text of {e}" for e in examples), (), (), {}, T0,
                   T0 + timedelta(hours=1))
        for k, examples in enumerate([("an-1", "cy-4"), ("cy-5",)])
    ])  # fmt: skip
    client.close()


def test_forget_two_users_leaves_nothing_of_theirs_and_everything_else(
    tmp_path: Path, tiny_embedder: OpenClipEmbedder, tiny_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    db = tmp_path / "db"
    populate(db, tiny_embedder)
    monkeypatch.setenv("TELLTALE_PRIVACY_ID_KEY", KEY)
    client = connect(f"chdb://{db}")
    before = {
        t: client.query(f"SELECT count() FROM {t}").result_rows[0][0]
        for t in ("events", "embeddings", "signal_scores", "feedback", "embedding_cache")
    }
    volume = client.query("SELECT uniqExactMerge(events) FROM events_1m").result_rows
    client.close()
    runner = CliRunner()

    def forget(user: str) -> dict[str, Any]:
        result = runner.invoke(app, [
            "forget", "--user", user, "--request", f"ticket-{user[:2]}",
            "--clickhouse", f"chdb://{db}", "--format", "json",
        ])  # fmt: skip
        assert result.exit_code == 0, result.output
        assert user not in result.output
        doc: dict[str, Any] = json.loads(result.stdout)
        return doc

    first = [forget(USERS[0]), forget(USERS[1])]
    assert first[0]["rows"]["events"] == 6 and first[0]["rows"]["feedback"] == 2
    assert first[0]["rows"]["discovered_clusters"] == 1 and first[0]["rows"]["audit_samples"] == 1
    assert first[1]["rows"]["audit_labels"] == 1 and first[1]["rows"]["embedding_cache"] > 0
    again = forget(USERS[0])
    assert again["total"] == 0

    client = connect(f"chdb://{db}")
    stored = every_stored_value(client)
    ids = Pseudonyms(SecretStr(KEY))
    for user in USERS[:2]:
        for trace in (user, ids(user), f"{user[:2]}-0", f"{user[:2]}-session", f"for {user[:2]}",
                      ids(f"{user[:2]}-session")):  # fmt: skip
            assert trace not in stored, trace
    # everyone else's rows are intact
    assert client.query("SELECT count() FROM events FINAL").result_rows == [(6,)]
    assert (
        client.query("SELECT uniqExact(event_id) FROM signal_scores").result_rows[0][0]
        == (
            client.query(
                "SELECT uniqExact(event_id) FROM signal_scores WHERE event_id LIKE 'cy-%'"
            ).result_rows[0][0]
        )
    )
    feedback = client.query("SELECT event_id FROM feedback FINAL ORDER BY event_id").result_rows
    assert feedback == [("cy-2",)]  # ana's rating of cy-1 went with ana
    assert client.query("SELECT cluster_id FROM discovered_clusters").result_rows == [("c1",)]
    cache = client.query("SELECT count() FROM embedding_cache").result_rows[0][0]
    assert 0 < cache < before["embedding_cache"]
    # aggregate rates keep their counts
    assert client.query("SELECT uniqExactMerge(events) FROM events_1m").result_rows == volume
    log = client.query("SELECT request, subject_kind, arraySum(rows) FROM erasures "
                       "ORDER BY erased_at").result_rows  # fmt: skip
    assert [(r[0], r[1]) for r in log] == [("ticket-an", "user_id"), ("ticket-bo", "user_id"),
                                           ("ticket-an", "user_id")]  # fmt: skip
    assert log[2][2] == 0 and log[0][2] == first[0]["total"]
    client.close()
