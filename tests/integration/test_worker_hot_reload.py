"""A running worker picks up signals published after it started; scores carry the version."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka.admin import KafkaAdminClient, NewTopic
from kafka_io import wait_committed
from testenv import TINY_ENV
from typer.testing import CliRunner

from storage.client import connect
from streams.emitter import Emitter
from streams.events import validate_event
from telltale.cli import app

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SPEC = Path(__file__).resolve().parents[2] / "examples" / "stock_advice.yaml"


def send(bootstrap: str, topic: str, start: int, count: int) -> None:
    now = datetime.now(UTC) - timedelta(minutes=5)
    with Emitter(bootstrap, topic) as emitter:
        for i in range(start, start + count):
            emitter.emit(validate_event({
                "event_id": f"hr-{i:04d}", "timestamp": (now + timedelta(seconds=i)).isoformat(),
                "model": "chat", "model_version": "v1", "output": {"text": f"answer {i}"},
            }))  # fmt: skip


def test_running_worker_applies_published_signals(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suffix = uuid.uuid4().hex[:8]
    topic, control, group = f"gen-{suffix}", f"signals-{suffix}", f"hr-{suffix}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(topic, 3, 1), NewTopic(f"{topic}.dlq", 3, 1),
                         NewTopic(control, 1, 1)])  # fmt: skip
    admin.close()
    env = {**TINY_ENV, "TELLTALE_KAFKA_TOPIC": topic, "TELLTALE_KAFKA_DLQ_TOPIC": f"{topic}.dlq",
           "TELLTALE_KAFKA_CONTROL_TOPIC": control, "TELLTALE_KAFKA_GROUP_ID": group,
           "TELLTALE_KAFKA_SESSION_TIMEOUT_S": "6", "TELLTALE_WORKER_SIGNAL_REFRESH_S": "1",
           "TELLTALE_WORKER_BATCH_SIZE": "50"}  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    db = tmp_path / "db"
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "telltale.cli", "worker", "--clickhouse", f"chdb://{db}",
         "--kafka", kafka_bootstrap],
        cwd=tmp_path, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    runner = CliRunner()

    def publish() -> dict[str, object]:
        result = runner.invoke(app, ["signals", "add", str(SPEC), "--publish", "--kafka",
                                     kafka_bootstrap, "--format", "json"])  # fmt: skip
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    try:
        send(kafka_bootstrap, topic, 0, 40)  # before any signal exists
        wait_committed(kafka_bootstrap, group, topic, 40, proc, timeout=120)
        published = publish()
        assert published["version"] is None and published["published_to"] == control
        wait_committed(kafka_bootstrap, group, control, 1, proc, timeout=60)
        send(kafka_bootstrap, topic, 40, 40)
        wait_committed(kafka_bootstrap, group, topic, 80, proc, timeout=60)
        publish()  # a changed signal: version 2
        wait_committed(kafka_bootstrap, group, control, 2, proc, timeout=60)
        send(kafka_bootstrap, topic, 80, 40)
        wait_committed(kafka_bootstrap, group, topic, 120, proc, timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert proc.returncode == 0, (tmp_path / "worker.log").read_text()[-3000:]
    client = connect(f"chdb://{db}")
    try:
        rows = client.query(
            "SELECT signal_version, min(event_id), max(event_id), count() FROM signal_scores FINAL "
            "GROUP BY signal_version ORDER BY signal_version"
        ).result_rows
        assert rows == [(1, "hr-0040", "hr-0079", 40), (2, "hr-0080", "hr-0119", 40)]
        assert client.query("SELECT count() FROM events FINAL").result_rows[0][0] == 120
        versions = client.query("SELECT version, author FROM signals ORDER BY version").result_rows
        assert [v for v, _ in versions] == [1, 2]
    finally:
        client.close()
